//! The link emulator (`loadtest link`'s library) for the rig, with the few options the benchmark
//! needs: `probe-link --listen ADDR --forward ADDR [--delay-ms MS] [--loss P]`. No rate of its
//! own (tbf in the router is the bottleneck); it adds one-way delay and loss each way and runs
//! until SIGTERM or Ctrl-C, then prints the emulator's JSON summary on stdout.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use loadtest::link::LinkConfig;
use loadtest::link::shell::{LinkShell, ShellConfig};

fn main() -> Result<()> {
    let mut listen: Option<SocketAddr> = None;
    let mut forward: Option<SocketAddr> = None;
    let mut delay_ms = 0u64;
    let mut loss = 0.0f64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().context("missing value");
        match a.as_str() {
            "--listen" => listen = Some(value()?.parse()?),
            "--forward" => forward = Some(value()?.parse()?),
            "--delay-ms" => delay_ms = value()?.parse()?,
            "--loss" => loss = value()?.parse()?,
            "--help" | "-h" => {
                println!("probe-link --listen ADDR --forward ADDR [--delay-ms MS] [--loss P]");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    if delay_ms > 10_000 || !(0.0..=1.0).contains(&loss) {
        bail!("--delay-ms at most 10000, --loss between 0 and 1");
    }
    let link = LinkConfig {
        delay: Duration::from_millis(delay_ms),
        loss,
        ..LinkConfig::default()
    };
    let mut down = link.clone();
    down.seed = 2;
    let config = ShellConfig::new(
        listen.context("--listen ADDR")?,
        forward.context("--forward ADDR")?,
        link,
        down,
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let shell = LinkShell::bind(config).await?;
        eprintln!("probe-link on {}", shell.local_addr());
        let stop = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        };
        let report = shell.run(stop).await;
        println!("{}", serde_json::to_string(&report.summary())?);
        anyhow::Ok(())
    })
}
