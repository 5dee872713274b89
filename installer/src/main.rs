//! `vlx-install`: parses the command line and dispatches to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use cluster::{Bytes, SanFacts};
use installer::profile::{LoadError, load};

/// Lay a whole vlx cluster onto a shared SAN, from a cluster profile and a
/// host image.
#[derive(Debug, Parser)]
#[command(name = "vlx-install", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show what an install would write, before anything is written.
    Plan(PlanArgs),
}

#[derive(Debug, Args)]
struct PlanArgs {
    /// The cluster profile (TOML).
    #[arg(long, value_name = "FILE")]
    cluster: PathBuf,
    /// Plan for a SAN of this size, e.g. 8GiB (overrides san.size).
    #[arg(long, value_name = "SIZE", conflicts_with = "san")]
    san_size: Option<Bytes>,
    /// Plan for this SAN: a block device or an image file (read, never written).
    #[arg(long, value_name = "PATH")]
    san: Option<PathBuf>,
    /// Print the plan as JSON instead of tables.
    #[arg(long)]
    json: bool,
}

/// Exit code for input the user must fix (a profile error).
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Plan(args) => plan(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(LoadError::Invalid(d)) = e.downcast_ref::<LoadError>() {
                eprintln!("{d}");
                return ExitCode::from(EXIT_BAD_INPUT);
            }
            eprintln!("vlx-install: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn plan(args: PlanArgs) -> anyhow::Result<()> {
    let san = match (&args.san, args.san_size) {
        (Some(path), _) => {
            let facts = installer::device::inspect(path)
                .with_context(|| format!("inspecting SAN {}", path.display()))?;
            SanFacts {
                size: Some(facts.size),
                sector_size: facts.sector_size,
            }
        }
        (None, size) => SanFacts {
            size,
            sector_size: None,
        },
    };
    let (_, plan) = load(&args.cluster, san)?;
    let text = if args.json {
        plan.to_json()
    } else {
        plan.to_string()
    };
    emit(&text)
}

/// Writes to stdout; a closed pipe (`| head`) ends the output quietly.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to standard output"),
    }
}
