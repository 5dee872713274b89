//! The command line of `vlx-node` outside of process 1 (`--version`,
//! `--help`, completions), in the library so that `cargo xtask man` builds
//! the same `clap` command. As `/init` the agent reads no arguments: the
//! kernel passes it words of its command line that mean nothing here.

use clap::{Parser, Subcommand};

/// The vlx node agent: `/init` of every blade's initramfs. It finds the
/// SAN, knows its blade by MAC in the cluster table, assembles the node's
/// snapshot root and switches to it, printing one `vlx-node:` line per step
/// on the console. Run elsewhere it does nothing.
///
/// Exit codes (outside of process 1): 0 done; 1 failed; 2 bad input (also:
/// run elsewhere than as /init); 3 refused.
#[derive(Debug, Parser)]
#[command(name = "vlx-node", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a shell completion script (bash, zsh, fish) on standard output.
    Completions(voice::Completions),
}

/// The `clap` command of `vlx-node` (for completions and man pages).
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}
