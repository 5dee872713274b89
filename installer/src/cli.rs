//! The command line of `vlx-install`, in the library so that the binary
//! and `cargo xtask man` (man pages) build the same `clap` command.

use std::path::PathBuf;

use crate::iscsi::SanOpt;

use clap::{Args, Parser, Subcommand};
use cluster::Bytes;

/// Lay a whole vlx cluster onto a shared SAN, from a cluster profile and a
/// host image.
///
/// Exit codes: 0 done; 1 failed; 2 bad input (a flag, the profile, the
/// image); 3 refused: the target was left as it was (also when the install
/// or reset was not confirmed).
#[derive(Debug, Parser)]
#[command(name = "vlx-install", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what an install would write, before anything is written.
    Plan(PlanArgs),
    /// Install the cluster onto the SAN (or finish an interrupted install).
    Apply(ApplyArgs),
    /// Show which cluster a SAN holds, its nodes and each install step
    /// (with --check-origin, whether the origin verifies).
    Status(StatusArgs),
    /// Re-hash the origin and check the layout against the plan; nonzero on
    /// any difference.
    Verify(VerifyArgs),
    /// Reset nodes to factory state: their next boot starts from the golden
    /// image, everything they wrote is lost. Stop the nodes first. Asks
    /// unless --yes.
    ResetNode(ResetArgs),
    /// Write a new host image to the origin slot the cluster does not boot,
    /// while it runs, and make that slot current. Each node moves to it at
    /// its next reboot, and ITS SNAPSHOT STORE IS RESET THEN: keep what
    /// must survive on the shared volume. Needs storage.slots = 2.
    Upgrade(UpgradeArgs),
    /// Make the previous origin slot current again (after an upgrade).
    /// Nodes move back at their next reboot; a node that ran the other
    /// slot has its snapshot store reset then.
    Rollback(RollbackArgs),
    /// Print a shell completion script (bash, zsh, fish) on standard output.
    Completions(voice::Completions),
    /// The install media's installer environment (run by its /init): find
    /// and check the payload, ask or read vlx.* from the kernel command
    /// line, install, power off. Internal: it powers the machine off.
    #[command(hide = true)]
    MediaEnv,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The cluster profile (TOML).
    #[arg(long, value_name = "FILE")]
    pub cluster: PathBuf,
    /// Plan for a SAN of this size, e.g. 8GiB (overrides san.size).
    #[arg(long, value_name = "SIZE", conflicts_with = "san")]
    pub san_size: Option<Bytes>,
    /// Plan for this SAN: a block device, an image file, or a disk by a
    /// stable name, serial:SERIAL, wwn:WWN or by-id:ID (read, never written).
    #[arg(long, value_name = "PATH")]
    pub san: Option<PathBuf>,
    /// Show only these nodes, a list such as blade[01-04,07] (the disk
    /// layout stays whole).
    #[arg(long, value_name = "NODES")]
    pub nodes: Option<String>,
    /// Show only what an apply would change on the installed cluster of
    /// --san (nodes, partitions, settings); nothing when it matches.
    #[arg(long, requires = "san")]
    pub diff: bool,
    /// Print the plan as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The cluster profile (TOML).
    #[arg(long, value_name = "FILE")]
    pub cluster: PathBuf,
    /// The host image directory made by `vlx-image build`.
    #[arg(long, value_name = "DIR")]
    pub image: PathBuf,
    #[command(flatten)]
    pub san: SanOpt,
    /// Overwrite a target that holds another partition table or file system.
    #[arg(long)]
    pub wipe: bool,
    /// Replace the origin of an installed cluster with this image and reset
    /// every node (their snapshot stores would no longer match).
    #[arg(long)]
    pub reset_all: bool,
    /// Install a test image (`test_image` in its manifest, as the tiny
    /// image: a root shell without login on every blade's serial ports),
    /// which is refused otherwise. For test rigs only.
    #[arg(long)]
    pub test_image: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Report progress as one JSON object per line on standard error, the
    /// result as JSON on standard output, and errors as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// The host image directory made by `vlx-image build` (a newer build
    /// of the host image the cluster runs).
    #[arg(long, value_name = "DIR")]
    pub image: PathBuf,
    #[command(flatten)]
    pub san: SanOpt,
    /// Report progress as JSON lines on standard error and the result as
    /// JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub san: SanOpt,
    /// Report progress as JSON lines on standard error and the result as
    /// JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub san: SanOpt,
    /// Print the result as JSON (the problems found, if any).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub san: SanOpt,
    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also re-hash the origin against the image's manifest (reads all of
    /// it; `verify` does this and checks the layout too).
    #[arg(long)]
    pub check_origin: bool,
    /// The running cluster: every node up or down, who holds each VIP and
    /// the shared volume, each node's slot and store fill, from the status
    /// block each running node writes on the SAN every 10 s (two-slot
    /// installs).
    #[arg(long, conflicts_with = "check_origin")]
    pub live: bool,
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// The nodes to reset: a name or a list such as blade[01-04,07].
    #[arg(value_name = "NODES")]
    pub name: String,
    #[command(flatten)]
    pub san: SanOpt,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The `clap` command of `vlx-install` (for completions and man pages).
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}
