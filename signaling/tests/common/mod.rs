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
    pub http: SocketAddr,
    pub ready: Value,
    logs: Arc<Mutex<String>>,
}

impl Server {
    /// Start the server on ephemeral ports and wait for its ready line.
    pub fn start() -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_telemed"));
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--media-udp",
            "127.0.0.1:0",
            "--media-tcp",
            "127.0.0.1:0",
            "--web-root",
            "/nonexistent",
            "--json",
        ])
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
            "TELEMED_WORKERS",
            "TELEMED_WEB_ROOT",
            "TELEMED_CONFIG",
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

/// Log in and join `room`; returns the `joined` message.
pub async fn login_join(ws: &mut Ws, user: &str, password: &str, room: &str) -> Value {
    send(
        ws,
        serde_json::json!({"type":"login","username":user,"password":password}),
    )
    .await;
    let v = recv(ws).await;
    assert_eq!(v["type"], "login_ok", "login as {user}: {v}");
    send(ws, serde_json::json!({"type":"join","room":room})).await;
    let v = recv(ws).await;
    assert_eq!(v["type"], "joined", "join {room}: {v}");
    v
}

/// Send `ping` and return everything received before the `pong`.
pub async fn ping(ws: &mut Ws) -> Vec<Value> {
    send(ws, serde_json::json!({"type":"ping"})).await;
    recv_until(ws, "pong").await.1
}

/// `GET path` over a raw HTTP/1.1 connection; returns (status line and headers, body).
pub async fn http_get(server: &Server, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(server.http).await.expect("connect");
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write request");
    let mut raw = Vec::new();
    tokio::time::timeout(MSG_TIMEOUT, tcp.read_to_end(&mut raw))
        .await
        .expect("HTTP request timed out")
        .expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response");
    (head.to_string(), body.to_string())
}
