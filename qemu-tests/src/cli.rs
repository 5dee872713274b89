//! The command line of `vlx-rig`, in the library so that the binary and
//! `cargo xtask man` (man pages) build the same `clap` command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use cluster::MacAddr;

use crate::plan::MediaKind;
use crate::qemu::Firmware;

/// Rehearse a whole vlx cluster under QEMU before touching metal.
#[derive(Debug, Parser)]
///
/// Exit codes: 0 done (every check passed); 1 failed (a check failed or
/// did not run); 2 bad input (a flag, the profile); 3 refused.
#[command(name = "vlx-rig", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build, install and boot a cluster in QEMU, lose blades, reset one,
    /// and check it all; the report goes to --report.
    Rehearse(RehearseArgs),
    /// Boot blades with a kernel and initramfs on a private segment, until
    /// Ctrl-C (to try a kernel or initramfs on the rig's machines).
    Boot(BootArgs),
    /// Print a shell completion script (bash, zsh, fish) on standard output.
    Completions(voice::Completions),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FirmwareArg {
    Bios,
    Uefi,
}

impl From<FirmwareArg> for Firmware {
    fn from(f: FirmwareArg) -> Firmware {
        match f {
            FirmwareArg::Bios => Firmware::Bios,
            FirmwareArg::Uefi => Firmware::Uefi,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MediaArg {
    Usb,
    Iso,
}

impl From<MediaArg> for MediaKind {
    fn from(m: MediaArg) -> MediaKind {
        match m {
            MediaArg::Usb => MediaKind::Usb,
            MediaArg::Iso => MediaKind::Iso,
        }
    }
}

#[derive(Debug, Args)]
pub struct RehearseArgs {
    /// The cluster profile (a relative path is taken from the current
    /// folder; the default is the demo profile of a vlx checkout).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "profiles/clusters/demo.toml"
    )]
    pub cluster: PathBuf,
    /// A host image directory built before (otherwise `vlx-image build`
    /// builds the profile's host image).
    #[arg(long, value_name = "DIR")]
    pub image: Option<PathBuf>,
    /// Rehearse the first N blades of the profile.
    #[arg(long, value_name = "N")]
    pub nodes: Option<usize>,
    /// Where the report goes (timelines, consoles, checks).
    #[arg(long, value_name = "DIR", default_value = "target/rehearsal")]
    pub report: PathBuf,
    /// Keep the SAN, the image and the sockets after the run.
    #[arg(long)]
    pub keep: bool,
    /// Firmware of the blades (default: BIOS when the profile's boot assets
    /// carry it, else UEFI).
    #[arg(long, value_enum)]
    pub firmware: Option<FirmwareArg>,
    /// Memory of each blade, in MiB [default: 384; 512 for the Debian host
    /// image, which uses about 65 MiB once booted and runs the step-5
    /// virtual cluster's VMs].
    #[arg(long)]
    pub memory: Option<u32>,
    /// Stop after this step (1 to 8); the blades are powered off and the
    /// report written in any case.
    #[arg(long, value_name = "STEP", value_parser = clap::value_parser!(u8).range(1..=8))]
    pub stop_after: Option<u8>,
    /// Boot only the first blade from the SAN, every other one from the
    /// network served by the blades already up.
    #[arg(long)]
    pub pxe_only: bool,
    /// Add a blade with this MAC, which is not in the cluster table; it must
    /// be refused a root and say why (repeatable).
    #[arg(long, value_name = "MAC")]
    pub stranger: Vec<MacAddr>,
    /// Install from install media instead of `vlx-install apply`: the
    /// first blade boots them (`usb`: the USB image under UEFI, the
    /// default; `iso`: the ISO in a CD drive under BIOS) with the SAN
    /// attached, installs unattended and powers off; then the cluster
    /// boots as usual.
    #[arg(long, value_enum, value_name = "KIND", num_args = 0..=1, default_missing_value = "usb")]
    pub from_media: Option<MediaArg>,
    /// A host image profile instead of the cluster profile's `image.host`
    /// (`tiny`, `tiny-iscsi` and `debian` name profiles/hosts/tiny.toml,
    /// tiny-iscsi.toml and debian-bookworm.toml; an iSCSI cluster is
    /// rehearsed on `tiny-iscsi` without it). The rig installs a copy of
    /// the cluster profile that names it. An image that is not a test
    /// image has no shell on ttyS1: the rig checks its blades over SSH with
    /// a key of its own, which the copy lists in `[admin] ssh_keys`.
    #[arg(long, value_name = "PROFILE")]
    pub host: Option<String>,
    /// Seconds a blade may take from power on to `vlx: services ready`
    /// [default: 300; 900 with `--host debian`: systemd boots the Debian
    /// root in about a minute under TCG alone, several times that on a
    /// busy two-core machine with four blades].
    #[arg(long, value_name = "SECONDS")]
    pub ready_timeout: Option<u64>,
    /// Seconds between powering on one blade and the next (a rack's power
    /// sequencing; 0 powers them all on at once).
    #[arg(long, value_name = "SECONDS", default_value_t = crate::plan::DEFAULT_POWER_GAP.as_secs_f64())]
    pub stagger: f64,
    /// After step 7, change the running cluster (steps 9 to 13, before the
    /// shutdown): add a blade and PXE-boot it, replace a blade's board
    /// (a new MAC), remove a blade, upgrade the image onto the second
    /// origin slot and roll it back, kill the shared volume's holder under
    /// a blade's NFS mount of it. The rig installs a copy of the
    /// profile with `storage.slots = 2`.
    #[arg(long)]
    pub day2: bool,
    /// Print the result (every check, the report's files) as one JSON
    /// object on standard output, and errors as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BootArgs {
    /// The kernel every blade boots.
    #[arg(long, value_name = "FILE")]
    pub kernel: PathBuf,
    /// The initramfs every blade boots.
    #[arg(long, value_name = "FILE")]
    pub initrd: PathBuf,
    /// The kernel command line; `{name}` becomes the blade's name.
    #[arg(long, default_value = "console=ttyS0,115200 rig.name={name}")]
    pub append: String,
    /// How many blades.
    #[arg(long, default_value_t = 1)]
    pub blades: usize,
    /// What a blade prints on ttyS0 when it is up; `{name}` as above.
    #[arg(long, default_value = "vlx: services ready {name}")]
    pub wait: String,
    #[arg(long, value_enum, default_value = "bios")]
    pub firmware: FirmwareArg,
    /// Memory of each blade, in MiB.
    #[arg(long, default_value_t = 256)]
    pub memory: u32,
    /// Seconds a blade may take to come up.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// The first blade's MAC; the others count up from it.
    #[arg(long, default_value = "52:54:00:99:00:01")]
    pub mac: MacAddr,
    /// Keep the run's directory (consoles, sockets) after it ends.
    #[arg(long)]
    pub keep: bool,
}

/// The `clap` command of `vlx-rig` (for completions and man pages).
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}
