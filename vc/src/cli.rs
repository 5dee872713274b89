//! `vlx-vc`: the command line. The binary parses arguments and calls
//! [`run`]; everything it prints comes back as a string so tests can call
//! the same code.
//!
//! Exit codes: 0 done, 1 failed (I/O, etcd unreachable), 2 bad input,
//! 3 refused (the action would break a rule; nothing was changed).

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use clap::{Args, Parser, Subcommand};
use cluster::Source;

use crate::model::{Blade, VcSpec};
use crate::place::place;
use crate::profile::{load_blades, load_vc};
use crate::show::PlanView;

/// Why a command did not do its job, and with which exit code.
#[derive(Debug)]
pub enum Failure {
    /// Exit 1: something failed underneath (I/O, etcd).
    Failed(anyhow::Error),
    /// Exit 2: the input is wrong.
    BadInput(anyhow::Error),
    /// Exit 3: the action is refused; nothing was changed.
    Refused(anyhow::Error),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Failed(_) => 1,
            Failure::BadInput(_) => 2,
            Failure::Refused(_) => 3,
        }
    }

    pub fn error(&self) -> &anyhow::Error {
        match self {
            Failure::Failed(e) | Failure::BadInput(e) | Failure::Refused(e) => e,
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::Failed(e)
    }
}

/// Manage virtual clusters: plan their placement, create, run, save,
/// restore and destroy them, from any blade.
#[derive(Debug, Parser)]
#[command(name = "vlx-vc", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Preview a VC's placement on a blades file; no cluster needed.
    Plan(PlanArgs),
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The VC profile (profiles/vcs/*.toml).
    #[arg(long = "vc", value_name = "FILE")]
    pub vc: PathBuf,
    /// The blades file: name, cores and memory of each blade.
    #[arg(long, value_name = "FILE")]
    pub blades: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Runs one command; returns what to print on stdout.
pub fn run(cli: Cli) -> Result<String, Failure> {
    match cli.command {
        Command::Plan(a) => plan(&a),
    }
}

fn read_source(path: &Path) -> Result<Source, Failure> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))
        .map_err(Failure::BadInput)?;
    Ok(Source::new(path.display().to_string(), text))
}

/// Reads and checks a VC profile (exit 2 with every problem).
pub fn read_vc(path: &Path) -> Result<VcSpec, Failure> {
    let src = read_source(path)?;
    load_vc(&src).map_err(|d| Failure::BadInput(anyhow!("{d}")))
}

/// Reads and checks a blades file (exit 2 with every problem).
pub fn read_blades(path: &Path) -> Result<Vec<Blade>, Failure> {
    let src = read_source(path)?;
    load_blades(&src).map_err(|d| Failure::BadInput(anyhow!("{d}")))
}

fn plan(a: &PlanArgs) -> Result<String, Failure> {
    let spec = read_vc(&a.vc)?;
    let blades = read_blades(&a.blades)?;
    let p = place(&spec, &blades).map_err(|r| Failure::Refused(r.into()))?;
    let view = PlanView::new(&spec, &p, &blades);
    Ok(if a.json { view.json() } else { view.text() })
}
