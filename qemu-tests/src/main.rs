//! `vlx-rig`: parses the command line and dispatches to the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use cluster::MacAddr;
use qemu_tests::bootcmd::{self, BootOptions};
use qemu_tests::plan::{MediaKind, Options, Scheme, Timeouts};
use qemu_tests::qemu::Firmware;
use qemu_tests::rehearse::{self, RehearseError, Request};
use qemu_tests::report::Outcome;
use qemu_tests::run;

/// Rehearse a whole vlx cluster under QEMU before touching metal.
#[derive(Debug, Parser)]
#[command(name = "vlx-rig", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build, install and boot a cluster in QEMU, lose blades, reset one,
    /// and check it all; the report goes to --report.
    Rehearse(RehearseArgs),
    /// Boot blades with a kernel and initramfs on a private segment, until
    /// Ctrl-C (to try a kernel or initramfs on the rig's machines).
    Boot(BootArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FirmwareArg {
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
enum MediaArg {
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
struct RehearseArgs {
    /// The cluster profile.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "profiles/clusters/demo.toml"
    )]
    cluster: PathBuf,
    /// A host image directory built before (otherwise `vlx-image build`
    /// builds the profile's host image).
    #[arg(long, value_name = "DIR")]
    image: Option<PathBuf>,
    /// Rehearse the first N blades of the profile.
    #[arg(long, value_name = "N")]
    nodes: Option<usize>,
    /// Where the report goes (timelines, consoles, checks).
    #[arg(long, value_name = "DIR", default_value = "target/rehearsal")]
    report: PathBuf,
    /// Keep the SAN, the image and the sockets after the run.
    #[arg(long)]
    keep: bool,
    /// Firmware of the blades (default: BIOS when the profile's boot assets
    /// carry it, else UEFI).
    #[arg(long, value_enum)]
    firmware: Option<FirmwareArg>,
    /// Memory of each blade, in MiB [default: 384; 512 with `--host
    /// debian`, whose systemd and daemons need more].
    #[arg(long)]
    memory: Option<u32>,
    /// Stop after this step (1 to 8); the blades are powered off and the
    /// report written in any case.
    #[arg(long, value_name = "STEP")]
    stop_after: Option<u8>,
    /// Boot only the first blade from the SAN, every other one from the
    /// network served by the blades already up.
    #[arg(long)]
    pxe_only: bool,
    /// Add a blade with this MAC, which is not in the cluster table; it must
    /// be refused a root and say why (repeatable).
    #[arg(long, value_name = "MAC")]
    stranger: Vec<MacAddr>,
    /// Install from install media instead of `vlx-install apply`: the
    /// first blade boots them (`usb`: the USB image under UEFI, the
    /// default; `iso`: the ISO in a CD drive under BIOS) with the SAN
    /// attached, installs unattended and powers off; then the cluster
    /// boots as usual.
    #[arg(long, value_enum, value_name = "KIND", num_args = 0..=1, default_missing_value = "usb")]
    from_media: Option<MediaArg>,
    /// A host image profile instead of the cluster profile's `image.host`
    /// (`tiny` and `debian` name profiles/hosts/tiny.toml and
    /// debian-bookworm.toml). The rig installs a copy of the cluster
    /// profile that names it. An image that is not a test image has no
    /// shell on ttyS1: the rig checks its blades over SSH with a key of its
    /// own, which the copy lists in `[admin] ssh_keys`.
    #[arg(long, value_name = "PROFILE")]
    host: Option<String>,
    /// Seconds a blade may take from power on to `vlx: services ready`
    /// [default: 300; 900 with `--host debian`: systemd boots the Debian
    /// root in about a minute under TCG alone, several times that on a
    /// busy two-core machine with four blades].
    #[arg(long, value_name = "SECONDS")]
    ready_timeout: Option<u64>,
    /// Seconds between powering on one blade and the next (a rack's power
    /// sequencing; 0 powers them all on at once).
    #[arg(long, value_name = "SECONDS", default_value_t = qemu_tests::plan::DEFAULT_POWER_GAP.as_secs_f64())]
    stagger: f64,
}

#[derive(Debug, Args)]
struct BootArgs {
    /// The kernel every blade boots.
    #[arg(long, value_name = "FILE")]
    kernel: PathBuf,
    /// The initramfs every blade boots.
    #[arg(long, value_name = "FILE")]
    initrd: PathBuf,
    /// The kernel command line; `{name}` becomes the blade's name.
    #[arg(long, default_value = "console=ttyS0,115200 rig.name={name}")]
    append: String,
    /// How many blades.
    #[arg(long, default_value_t = 1)]
    blades: usize,
    /// What a blade prints on ttyS0 when it is up; `{name}` as above.
    #[arg(long, default_value = "vlx: services ready {name}")]
    wait: String,
    #[arg(long, value_enum, default_value = "bios")]
    firmware: FirmwareArg,
    /// Memory of each blade, in MiB.
    #[arg(long, default_value_t = 256)]
    memory: u32,
    /// Seconds a blade may take to come up.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// The first blade's MAC; the others count up from it.
    #[arg(long, default_value = "52:54:00:99:00:01")]
    mac: MacAddr,
    /// Keep the run's directory (consoles, sockets) after it ends.
    #[arg(long)]
    keep: bool,
}

/// `--ready-timeout` by default.
const READY_SECS: u64 = 300;
/// `--memory` and `--ready-timeout` with `--host debian` (see their help).
const DEBIAN_MEMORY_MIB: u32 = 512;
const DEBIAN_READY_SECS: u64 = 900;

/// Exit code of a rehearsal whose checks failed (the table names them).
const EXIT_CHECKS_FAILED: u8 = 1;
/// Exit code of a profile the user must fix.
const EXIT_BAD_INPUT: u8 = 2;

fn rehearse(a: RehearseArgs) -> anyhow::Result<ExitCode> {
    let debian = a.host.as_deref() == Some("debian");
    let memory = a.memory.unwrap_or(if debian {
        DEBIAN_MEMORY_MIB
    } else {
        qemu_tests::plan::DEFAULT_MEMORY_MIB
    });
    let ready_timeout = a.ready_timeout.unwrap_or(if debian {
        DEBIAN_READY_SECS
    } else {
        READY_SECS
    });
    let options = Options {
        nodes: a.nodes,
        image: a.image,
        firmware: a.firmware.map(Firmware::from),
        memory_mib: memory,
        scheme: if a.pxe_only {
            Scheme::PxeOnly
        } else {
            Scheme::Cold
        },
        stop_after: a.stop_after,
        strangers: a.stranger,
        from_media: a.from_media.map(MediaKind::from),
        host: a.host.map(|h| match h.as_str() {
            "tiny" => PathBuf::from("profiles/hosts/tiny.toml"),
            "debian" => PathBuf::from("profiles/hosts/debian-bookworm.toml"),
            _ => PathBuf::from(h),
        }),
        timeouts: Timeouts {
            ready: Duration::from_secs(ready_timeout),
            power_gap: Duration::try_from_secs_f64(a.stagger)
                .map_err(|e| anyhow::anyhow!("--stagger {}: {e}", a.stagger))?,
            ..Timeouts::default()
        },
    };
    let req = Request {
        profile: a.cluster,
        options,
        report_dir: a.report,
        keep: a.keep,
        build_programs: false,
    };
    let outcome = match rehearse::rehearse(&req, &|line| eprintln!("{line}")) {
        Ok(o) => o,
        Err(RehearseError::Invalid(d)) => {
            eprintln!("{d}");
            return Ok(ExitCode::from(EXIT_BAD_INPUT));
        }
        Err(e) => return Err(e.into()),
    };
    let files = &outcome.files;
    println!("\n{}", outcome.checks);
    for c in outcome
        .checks
        .0
        .iter()
        .filter(|c| c.outcome == Outcome::Failed)
    {
        if c.detail.lines().count() > 1 {
            println!("\n{}:\n{}", c.name, c.detail);
        }
    }
    let abs = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    println!(
        "\nreport: {} (checks.txt, checks.json, timeline.json, timeline.svg, plan.txt, consoles/)",
        abs(&files.dir).display()
    );
    if let Some(dir) = &outcome.kept {
        println!("kept: {} (SAN, image, sockets)", dir.display());
    }
    let failed = outcome.checks.failed();
    if !failed.is_empty() || !outcome.checks.all_passed() {
        let mut why = failed.join(", ");
        if why.is_empty() {
            why = "some checks did not run".into();
        }
        eprintln!("vlx-rig: rehearsal failed: {why}");
        return Ok(ExitCode::from(EXIT_CHECKS_FAILED));
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Rehearse(a) => rehearse(a),
        Command::Boot(a) => bootcmd::boot(&BootOptions {
            kernel: a.kernel,
            initrd: a.initrd,
            append: a.append,
            blades: a.blades,
            wait: a.wait,
            firmware: a.firmware.into(),
            memory_mib: a.memory,
            timeout: Duration::from_secs(a.timeout),
            first_mac: a.mac,
            keep: a.keep,
        })
        .map(|()| ExitCode::SUCCESS)
        .map_err(anyhow::Error::from),
    };
    if let Some(sig) = run::interrupted_by() {
        return ExitCode::from((128 + sig).clamp(0, 255) as u8);
    }
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vlx-rig: {e:#}");
            ExitCode::FAILURE
        }
    }
}
