//! The `eas-gateway` binary: command-line parsing only; the work lives in the library.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use eas_gateway::cli::{check, devices, logging, state, tools, top};
use eas_gateway::config::{Config, LogFormat, Overrides};
use eas_wbxml::Limits;

#[derive(Parser)]
#[command(
    name = "eas-gateway",
    version,
    about = "Exchange ActiveSync gateway for IMAP servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(ConfigArgs),
    /// Check the configuration against the real IMAP server and certificate, then exit.
    Check {
        #[command(flatten)]
        config: ConfigArgs,
        /// Log in as this user (password from the EAS_CHECK_PASSWORD environment variable, so
        /// it stays out of the shell history) to check the post-login capabilities.
        #[arg(long)]
        user: Option<String>,
    },
    /// List devices, ask for a remote wipe, or forget a device.
    Devices {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(subcommand)]
        action: devices::Action,
    },
    /// A live view of the running gateway, like z-push-top: held Pings, requests per second
    /// by command with p50/p99 latency, IMAP connections, log-ins and errors.
    Top {
        #[command(flatten)]
        config: ConfigArgs,
        /// The /metrics address; by default the configured listening port on loopback.
        #[arg(long)]
        url: Option<String>,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 1)]
        interval: u64,
        /// Print this many screens one after the other, then exit (for scripts and logs).
        #[arg(long)]
        frames: Option<u64>,
    },
    /// Move the per-device state to another store (from SQLite to PostgreSQL).
    State {
        #[command(subcommand)]
        action: state::Action,
    },
    /// Convert between EAS WBXML and its readable XML form.
    Wbxml {
        #[command(subcommand)]
        direction: WbxmlCommand,
    },
}

/// The configuration file and the flags that override it. Each flag can also be given as an
/// `EAS_GATEWAY_…` environment variable (for containers); a flag wins over the variable, and
/// both over the file.
#[derive(Args, Clone)]
struct ConfigArgs {
    /// TOML configuration file (see docs/eas-gateway.example.toml; the Debian package installs
    /// /etc/eas-gateway/eas-gateway.toml). Without it, the built-in defaults.
    #[arg(long, short, env = "EAS_GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    /// Address and port to listen on, e.g. 0.0.0.0:443 or [::]:8080 (server.listen).
    #[arg(long, env = "EAS_GATEWAY_LISTEN")]
    listen: Option<SocketAddr>,
    /// Host name or address of the IMAP server (imap.host).
    #[arg(long, env = "EAS_GATEWAY_IMAP_HOST")]
    imap_host: Option<String>,
    /// Port of the IMAP server, usually 143 (starttls) or 993 (tls) (imap.port).
    #[arg(long, env = "EAS_GATEWAY_IMAP_PORT")]
    imap_port: Option<u16>,
    /// How to talk to the IMAP server: none (loopback only), starttls or tls (imap.security).
    #[arg(long, env = "EAS_GATEWAY_IMAP_TLS")]
    imap_tls: Option<String>,
    /// State store, e.g. sqlite:/var/lib/eas-gateway/state.db (state.url).
    #[arg(long, env = "EAS_GATEWAY_STATE")]
    state: Option<String>,
    /// The URL phones use, e.g. https://mail.example.com (server.public_url).
    #[arg(long, env = "EAS_GATEWAY_PUBLIC_URL")]
    public_url: Option<String>,
    /// PEM certificate chain for HTTPS, e.g. /etc/letsencrypt/live/HOST/fullchain.pem
    /// (server.tls_cert; needs --tls-key).
    #[arg(long, env = "EAS_GATEWAY_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of the certificate, e.g. /etc/letsencrypt/live/HOST/privkey.pem
    /// (server.tls_key; needs --tls-cert).
    #[arg(long, env = "EAS_GATEWAY_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Log lines as readable text or one JSON object per line (log.format).
    #[arg(long, env = "EAS_GATEWAY_LOG_FORMAT", value_parser = ["text", "json"])]
    log_format: Option<String>,
}

impl ConfigArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen,
            imap_host: self.imap_host.clone(),
            imap_port: self.imap_port,
            imap_tls: self.imap_tls.clone(),
            state: self.state.clone(),
            public_url: self.public_url.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            log_format: self.log_format.as_deref().map(|f| match f {
                "json" => LogFormat::Json,
                _ => LogFormat::Text,
            }),
        }
    }

    fn load(&self) -> anyhow::Result<Config> {
        Ok(Config::load(self.config.as_deref(), &self.overrides())?)
    }
}

#[derive(Subcommand)]
enum WbxmlCommand {
    /// WBXML in (file or - for stdin), readable XML out.
    Decode {
        /// Input file; `-` or nothing reads standard input.
        input: Option<PathBuf>,
        /// Output file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Readable XML in (file or - for stdin), canonical WBXML out.
    Encode {
        /// Input file; `-` or nothing reads standard input.
        input: Option<PathBuf>,
        /// Output file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

// Measured with benches/push_load.rs, 10,000 held Pings (`--gateway process`): gateway RSS
// 186 MiB with jemalloc, 254 MiB with glibc's malloc, same code and latency; mimalloc did
// worse than glibc (84 against 62 MiB at 2,000 Pings). Most of a held connection's memory is
// hyper's two 8 KiB buffers with a few hundred bytes written; jemalloc probably leaves the
// rest unfaulted where glibc reuses pages that earlier requests dirtied.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("eas-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Threads the runtime may start for blocking work: the state store's calls leave their
/// worker through `block_in_place`, each on a thread of its own while it waits. On PostgreSQL
/// a call waits a round trip and, in a burst, for one of the store's 16 connections, so 500
/// Pings a second once kept 512 threads (Tokio's default cap) blocked, most of them queued
/// for a connection, and the allocator kept what they had used after they exited (see
/// docs/benchmarks.md, "What a PostgreSQL node's held Ping costs"). Past this cap a store
/// call blocks its worker instead, which is the back-pressure a full store needs anyway.
const MAX_BLOCKING_THREADS: usize = 64;

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .enable_all()
        .build()?)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            let config = args.load()?;
            logging::init(&config.log);
            // `systemctl reload` (SIGHUP) reads the same file with the same flags again.
            let reload = move || args.load();
            runtime()?.block_on(eas_gateway::run_server(config, Box::new(reload)))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config, user } => {
            let config = config.load()?;
            let login = match user {
                Some(user) => Some(check::Login {
                    user,
                    password: std::env::var("EAS_CHECK_PASSWORD").map_err(|_| {
                        anyhow::anyhow!("--user needs the password in EAS_CHECK_PASSWORD")
                    })?,
                }),
                None => None,
            };
            let ok =
                runtime()?.block_on(check::run(&config, login.as_ref(), &mut std::io::stdout()))?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Devices { config, action } => {
            let config = config.load()?;
            devices::run(&config, action, &mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Top {
            config,
            url,
            interval,
            frames,
        } => {
            let url = match url {
                Some(u) => u,
                None => top::metrics_url(&config.load()?),
            };
            use std::io::IsTerminal;
            let stdout = std::io::stdout();
            let clear = stdout.is_terminal() && frames.is_none();
            runtime()?.block_on(top::run(
                &url,
                std::time::Duration::from_secs(interval.max(1)),
                frames,
                &mut stdout.lock(),
                clear,
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::State { action } => {
            state::run(action, &mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Wbxml { direction } => {
            match direction {
                WbxmlCommand::Decode { input, output } => {
                    let bytes = read_input(input.as_ref())?;
                    let xml = tools::decode(&bytes, Limits::default())?;
                    write_output(output.as_ref(), xml.as_bytes())?
                }
                WbxmlCommand::Encode { input, output } => {
                    let bytes = read_input(input.as_ref())?;
                    let wbxml = tools::encode(&bytes)?;
                    write_output(output.as_ref(), &wbxml)?
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn read_input(path: Option<&PathBuf>) -> anyhow::Result<Vec<u8>> {
    match path {
        Some(p) if p.as_os_str() != "-" => {
            std::fs::read(p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))
        }
        _ => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf)?;
            Ok(buf)
        }
    }
}

fn write_output(path: Option<&PathBuf>, bytes: &[u8]) -> anyhow::Result<()> {
    match path {
        Some(p) if p.as_os_str() != "-" => std::fs::write(p, bytes)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display())),
        _ => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes)?;
            out.flush()?;
            Ok(())
        }
    }
}
