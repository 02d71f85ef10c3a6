//! A stand-in for a live call's media, for the "probing beside a call" benchmark
//! (`rig/beside-call.sh`): one way of a video call as UDP, and a receiver that logs each packet's
//! one-way delay.
//!
//! `call-flow send --to ADDR --kbps N --seconds S` sends 30 video frames a second, each
//! `N / 30` kbit cut into packets of at most 1200 bytes sent back to back (as a browser's pacer
//! sends a frame), plus a 120-byte audio packet every 20 ms. Every packet carries its send time.
//!
//! `call-flow recv --listen ADDR --seconds S` prints one line per packet: send time and kernel
//! receive time (µs since the Unix epoch), size and sequence number. Sender and receiver share the host's clock
//! (network namespaces do not change time), so the difference is the one-way delay; its excess
//! over the smallest is the queueing delay.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bandwidth_probe::rx;
use tokio::net::UdpSocket;
use tokio::time::{Instant, MissedTickBehavior, interval, timeout_at};

const FRAME: Duration = Duration::from_micros(33_333);
const AUDIO: Duration = Duration::from_millis(20);

struct Args {
    mode: String,
    addr: SocketAddr,
    kbps: f64,
    seconds: u64,
}

fn args() -> Result<Args> {
    let usage =
        "call-flow send --to ADDR --kbps N --seconds S | call-flow recv --listen ADDR --seconds S";
    let mut it = std::env::args().skip(1);
    let mode = it.next().context(usage)?;
    let (mut addr, mut kbps, mut seconds) = (None, 500.0, 30);
    while let Some(a) = it.next() {
        let mut value = || it.next().context("missing value");
        match a.as_str() {
            "--to" | "--listen" => addr = Some(value()?.parse()?),
            "--kbps" => kbps = value()?.parse()?,
            "--seconds" => seconds = value()?.parse()?,
            "--help" | "-h" => {
                println!("{usage}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}; {usage}"),
        }
    }
    if !(mode == "send" || mode == "recv") {
        bail!("{usage}");
    }
    Ok(Args {
        mode,
        addr: addr.context(usage)?,
        kbps,
        seconds,
    })
}

/// A packet of `len` bytes: send time (µs since the Unix epoch), then sequence number.
fn packet(len: usize, seq: &mut u64) -> Vec<u8> {
    let mut b = vec![0u8; len.max(16)];
    let now = rx::wall_now().as_micros() as u64;
    b[..8].copy_from_slice(&now.to_be_bytes());
    b[8..16].copy_from_slice(&seq.to_be_bytes());
    *seq += 1;
    b
}

async fn send(a: &Args) -> Result<()> {
    let bind: SocketAddr = if a.addr.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(a.addr).await?;
    let frame_bytes = (a.kbps * 1000.0 / 8.0 * FRAME.as_secs_f64()) as usize;
    let end = Instant::now() + Duration::from_secs(a.seconds);
    let mut seq = 0u64;
    let mut video = interval(FRAME);
    let mut audio = interval(AUDIO);
    video.set_missed_tick_behavior(MissedTickBehavior::Delay);
    audio.set_missed_tick_behavior(MissedTickBehavior::Delay);
    while Instant::now() < end {
        tokio::select! {
            _ = video.tick() => {
                let mut left = frame_bytes;
                while left > 0 {
                    let n = left.min(1200);
                    socket.send(&packet(n, &mut seq)).await?;
                    left -= n;
                }
            }
            _ = audio.tick() => {
                socket.send(&packet(120, &mut seq)).await?;
            }
        }
    }
    Ok(())
}

async fn recv(a: &Args) -> Result<()> {
    let socket = UdpSocket::bind(a.addr).await?;
    rx::enable(&socket);
    let end = Instant::now() + Duration::from_secs(a.seconds);
    let mut buf = vec![0u8; 2048];
    let mut out = String::new();
    while let Ok(r) = timeout_at(end, rx::recv_from(&socket, &mut buf)).await {
        let (n, _, at) = r?;
        let packet = &buf[..n];
        let field = |i: usize| {
            packet
                .get(i..i + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
        };
        let (Some(sent), Some(seq)) = (field(0), field(8)) else {
            continue;
        };
        out.push_str(&format!("{sent} {} {n} {seq}\n", at.as_micros()));
    }
    print!("{out}");
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let a = args()?;
    if a.mode == "send" {
        send(&a).await
    } else {
        recv(&a).await
    }
}
