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

use crate::model::{Blade, Policy, Restart, VcSpec};
use crate::state::{Action, NetRequest};

mod ops;
use crate::place::place;
use crate::profile::{load_blades, load_vc, load_vc_net};
use crate::show::PlanView;

pub use crate::failure::Failure;

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
    /// Create a VC: place all its VMs and start them, or change nothing.
    Create(CreateArgs),
    /// List the VCs.
    List(Common),
    /// Show a VC: its VMs, their blade, state, MAC and address.
    Show(NameArgs),
    /// Start a stopped VC.
    Start(NameArgs),
    /// Stop a running VC (its VMs are powered off; their disks stay).
    Stop(NameArgs),
    /// Save a running VC's VMs to the shared volume and stop them.
    Save(NameArgs),
    /// Resume a saved VC, placed again (by a new policy when given).
    Restore(RestoreArgs),
    /// Drop a VC: its VMs, disks and keys.
    Destroy(DestroyArgs),
    /// Import a guest tarball as a read-only base image on the shared volume.
    ImportGuest(ImportArgs),
    /// Print what a VM wrote on its serial console (`VC/VM`, e.g. demo/vm1).
    Console(ConsoleArgs),
    /// Record the cluster's networks, domain and VC subnet pool (a TOML
    /// file, see docs/contracts.md) for VC networks to be planned from.
    SetNet(SetNetArgs),
}

#[derive(Debug, Args)]
pub struct SetNetArgs {
    /// The settings: `domain`, `storage`, `shared_dir`, `cluster_nets`,
    /// `upstream_dns`, `blades` (`[{name, addr}]`), and a `[pool]` table
    /// (`subnet_pool`, `prefix`). The installer renders it on every blade
    /// from the cluster profile.
    #[arg(default_value = crate::state::NET_SETTINGS_FILE)]
    pub file: PathBuf,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// The VM: `VC/VM`, e.g. `demo/vm1` or `demo/1`.
    pub vm: String,
    /// The shared volume (the console log lives there, readable from any
    /// blade).
    #[arg(long, value_name = "DIR")]
    pub shared: PathBuf,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The guest's name (what VC profiles call `guest`).
    pub name: String,
    /// The guest's root file system as a tarball (`vlx-image guest`).
    #[arg(long, value_name = "FILE")]
    pub tarball: PathBuf,
    /// The kernel its VMs boot.
    #[arg(long, value_name = "FILE")]
    pub kernel: PathBuf,
    /// The initramfs its VMs boot (it mounts the root from the VM's disk).
    #[arg(long, value_name = "FILE")]
    pub initrd: PathBuf,
    /// The shared volume.
    #[arg(long, value_name = "DIR")]
    pub shared: PathBuf,
    /// Size of the base image's file system.
    #[arg(long, default_value = "256MiB")]
    pub size: cluster::Bytes,
    #[command(flatten)]
    pub common: Common,
}

/// Where etcd is, and how to print.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// etcd endpoints, comma-separated `http://HOST:PORT` (default:
    /// $VLX_ETCD, else `endpoints` in /etc/vlx/etcd.conf).
    #[arg(long, value_name = "URLS")]
    pub etcd: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    /// The VC's name.
    pub name: String,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// The VC's name.
    pub name: String,
    /// Destroy it even while it runs (its VMs are killed).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The VC's name.
    pub name: String,
    /// Place it again by this policy (block or cyclic).
    #[arg(long, value_name = "POLICY")]
    pub placement: Option<Policy>,
    /// Needs a free core per vCPU (and the memory).
    #[arg(long, conflicts_with = "free")]
    pub strict: bool,
    /// vCPUs may overcommit cores; memory must still fit.
    #[arg(long)]
    pub free: bool,
    #[command(flatten)]
    pub common: Common,
}

/// A VC from a profile, from flags, or a profile with flags over it (flags
/// beat the file; each flag is the profile key of the same name).
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The VC profile (profiles/vcs/*.toml).
    #[arg(long = "vc", value_name = "FILE")]
    pub vc: Option<PathBuf>,
    #[arg(long)]
    pub name: Option<String>,
    /// The VC id (1 to 16777215; default from the name).
    #[arg(long)]
    pub id: Option<u32>,
    /// The guest image's name.
    #[arg(long)]
    pub guest: Option<String>,
    #[arg(long)]
    pub vms: Option<u32>,
    #[arg(long)]
    pub vcpus: Option<u32>,
    /// Memory of each VM, e.g. 128MiB.
    #[arg(long)]
    pub memory: Option<String>,
    /// block or cyclic.
    #[arg(long, value_name = "POLICY")]
    pub placement: Option<Policy>,
    /// Needs a free core per vCPU (and the memory).
    #[arg(long, conflicts_with = "free")]
    pub strict: bool,
    /// vCPUs may overcommit cores; memory must still fit.
    #[arg(long)]
    pub free: bool,
    /// manual or auto: what happens to the VMs of a lost blade.
    #[arg(long)]
    pub restart: Option<Restart>,
    /// The VC's private subnet, e.g. 10.200.3.0/24 (default: the first free
    /// block of the cluster's VC subnet pool).
    #[arg(long, value_name = "CIDR")]
    pub subnet: Option<cluster::Ipv4Net>,
    /// Its VMs may reach the outside through their blade (masquerade).
    #[arg(long)]
    pub outside: bool,
    #[command(flatten)]
    pub common: Common,
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
        Command::Create(a) => ops::create(&a),
        Command::List(c) => ops::list(&c),
        Command::Show(a) => ops::show(&a),
        Command::Start(a) => ops::action(&a, Action::Start),
        Command::Stop(a) => ops::action(&a, Action::Stop),
        Command::Save(a) => ops::action(&a, Action::Save),
        Command::Restore(a) => ops::restore(&a),
        Command::Destroy(a) => ops::destroy(&a),
        Command::ImportGuest(a) => ops::import_guest(&a),
        Command::Console(a) => ops::console(&a),
        Command::SetNet(a) => ops::set_net(&a),
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

/// Reads the network keys of a VC profile (exit 2 with every problem).
pub fn read_vc_net(path: &Path) -> Result<NetRequest, Failure> {
    let src = read_source(path)?;
    load_vc_net(&src).map_err(|d| Failure::BadInput(anyhow!("{d}")))
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
