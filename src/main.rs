//! The `eas-gateway` binary: command-line parsing only; the work lives in the library.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use eas_gateway::tools;
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
    /// Convert between EAS WBXML and its readable XML form.
    Wbxml {
        #[command(subcommand)]
        direction: WbxmlCommand,
    },
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eas-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Wbxml { direction } => match direction {
            WbxmlCommand::Decode { input, output } => {
                let bytes = read_input(input.as_ref())?;
                let xml = tools::decode(&bytes, Limits::default())?;
                write_output(output.as_ref(), xml.as_bytes())
            }
            WbxmlCommand::Encode { input, output } => {
                let bytes = read_input(input.as_ref())?;
                let wbxml = tools::encode(&bytes)?;
                write_output(output.as_ref(), &wbxml)
            }
        },
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
