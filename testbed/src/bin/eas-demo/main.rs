//! `eas-demo`: the gateway's main job as a demo (`scripts/demo.sh` runs it). A private Dovecot
//! with a demo user and a few messages, and the gateway in front of it on HTTPS.
//!
//! A binary of the dev-only `eas-testbed` crate, so the test bed it starts Dovecot with stays
//! out of the shipped `eas-gateway` binary.

mod demo;

use clap::Parser;

/// Start a private Dovecot with a demo user and the gateway in front of it.
#[derive(Parser)]
#[command(name = "eas-demo", version)]
struct Cli {
    #[command(flatten)]
    demo: demo::DemoArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let ran = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(demo::run(cli.demo)));
    match ran {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eas-demo: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
