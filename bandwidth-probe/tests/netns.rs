//! One real measurement through network namespaces and a tbf bottleneck (2 Mbit/s each way),
//! with the rig script and the real binary. Skips (with the reason) where namespaces cannot be
//! made. Uses a generous bound (±25 %); the benchmark (`rig/bench.sh`) holds the tight targets.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_bandwidth-probe");

fn rig_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rig/netns-rig.sh")
}

/// Tears the rig down when dropped, also when the test fails.
struct Rig {
    name: String,
    server: Option<Child>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(mut s) = self.server.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = Command::new("bash")
            .arg(rig_script())
            .args(["down", &self.name])
            .status();
    }
}

#[test]
fn measures_a_tbf_bottleneck_in_namespaces() {
    let name = format!("bpt{}", std::process::id());
    let mut rig = Rig {
        name: name.clone(),
        server: None,
    };
    let up = Command::new("bash")
        .arg(rig_script())
        .args(["up", &name, "2mbit", "2mbit"])
        .output()
        .expect("bash runs");
    if !up.status.success() {
        eprintln!(
            "SKIPPED measures_a_tbf_bottleneck_in_namespaces: the rig could not create network namespaces \
             (needs root / CAP_NET_ADMIN, `ip` and `tc`): {}",
            String::from_utf8_lossy(&up.stderr).trim()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "netns test secret, at least 16 bytes").unwrap();
    let secret = secret.to_str().unwrap().to_string();
    rig.server = Some(
        Command::new("ip")
            .args(["netns", "exec", &format!("{name}-s"), BIN, "serve"])
            .args(["--listen", "10.77.2.2:9300", "--secret-file", &secret])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(300));
    // One measurement; if the tool itself rates it unreliable (confidence below 0.5, e.g. the
    // shared machine descheduled a receiver mid-train), it is printed and measured once more,
    // as an operator would. A confident result out of bounds fails.
    let mut m = measure_once(&name, &secret);
    if m["confidence"].as_f64().unwrap_or(0.0) < 0.5 {
        eprintln!("low confidence, measuring again: {m}");
        m = measure_once(&name, &secret);
    }
    for dir in ["down_kbps", "up_kbps"] {
        let v = m[dir].as_f64().unwrap();
        assert!(
            (1500.0..=2500.0).contains(&v),
            "{dir} {v} not within 25 % of 2000: {m}"
        );
    }
    assert!(m["loss_pct"].as_f64().unwrap() <= 5.0, "{m}");
}

/// Runs `measure --json` in the client namespace with a fresh token; checks it printed one JSON
/// object within 10 s.
fn measure_once(name: &str, secret: &str) -> serde_json::Value {
    let token = Command::new(BIN)
        .args(["token", "--secret-file", secret, "--site", "netns"])
        .output()
        .unwrap();
    assert!(token.status.success());
    let token = String::from_utf8(token.stdout).unwrap().trim().to_string();
    let started = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", &format!("{name}-c"), BIN, "measure"])
        .args(["--server", "10.77.2.2:9300", "--json"])
        .env("BANDWIDTH_PROBE_TOKEN", &token)
        .output()
        .unwrap();
    let wall = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wall < Duration::from_secs(10), "took {wall:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.trim().lines().count(),
        1,
        "one JSON object: {stdout}"
    );
    let m: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    eprintln!("{m}");
    m
}
