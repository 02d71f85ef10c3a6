//! Shared helpers for the integration tests: start the real `telemed` binary and talk WebSocket to it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single expected message may take.
pub const MSG_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `telemed`; killed when dropped.
pub struct Server {
    child: Child,
    /// The data directory (a temp dir unless given), kept until the server is dropped.
    pub data_dir: std::path::PathBuf,
    _temp: Option<tempfile::TempDir>,
    pub http: SocketAddr,
    pub ready: Value,
    logs: Arc<Mutex<String>>,
}

impl Server {
    /// Start the server on ephemeral ports with a fresh data directory and wait for its ready line.
    pub fn start() -> Server {
        Server::start_with(&[], None)
    }

    /// Start with extra arguments, on `data_dir` if given (else a fresh temp dir).
    pub fn start_with(extra: &[&str], data_dir: Option<&std::path::Path>) -> Server {
        let (data_dir, temp) = match data_dir {
            Some(d) => (d.to_path_buf(), None),
            None => {
                let t = tempfile::tempdir().expect("temp dir");
                (t.path().to_path_buf(), Some(t))
            }
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_telemed"));
        // Ephemeral media ports unless `extra` sets them (or switches TCP off).
        let given = |flag: &str| extra.contains(&flag);
        if !given("--media-udp") {
            cmd.args(["--media-udp", "127.0.0.1:0"]);
        }
        if !given("--media-tcp") && !given("--no-tcp") {
            cmd.args(["--media-tcp", "127.0.0.1:0"]);
        }
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--probe-listen",
            "127.0.0.1:0",
            "--web-root",
            "/nonexistent",
            "--json",
            "--data-dir",
        ])
        .arg(&data_dir)
        .args(extra)
        .env(
            "RUST_LOG",
            std::env::var("TELEMED_TEST_LOG").unwrap_or_else(|_| "info,str0m=warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        for var in [
            "TELEMED_LISTEN",
            "TELEMED_MEDIA_UDP",
            "TELEMED_MEDIA_TCP",
            "TELEMED_NO_UDP",
            "TELEMED_NO_TCP",
            "TELEMED_PUBLIC_IP",
            "TELEMED_NO_STEERING",
            "TELEMED_PROBE_LISTEN",
            "TELEMED_PROBE_ADVERTISE",
            "TELEMED_NO_PROBE",
            "TELEMED_WORKERS",
            "TELEMED_WEB_ROOT",
            "TELEMED_CONFIG",
            "TELEMED_DATA_DIR",
            "TELEMED_STORAGE",
            "TELEMED_REDIS_URL",
            "TELEMED_REDIS_PREFIX",
        ] {
            cmd.env_remove(var);
        }
        let mut child = cmd.spawn().expect("spawn telemed");
        let logs = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().expect("stderr");
        let sink = logs.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let mut server = Server {
            child,
            data_dir,
            _temp: temp,
            http: "127.0.0.1:1".parse().unwrap(),
            ready: Value::Null,
            logs,
        };
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(e) => panic!(
                "no ready line from telemed ({e}); stderr:\n{}",
                server.logs()
            ),
        };
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("ready line {line:?} is not JSON: {e}"));
        server.http = ready["http"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("ready line without http address: {line}"));
        server.ready = ready;
        server
    }

    /// What the server wrote on stderr so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// The WebSocket URL.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.http)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Open a WebSocket to the server.
pub async fn connect(server: &Server) -> Ws {
    let (ws, _) = tokio::time::timeout(
        MSG_TIMEOUT,
        tokio_tungstenite::connect_async(server.ws_url()),
    )
    .await
    .expect("WebSocket connect timed out")
    .expect("WebSocket connect");
    ws
}

/// Send one JSON message.
pub async fn send(ws: &mut Ws, msg: Value) {
    ws.send(Message::text(msg.to_string()))
        .await
        .expect("WebSocket send");
}

/// Send a raw text frame.
pub async fn send_text(ws: &mut Ws, text: impl Into<String>) {
    ws.send(Message::text(text.into()))
        .await
        .expect("WebSocket send");
}

/// The next JSON text message (control frames are skipped). Panics on timeout, close or a non-JSON text.
pub async fn recv(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(MSG_TIMEOUT, ws.next())
            .await
            .expect("timed out waiting for a server message")
            .expect("WebSocket ended")
            .expect("WebSocket error");
        match msg {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str())
                    .unwrap_or_else(|e| panic!("server sent non-JSON {t:?}: {e}"));
                assert_eq!(v["v"], 1, "server message without v:1: {v}");
                return v;
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            other => panic!("unexpected WebSocket message {other:?}"),
        }
    }
}

/// Messages until one of type `ty` arrives; returns (that message, the ones before it).
pub async fn recv_until(ws: &mut Ws, ty: &str) -> (Value, Vec<Value>) {
    let mut before = vec![];
    loop {
        let v = recv(ws).await;
        if v["type"] == ty {
            return (v, before);
        }
        before.push(v);
    }
}

/// Authenticate a WebSocket with `token`; returns the `auth_ok` message.
pub async fn auth(ws: &mut Ws, token: &str) -> Value {
    send(ws, serde_json::json!({"type":"auth","token":token})).await;
    let v = recv(ws).await;
    assert_eq!(v["type"], "auth_ok", "auth: {v}");
    v
}

/// Authenticate and join the room of request `request_id`; returns the `joined` message.
pub async fn auth_join(ws: &mut Ws, token: &str, request_id: &str) -> Value {
    auth(ws, token).await;
    send(
        ws,
        serde_json::json!({"type":"join","request_id":request_id}),
    )
    .await;
    let (v, _) = recv_until(ws, "joined").await;
    v
}

/// Log in over HTTP; returns the token.
pub async fn login(server: &Server, user: &str, password: &str) -> String {
    let (status, v) = http(
        server,
        "POST",
        "/api/v1/login",
        None,
        Some(serde_json::json!({"username":user,"password":password})),
    )
    .await;
    assert_eq!(status, 200, "login as {user}: {v}");
    v["token"].as_str().expect("token").to_string()
}

/// An accepted consultation between the demo `doctor` and `specialist`.
pub struct Consult {
    /// Request id.
    pub id: String,
    /// The doctor's token.
    pub doctor: String,
    /// The specialist's token.
    pub specialist: String,
}

/// The doctor asks for a cardiology consultation; the specialist marks available and accepts.
pub async fn consultation(server: &Server) -> Consult {
    let doctor = login(server, "doctor", "demo-doctor").await;
    let specialist = login(server, "specialist", "demo-specialist").await;
    let (status, v) = http(
        server,
        "POST",
        "/api/v1/requests",
        Some(&doctor),
        Some(serde_json::json!({
            "patient_pseudonym": "P-TEST-1",
            "specialty": "cardiology",
            "urgency": "urgent",
            "question": "Chest pain, ST elevation in V2-V4?",
            "preferred_centre": null,
            "consent_method": "written"
        })),
    )
    .await;
    assert_eq!(status, 201, "create request: {v}");
    let id = v["id"].as_str().expect("id").to_string();
    let (status, v) = http(
        server,
        "PUT",
        "/api/v1/availability",
        Some(&specialist),
        Some(serde_json::json!({"available": true})),
    )
    .await;
    assert_eq!(status, 200, "availability: {v}");
    let (status, v) = http(
        server,
        "POST",
        &format!("/api/v1/requests/{id}/accept"),
        Some(&specialist),
        None,
    )
    .await;
    assert_eq!(status, 200, "accept: {v}");
    assert_eq!(v["state"], "accepted", "{v}");
    Consult {
        id,
        doctor,
        specialist,
    }
}

/// One HTTP/1.1 request with an optional bearer token and JSON body; returns (status, JSON body or
/// the body as a JSON string when it is not JSON).
pub async fn http(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    let (status, text) = http_raw(
        server,
        method,
        path,
        token,
        body.as_deref(),
        "application/json",
    )
    .await;
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

/// One HTTP/1.1 request with a raw body; returns (status, body text).
pub async fn http_raw(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    content_type: &str,
) -> (u16, String) {
    let (status, _, body) = http_full(server, method, path, token, body, content_type).await;
    (status, body)
}

/// One HTTP/1.1 request over a fresh connection; returns (status, status line and headers, body).
async fn http_full(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    content_type: &str,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(server.http).await.expect("connect");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method != "GET" {
        head.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes()).await.expect("write head");
    tcp.write_all(body.as_bytes()).await.expect("write body");
    let mut raw = Vec::new();
    tokio::time::timeout(MSG_TIMEOUT, tcp.read_to_end(&mut raw))
        .await
        .expect("HTTP request timed out")
        .expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    // Bodies here are small: the server answers with Content-Length or chunked; undo chunking.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, head.to_string(), body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Send `ping` and return everything received before the `pong`.
pub async fn ping(ws: &mut Ws) -> Vec<Value> {
    send(ws, serde_json::json!({"type":"ping"})).await;
    recv_until(ws, "pong").await.1
}

/// `GET path`; returns (status line and headers, body).
pub async fn http_get(server: &Server, path: &str) -> (String, String) {
    let (_, head, body) = http_full(server, "GET", path, None, None, "").await;
    (head, body)
}

/// A real `redis-server` on a free loopback port with its own data directory (append-only file on,
/// so a restart keeps everything); killed when dropped.
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Start one and wait until it answers PING.
    pub fn start() -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Self::spawn(port, dir.path());
        let server = RedisServer { child, port, dir };
        server.wait_ready();
        server
    }

    fn spawn(port: u16, dir: &std::path::Path) -> Child {
        let bin = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or_else(|| {
                panic!(
                    "redis-server is not installed; run `make deps` (Debian package redis-server)"
                )
            });
        Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--dir"])
            .arg(dir)
            .args(["--appendonly", "yes", "--save", "", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server")
    }

    fn wait_ready(&self) {
        use std::io::Write;
        for _ in 0..200 {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let mut buf = [0u8; 16];
                if s.write_all(b"PING\r\n").is_ok()
                    && std::io::Read::read(&mut s, &mut buf)
                        .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on port {} did not answer PING", self.port);
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Shut it down cleanly (SHUTDOWN flushes the append-only file) and start it again on the same
    /// port and data directory.
    pub fn restart(&mut self) {
        use std::io::Write;
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = s.write_all(b"SHUTDOWN\r\n");
        }
        let _ = self.child.wait();
        self.child = Self::spawn(self.port, self.dir.path());
        self.wait_ready();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
