//! The rehearsal plan: which blades run, their QEMU machines, and the steps,
//! as one plain value that prints and compares in tests. The executor
//! ([`crate::rehearse`]) runs it; nothing here does I/O.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cluster::{Bytes, MacAddr, Plan};
use serde::Serialize;

use crate::qemu::{
    Accel, BootFrom, Disk, Firmware, Machine, Media, SAN_SERIAL, Sockets, UefiFiles,
};

pub mod day2;

/// How the blades come up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// Every blade boots the SAN's ESP with no network service anywhere;
    /// one blade is held back to PXE-boot from the survivors in step 6.
    Cold,
    /// The first blade boots the SAN's ESP; every other blade then boots
    /// from the network, served by the blades already up.
    PxeOnly,
}

/// The last step of a rehearsal (1 to 8, as in [`Step::number`]).
pub const LAST_STEP: u8 = 8;

/// What the caller asks for; the profile supplies the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Rehearse the first `nodes` blades of the profile (all when `None`).
    pub nodes: Option<usize>,
    /// A host image directory already built; otherwise step 1 builds one.
    pub image: Option<PathBuf>,
    /// Firmware of every blade; by default BIOS when the profile's boot
    /// assets carry it (it boots faster under TCG), else UEFI.
    pub firmware: Option<Firmware>,
    pub memory_mib: u32,
    pub scheme: Scheme,
    /// Stop after this step; the shutdown and the report always run.
    pub stop_after: Option<u8>,
    /// Extra blades with MACs that are not in the cluster table; each must
    /// be refused a root, saying why on its console.
    pub strangers: Vec<MacAddr>,
    /// Install from install media: the first blade boots them with the
    /// SAN attached and installs unattended, instead of `vlx-install
    /// apply` run by the rig.
    pub from_media: Option<MediaKind>,
    /// A host image profile that replaces the cluster profile's
    /// `image.host` (the rig installs a copy of the cluster profile).
    pub host: Option<PathBuf>,
    /// After the blades are ready, fill the first one's snapshot store past
    /// 80 % with a file on its root and wait for its store watcher's
    /// warning (the store must be smaller than the root's free space).
    pub fill_store: bool,
    /// After step 7, change the running cluster (`--day2`, steps 9 to
    /// 13): add a blade, replace a board, remove a blade, upgrade the
    /// image and roll it back ([`day2`]), kill the shared volume's holder
    /// under a client.
    pub day2: bool,
    pub timeouts: Timeouts,
}

/// Which install media the first blade boots (`--from-media`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    /// The USB image, under OVMF (UEFI).
    Usb,
    /// The ISO in a CD drive, under SeaBIOS (BIOS).
    Iso,
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MediaKind::Usb => "the USB image under UEFI",
            MediaKind::Iso => "the ISO under BIOS",
        })
    }
}

/// The media profile's name: the media are `vlx-rig.img` and `.iso`.
pub const MEDIA_NAME: &str = "vlx-rig";

/// Memory of the blade that installs from media: the installer's
/// initramfs and the payload's page cache.
pub const INSTALLER_MEMORY_MIB: u32 = 768;

/// The media profile the rig builds: the cluster profile, unattended onto
/// the SAN (named by its serial), questions and reports on ttyS0. With
/// `iscsi`, onto the target's LUN through the storage NIC, logging in with
/// the CHAP file `chap` when the target asks for CHAP.
pub fn media_profile(
    cluster_profile: &Path,
    iscsi: Option<&MediaIscsi>,
    chap: Option<&Path>,
) -> String {
    let stem = cluster_profile
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let target = match iscsi {
        None => format!("target = \"serial:{SAN_SERIAL}\"\n"),
        Some(i) => format!(
            "target = {:?}\nsif = {:?}\nsifip = \"{}\"\nsifnm = \"{}\"\n{}",
            i.url,
            i.mac,
            i.addr,
            i.netmask,
            chap.map(|c| format!("chap = {:?}\n", c.display().to_string()))
                .unwrap_or_default()
        ),
    };
    format!(
        "# Written by vlx-rig for --from-media.\n\
         [media]\nname = \"{MEDIA_NAME}\"\nclusters = [{:?}]\nconsole = [\"ttyS0,115200\"]\n\n\
         [unattended]\nprofile = {stem:?}\n{target}",
        cluster_profile.display().to_string()
    )
}

impl Default for Options {
    fn default() -> Options {
        Options {
            nodes: None,
            image: None,
            firmware: None,
            memory_mib: DEFAULT_MEMORY_MIB,
            scheme: Scheme::Cold,
            stop_after: None,
            strangers: Vec::new(),
            from_media: None,
            host: None,
            fill_store: false,
            day2: false,
            timeouts: Timeouts::default(),
        }
    }
}

/// Memory of a blade: the tiny image's initramfs, daemons and page cache
/// fit with room to spare; more only slows QEMU's start.
pub const DEFAULT_MEMORY_MIB: u32 = 384;

/// `--memory` with `--host debian`: systemd, journald, sshd and the
/// daemons of the Debian host image. A blade of the Debian rehearsal at
/// 512 MiB used 65 MiB after its boot (`free -m`: 404 of 470 MiB
/// available), so it needs no more than the tiny image's for itself; the
/// step-5 virtual cluster adds a 128 MiB guest and its QEMU (TCG) on two
/// of the blades, hence 512.
pub const DEBIAN_MEMORY_MIB: u32 = 512;

/// `--ready-timeout` with `--host debian`: systemd boots the Debian root
/// in about a minute under TCG alone, several times that on a busy
/// two-core machine running four blades.
pub const DEBIAN_READY: Duration = Duration::from_secs(900);

/// How long the rig waits. Generous, because the machine running the rig
/// may be loaded; speed is measured by the benchmark, not judged here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Timeouts {
    /// Power on to `vlx: services ready`.
    pub ready: Duration,
    /// Power on of the blade that installs from media to its power off.
    pub install: Duration,
    /// One command on a blade's check shell.
    pub command: Duration,
    /// How long the rig waits for the VIP to have one holder: the host's
    /// own deadline, generous for a loaded host. The move itself is timed
    /// on the blade that takes the VIP and judged by [`VIP_MOVE_LIMIT`].
    pub vip_watch: Duration,
    /// How long chrony may take to hear from a peer.
    pub chrony: Duration,
    /// The gap between powering on one blade and the next, as a rack's
    /// power sequencer spaces them. Here it also keeps the blades from all
    /// emulating their firmware and kernel at once on two shared cores,
    /// which would time the host's contention rather than a blade's boot.
    pub power_gap: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            ready: Duration::from_secs(300),
            install: Duration::from_secs(900),
            command: Duration::from_secs(30),
            vip_watch: Duration::from_secs(120),
            chrony: Duration::from_secs(90),
            power_gap: DEFAULT_POWER_GAP,
        }
    }
}

/// Default gap between blade power-ons.
pub const DEFAULT_POWER_GAP: Duration = Duration::from_secs(6);

/// The VIP must move within this time after its holder dies (issue 5),
/// measured on the clock of the blade that takes it: from the last time
/// it saw the holder answer a ping (`checks::watch_alive`) to its
/// keepalived entering MASTER (`/run/vlx/vrrp-master`). VRRP's own share is at most about 3.6 s: a
/// backup takes over three adverts of one second plus the skew of its
/// priority after the last advert it heard.
pub const VIP_MOVE_LIMIT: Duration = Duration::from_secs(10);

/// Facts about the machine the rehearsal runs on, found by the executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The cluster profile's path.
    pub profile: PathBuf,
    /// The host image profile the cluster profile names, resolved.
    pub host_profile: PathBuf,
    /// Scratch directory of this run (sockets, SAN, built image).
    pub run_dir: PathBuf,
    pub report_dir: PathBuf,
    pub accel: Accel,
    /// OVMF's code and variable-store template, when installed.
    pub ovmf: Option<Ovmf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ovmf {
    pub code: PathBuf,
    pub vars_template: PathBuf,
}

/// Where the host image comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ImageSource {
    /// `vlx-image build` of this host profile into `out`.
    Build { host_profile: PathBuf, out: PathBuf },
    /// An image directory built before.
    Given { dir: PathBuf },
}

impl ImageSource {
    pub fn dir(&self) -> &Path {
        match self {
            ImageSource::Build { out, .. } => out,
            ImageSource::Given { dir } => dir,
        }
    }
}

/// What a blade is for in this rehearsal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Part {
    /// Boots the SAN's ESP in the cold start.
    ColdStart,
    /// Boots from the network once other blades run (PXE-only scheme).
    Chained,
    /// Never booted until step 6, when it PXE-boots from the survivors (on
    /// a shared disk) or cold-starts from the target (over iSCSI).
    Late,
    /// Not in the cluster table: must be refused.
    Stranger,
    /// Added to the running cluster by a day-2 step (9) and PXE-booted.
    Added,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::ColdStart => "cold-start",
            Part::Chained => "chained",
            Part::Late => "late",
            Part::Stranger => "stranger",
            Part::Added => "added",
        })
    }
}

/// One blade: a node of the cluster (or a stranger) and its machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blade {
    pub name: String,
    pub mac: MacAddr,
    /// Its address on the cluster network (`None` for a stranger).
    pub ip: Option<Ipv4Addr>,
    pub fqdn: Option<String>,
    pub part: Part,
    /// The blade's machine at its first power on.
    pub machine: Machine,
}

impl Blade {
    /// The same blade, powered on to boot from `boot`.
    pub fn machine(&self, boot: BootFrom) -> Machine {
        Machine {
            boot,
            ..self.machine.clone()
        }
    }

    pub fn is_node(&self) -> bool {
        self.part != Part::Stranger
    }
}

/// What the media of an iSCSI rehearsal install onto: the target's LUN
/// (`vlx.target=`) through the first blade's storage NIC (`vlx.sif`, by
/// MAC, `vlx.sifip`, `vlx.sifnm`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MediaIscsi {
    pub url: String,
    pub mac: String,
    pub addr: Ipv4Addr,
    pub netmask: Ipv4Addr,
}

/// One step of the rehearsal, numbered as in issue 5.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// 1: build (or take) the host image.
    Image { source: ImageSource },
    /// 1: a sparse SAN image, then `vlx-install apply` onto it.
    Install { san: PathBuf, size: Bytes },
    /// 1: install media (`vlx-image media`) carrying the cluster profile,
    /// unattended onto the SAN: `profile` is the media profile written.
    /// With `iscsi`, unattended onto the target's LUN through the first
    /// blade's storage NIC.
    Media {
        profile: PathBuf,
        out: PathBuf,
        iscsi: Option<MediaIscsi>,
    },
    /// 1: a sparse SAN image; `installer` (the first blade) boots the
    /// media, installs unattended and powers off; `vlx-install verify`
    /// accepts the SAN.
    InstallFromMedia {
        san: PathBuf,
        size: Bytes,
        installer: Box<Machine>,
    },
    /// 1, iSCSI: a sparse SAN image that tgt serves on the storage
    /// network; `installer` (the first blade, booting an installer
    /// environment) runs `vlx-install apply --san iscsi://...` through its
    /// storage NIC and powers off; `vlx-install verify` accepts the SAN.
    InstallThroughIscsi {
        san: PathBuf,
        size: Bytes,
        installer: Box<Machine>,
    },
    /// 2, 3: power on blades.
    PowerOn { blades: Vec<String>, from: String },
    /// 4: wait for `vlx-node: ready` and `vlx: services ready`.
    AwaitReady { blades: Vec<String> },
    /// 4: wait for strangers to say why they get no root.
    AwaitRefusal { blades: Vec<String> },
    /// 4, iSCSI with CHAP: the late blade, its boot ROM's stored CHAP
    /// secret wrong, is powered on while it is held back: the target
    /// refuses its login, it says so on its console and gets no root.
    WrongChap { machine: Box<Machine> },
    /// 5: the checks over the blades' check shells.
    Checks,
    /// 5, iSCSI: tgtd is killed and started again while the blades run,
    /// then the storage path is cut for 10 s; every blade logs in again,
    /// keeps its root and answers.
    TargetRestart,
    /// 6: kill the VIP holder and the first DHCP server; the VIP moves; the
    /// late blade boots as its first machine says (`from` in words): from
    /// the network, served by the survivors, on a shared disk; from the
    /// target by its boot ROM on an iSCSI SAN (see `rehearse::target`).
    LoseBlades { late: String, from: String },
    /// 7: stop a blade, reset its snapshot, boot it again.
    FactoryReset,
    /// 9 (`--day2`): the SAN grows to `grow_to`, `vlx-install apply` of
    /// `profile` (the installed one with `nodes`) adds `blade` while the
    /// cluster runs; the running blades resolve its name; it PXE-boots.
    AddBlade {
        blade: String,
        profile: PathBuf,
        nodes: Vec<day2::Entry>,
        grow_to: Bytes,
    },
    /// 10: `node` writes a file and is powered off; `profile` gives it the
    /// MAC of a new board, which boots as `node` with the file.
    ReplaceBoard {
        node: String,
        mac: MacAddr,
        profile: PathBuf,
        nodes: Vec<day2::Entry>,
    },
    /// 11: `node` is powered off and `profile` leaves it out: the running
    /// blades no longer resolve it, `vlx-install status` no longer lists
    /// it.
    RemoveBlade {
        node: String,
        profile: PathBuf,
        nodes: Vec<day2::Entry>,
    },
    /// 12: `vlx-install upgrade` with `image` (the host image again, its
    /// origin carrying [`day2::UPGRADE_MARKER`]); two blades reboot onto
    /// the new slot, one stays on the old; `vlx-install rollback`, and a
    /// reboot brings one back to the first slot.
    Upgrade { image: PathBuf },
    /// 13: the holder of the shared volume's VIP hangs (its keepalived and
    /// its lease keeper stopped, its kernel and mount left running) while
    /// a running blade that will not take the VIP (the lowest VRRP
    /// priority of the others) has the volume mounted over NFS, hard, and
    /// writes to it; the holder's watchdog resets it, the VIP moves and
    /// the client's writes go on, its file read back, within
    /// [`crate::rehearse::NFS_RESUME_LIMIT`] on its own clock.
    SharedFailover,
    /// Power every blade off, then compare the origin's sha256.
    Shutdown,
    /// 8: timelines, consoles and the checks table.
    Report { dir: PathBuf },
}

impl Step {
    /// The step's number in issue 5's list.
    pub fn number(&self) -> u8 {
        match self {
            Step::Image { .. }
            | Step::Install { .. }
            | Step::Media { .. }
            | Step::InstallFromMedia { .. }
            | Step::InstallThroughIscsi { .. } => 1,
            Step::PowerOn { .. } => 3,
            Step::AwaitReady { .. } | Step::AwaitRefusal { .. } | Step::WrongChap { .. } => 4,
            Step::Checks | Step::TargetRestart => 5,
            Step::LoseBlades { .. } => 6,
            Step::FactoryReset => 7,
            Step::Shutdown | Step::Report { .. } => 8,
            Step::AddBlade { .. } => 9,
            Step::ReplaceBoard { .. } => 10,
            Step::RemoveBlade { .. } => 11,
            Step::Upgrade { .. } => 12,
            Step::SharedFailover => 13,
        }
    }
}

impl Step {
    /// A short name, for the checks table.
    pub fn title(&self) -> String {
        match self {
            Step::Image { .. } => "host image".into(),
            Step::Install { .. } => "install onto the SAN".into(),
            Step::Media { .. } => "install media".into(),
            Step::InstallFromMedia { .. } => "install from the media".into(),
            Step::InstallThroughIscsi { .. } => "install through iSCSI".into(),
            Step::PowerOn { blades, .. } => format!("power on {}", blades.join(", ")),
            Step::AwaitReady { blades } => format!("{} ready", blades.join(", ")),
            Step::AwaitRefusal { blades } => format!("{} refused", blades.join(", ")),
            Step::WrongChap { machine } => format!("{} refused", machine.name),
            Step::Checks => "checks of the running cluster".into(),
            Step::TargetRestart => "the iSCSI target restarts".into(),
            Step::LoseBlades { late, .. } => format!("lose two blades, boot {late}"),
            Step::FactoryReset => "factory reset".into(),
            Step::AddBlade { blade, .. } => format!("add {blade} to the running cluster"),
            Step::ReplaceBoard { node, .. } => format!("replace {node}'s board"),
            Step::RemoveBlade { node, .. } => format!("remove {node}"),
            Step::Upgrade { .. } => "upgrade the image, roll it back".into(),
            Step::SharedFailover => "the shared volume's holder hangs".into(),
            Step::Shutdown => "shutdown".into(),
            Step::Report { .. } => "report".into(),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Image {
                source: ImageSource::Build { host_profile, out },
            } => write!(
                f,
                "build the host image {} into {}",
                host_profile.display(),
                out.display()
            ),
            Step::Image {
                source: ImageSource::Given { dir },
            } => write!(f, "take the host image in {}", dir.display()),
            Step::Install { san, size } => write!(
                f,
                "make a sparse {size} SAN {} and run vlx-install apply onto it",
                san.display()
            ),
            Step::Media { profile, out, iscsi } => write!(
                f,
                "build install media from {} into {} (vlx-image media){}",
                profile.display(),
                out.display(),
                iscsi
                    .as_ref()
                    .map(|i| format!(", unattended onto {} through {} ({})", i.url, i.mac, i.addr))
                    .unwrap_or_default()
            ),
            Step::InstallFromMedia {
                san,
                size,
                installer,
            } => write!(
                f,
                "make a sparse {size} SAN {}; {} ({}) boots {}, installs unattended and powers off; vlx-install verify accepts the SAN",
                san.display(),
                installer.name,
                installer.mac,
                installer.boot
            ),
            Step::InstallThroughIscsi {
                san,
                size,
                installer,
            } => write!(
                f,
                "make a sparse {size} SAN {} served by tgt on the storage network; {} ({}) boots an installer environment, runs vlx-install apply through iSCSI and powers off; vlx-install verify accepts the SAN",
                san.display(),
                installer.name,
                installer.mac,
            ),
            Step::PowerOn { blades, from } => {
                write!(f, "power on {} (boot from {from})", blades.join(", "))
            }
            Step::AwaitReady { blades } => write!(
                f,
                "wait for `vlx-node: ready` and `vlx: services ready` from {}",
                blades.join(", ")
            ),
            Step::AwaitRefusal { blades } => write!(
                f,
                "wait for {} to say on its console why it gets no root",
                blades.join(", ")
            ),
            Step::WrongChap { machine } => write!(
                f,
                "power on {} ({}) with a wrong CHAP secret in its boot ROM's settings: the target \
                 refuses it, it says so on its console and gets no root",
                machine.name, machine.mac
            ),
            Step::Checks => f.write_str(
                "check hostnames, addresses, DHCP and DNS from several blades, the VIP, chrony peers, private roots",
            ),
            Step::TargetRestart => f.write_str(
                "kill tgtd and start it again while the blades run, then cut the storage path for 10 s: every blade logs in again, keeps its root and answers",
            ),
            Step::LoseBlades { late, from } => write!(
                f,
                "kill the VIP holder and the first DHCP server; the VIP moves within {} s; {late} boots from {from}",
                VIP_MOVE_LIMIT.as_secs()
            ),
            Step::FactoryReset => f.write_str(
                "stop a blade, vlx-install reset-node it, boot it and another again: its file is gone, the other's is not",
            ),
            Step::AddBlade {
                blade,
                profile,
                grow_to,
                ..
            } => write!(
                f,
                "grow the SAN to {grow_to}; vlx-install apply {} (adds {blade}) while the blades run; \
                 the running blades resolve {blade}; it PXE-boots to ready",
                profile.display()
            ),
            Step::ReplaceBoard {
                node, mac, profile, ..
            } => write!(
                f,
                "{node} writes a file and is powered off; vlx-install apply {} ({node} at {mac}); \
                 a new board with {mac} boots as {node}, the file still there",
                profile.display()
            ),
            Step::RemoveBlade { node, profile, .. } => write!(
                f,
                "power {node} off; vlx-install apply {} (without {node}); the running blades no \
                 longer resolve it, vlx-install status no longer lists it",
                profile.display()
            ),
            Step::Upgrade { image } => write!(
                f,
                "vlx-install upgrade --image {}; two blades reboot onto the new slot, one stays on \
                 the old (status shows each node's slot); vlx-install rollback; a reboot brings a \
                 blade back to the first slot",
                image.display()
            ),
            Step::SharedFailover => f.write_str(
                "a running blade that does not take the shared volume's VIP mounts the volume \
                 over NFS (hard) and writes in a loop; the VIP holder hangs and its watchdog \
                 resets it; the client's writes go on and its file reads back",
            ),
            Step::Shutdown => {
                f.write_str("power every blade off; the origin's sha256 is unchanged")
            }
            Step::Report { dir } => write!(f, "write the report to {}", dir.display()),
        }
    }
}

/// The whole rehearsal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rehearsal {
    pub cluster: String,
    pub profile: PathBuf,
    pub scheme: Scheme,
    pub firmware: Firmware,
    pub accel: Accel,
    pub run_dir: PathBuf,
    pub report_dir: PathBuf,
    pub image: ImageSource,
    pub san: PathBuf,
    pub san_size: Bytes,
    /// The `vde_switch` socket directory: the private segment.
    pub switch: PathBuf,
    /// The storage network and target when the SAN is reached over iSCSI
    /// (the blades then have no SAN disk).
    pub iscsi: Option<crate::iscsi::IscsiRig>,
    /// iSCSI: the second path to the target (a second storage network and
    /// portal; each blade's second storage NIC), when the plan leaves room
    /// for its network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iscsi_second: Option<crate::iscsi::SecondPath>,
    /// iSCSI: the first blade booted as an installer environment (the
    /// rig's guest, `iscsi_install`): step 1 without media, and step 7's
    /// `reset-node` through iSCSI.
    pub iscsi_installer: Option<Box<Machine>>,
    pub blades: Vec<Blade>,
    pub steps: Vec<Step>,
    /// [`Options::fill_store`].
    pub fill_store: bool,
    pub timeouts: Timeouts,
}

impl Rehearsal {
    pub fn blade(&self, name: &str) -> Option<&Blade> {
        self.blades.iter().find(|b| b.name == name)
    }

    /// The blades that are cluster nodes, in profile order.
    pub fn nodes(&self) -> impl Iterator<Item = &Blade> {
        self.blades.iter().filter(|b| b.is_node())
    }
}

/// Why a rehearsal cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("--nodes {asked}: the profile has {have} node(s); ask for 1 to {have}")]
    Nodes { asked: usize, have: usize },
    #[error(
        "step 6 needs at least 4 blades (3 that cold-start, of which 2 are lost and 1 survives, and 1 that PXE-boots later), not {0}; pass --stop-after 5 or more nodes"
    )]
    TooFewForLosses(usize),
    #[error("the PXE-only rehearsal needs at least 2 blades (1 to serve, 1 to PXE-boot), not {0}")]
    TooFewForPxe(usize),
    #[error("the PXE-only rehearsal stops after step 5 (it holds no blade back for step 6)")]
    PxeOnlyStops,
    #[error("--stop-after {0}: steps are numbered 1 to {LAST_STEP}")]
    StopAfter(u8),
    #[error(
        "the profile's [boot] firmware is {profile}, so its boot assets do not boot {asked} blades"
    )]
    Firmware { profile: String, asked: Firmware },
    #[error("UEFI blades need OVMF (Debian package ovmf), which is not installed")]
    NoOvmf,
    #[error("stranger MAC {0} belongs to node {1} in the cluster table")]
    StrangerKnown(MacAddr, String),
    #[error("node {0} has no MAC address in the cluster table")]
    NoMac(String),
    #[error(transparent)]
    Iscsi(#[from] crate::iscsi::IscsiPlanError),
    #[error("--day2: {0}")]
    Day2(#[from] day2::Day2Error),
    #[error(
        "the iSCSI rehearsal cold-starts every blade from the target, as their boot ROMs do \
         (the PXE-only scheme is for a shared disk)"
    )]
    IscsiScheme,
    #[error(
        "the iSCSI rehearsal boots blades from iPXE under BIOS (ipxe.lkrn); the profile's or \
         --firmware's {0} does not"
    )]
    IscsiFirmware(Firmware),
    #[error("strangers have no place on the storage network of the iSCSI rehearsal")]
    IscsiStrangers,
}

/// Plans a rehearsal of `cluster` (the installer's plan of the profile).
pub fn plan(cluster: &Plan, opts: &Options, host: &Host) -> Result<Rehearsal, PlanError> {
    let iscsi = crate::iscsi::plan(cluster, &host.run_dir)?;
    let iscsi_second = iscsi
        .as_ref()
        .and_then(|r| crate::iscsi::second_path(cluster, r));
    let have = cluster.nodes.len();
    let count = opts.nodes.unwrap_or(have);
    if count == 0 || count > have {
        return Err(PlanError::Nodes { asked: count, have });
    }
    let max_step = match opts.scheme {
        Scheme::Cold => LAST_STEP,
        Scheme::PxeOnly => 5,
    };
    let stop = opts.stop_after.unwrap_or(max_step);
    if !(1..=LAST_STEP).contains(&stop) {
        return Err(PlanError::StopAfter(stop));
    }
    match opts.scheme {
        Scheme::Cold if stop >= 6 && count < 4 => return Err(PlanError::TooFewForLosses(count)),
        Scheme::PxeOnly if stop > 5 => return Err(PlanError::PxeOnlyStops),
        Scheme::PxeOnly if count < 2 => return Err(PlanError::TooFewForPxe(count)),
        _ => {}
    }
    let profile_fw = cluster.boot.firmware;
    let firmware = match opts.firmware {
        None if profile_fw.bios() => Firmware::Bios,
        None => Firmware::Uefi,
        Some(Firmware::Bios) if !profile_fw.bios() => {
            return Err(PlanError::Firmware {
                profile: "uefi".into(),
                asked: Firmware::Bios,
            });
        }
        Some(Firmware::Uefi) if !profile_fw.uefi() => {
            return Err(PlanError::Firmware {
                profile: "bios".into(),
                asked: Firmware::Uefi,
            });
        }
        Some(f) => f,
    };
    let ovmf = match firmware {
        Firmware::Uefi => Some(host.ovmf.as_ref().ok_or(PlanError::NoOvmf)?),
        Firmware::Bios => None,
    };
    if iscsi.is_some() {
        if opts.scheme != Scheme::Cold {
            return Err(PlanError::IscsiScheme);
        }
        if firmware != Firmware::Bios {
            return Err(PlanError::IscsiFirmware(firmware));
        }
        if !opts.strangers.is_empty() {
            return Err(PlanError::IscsiStrangers);
        }
    }

    let run = &host.run_dir;
    let san = run.join("san.img");
    let switch = run.join("switch");
    let machine = |name: &str, mac: MacAddr, boot: BootFrom| {
        let dir = run.join(name);
        Machine {
            name: name.to_string(),
            accel: host.accel,
            firmware,
            uefi: ovmf.map(|o| UefiFiles {
                code: o.code.clone(),
                vars: dir.join("vars.fd"),
            }),
            memory_mib: opts.memory_mib,
            cpus: 1,
            mac,
            switch: switch.clone(),
            disks: vec![Disk {
                path: san.clone(),
                shared: true,
            }],
            storage: None,
            storage2: None,
            boot,
            sockets: Sockets::in_dir(&dir),
        }
    };

    let late = (opts.scheme == Scheme::Cold && stop >= 6).then_some(count - 1);
    let mut blades = Vec::new();
    for (i, n) in cluster.nodes.iter().take(count).enumerate() {
        let mac = *n
            .macs
            .first()
            .ok_or_else(|| PlanError::NoMac(n.name.to_string()))?;
        let part = match (opts.scheme, i) {
            (Scheme::PxeOnly, 0) => Part::ColdStart,
            (Scheme::PxeOnly, _) => Part::Chained,
            (Scheme::Cold, i) if Some(i) == late => Part::Late,
            (Scheme::Cold, _) => Part::ColdStart,
        };
        let boot = match part {
            Part::ColdStart | Part::Stranger => BootFrom::Disk,
            Part::Chained | Part::Late | Part::Added => BootFrom::Network,
        };
        let mut m = machine(n.name.as_str(), mac, boot);
        if let Some(rig) = &iscsi {
            let addr = crate::iscsi::storage_address(cluster, rig, n)?;
            let smac = crate::iscsi::storage_mac(mac);
            m.disks.clear();
            m.storage = Some(crate::qemu::StorageNic {
                switch: rig.switch.clone(),
                mac: smac,
            });
            m.storage2 = iscsi_second.as_ref().map(|p| crate::qemu::StorageNic {
                switch: p.switch.clone(),
                mac: crate::iscsi::second_storage_mac(mac),
            });
            m.boot = BootFrom::Sanboot {
                rom: rig.rom.clone(),
                script: crate::iscsi::sanboot_script(
                    rig,
                    addr,
                    &crate::iscsi::initiator_name(cluster, smac),
                    iscsi_second.as_ref().map(|p| (p, p.address(addr))),
                ),
            };
        }
        blades.push(Blade {
            name: n.name.to_string(),
            mac,
            ip: Some(n.ip),
            fqdn: Some(n.fqdn.clone()),
            part,
            machine: m,
        });
    }
    for (i, mac) in opts.strangers.iter().enumerate() {
        if let Some(owner) = cluster.node_by_mac(std::slice::from_ref(mac)) {
            return Err(PlanError::StrangerKnown(*mac, owner.name.to_string()));
        }
        let name = format!("stranger{}", i + 1);
        blades.push(Blade {
            machine: machine(&name, *mac, BootFrom::Disk),
            name,
            mac: *mac,
            ip: None,
            fqdn: None,
            part: Part::Stranger,
        });
    }

    let day2 = if opts.day2 {
        if opts.scheme != Scheme::Cold
            || iscsi.is_some()
            || stop != LAST_STEP
            || opts.from_media.is_some()
        {
            return Err(day2::Day2Error::Steps.into());
        }
        if count != have {
            return Err(day2::Day2Error::TooFew(count).into());
        }
        let d = day2::plan(cluster)?;
        let mac = *d
            .added
            .macs
            .first()
            .ok_or_else(|| PlanError::NoMac(d.added.name.clone()))?;
        blades.push(Blade {
            machine: machine(&d.added.name, mac, BootFrom::Network),
            name: d.added.name.clone(),
            mac,
            ip: Some(d.added.ip),
            fqdn: Some(d.added_fqdn.clone()),
            part: Part::Added,
        });
        Some(d)
    } else {
        None
    };

    let names = |part: Part| -> Vec<String> {
        blades
            .iter()
            .filter(|b| b.part == part)
            .map(|b| b.name.clone())
            .collect()
    };
    let image = match &opts.image {
        Some(dir) => ImageSource::Given { dir: dir.clone() },
        None => ImageSource::Build {
            host_profile: host.host_profile.clone(),
            out: run.join("image"),
        },
    };
    let mut steps = vec![Step::Image {
        source: image.clone(),
    }];
    let iscsi_installer = match &iscsi {
        Some(_) => {
            let first = blades.first().ok_or(PlanError::Nodes { asked: 0, have })?;
            let name = format!("{}-installer", first.name);
            let guest = run.join(&name).join("guest");
            Some(Box::new(Machine {
                name,
                memory_mib: opts.memory_mib.max(INSTALLER_MEMORY_MIB),
                disks: vec![Disk {
                    path: guest.join("data.ext4"),
                    shared: false,
                }],
                boot: BootFrom::Kernel {
                    kernel: guest.join("vmlinuz"),
                    initrd: guest.join("initramfs.img"),
                    append: "console=ttyS0,115200 panic=10".into(),
                },
                sockets: Sockets::in_dir(&run.join(format!("{}-installer", first.name))),
                ..first.machine.clone()
            }))
        }
        None => None,
    };
    match opts.from_media {
        None if iscsi.is_some() => {
            let installer = iscsi_installer
                .clone()
                .ok_or(PlanError::Nodes { asked: 0, have })?;
            steps.push(Step::InstallThroughIscsi {
                san: san.clone(),
                size: cluster.disk.size,
                installer,
            });
        }
        None => steps.push(Step::Install {
            san: san.clone(),
            size: cluster.disk.size,
        }),
        Some(kind) => {
            let out = run.join("media");
            let first = blades.first().ok_or(PlanError::Nodes { asked: 0, have })?;
            let name = format!("{}-installer", first.name);
            let dir = run.join(&name);
            let (firmware, media) = match kind {
                MediaKind::Usb => (
                    Firmware::Uefi,
                    Media::Usb(out.join(format!("{MEDIA_NAME}.img"))),
                ),
                MediaKind::Iso => (
                    Firmware::Bios,
                    Media::Cd(out.join(format!("{MEDIA_NAME}.iso"))),
                ),
            };
            let uefi = match firmware {
                Firmware::Uefi => {
                    let o = host.ovmf.as_ref().ok_or(PlanError::NoOvmf)?;
                    Some(UefiFiles {
                        code: o.code.clone(),
                        vars: dir.join("vars.fd"),
                    })
                }
                Firmware::Bios => None,
            };
            let installer = Machine {
                name,
                firmware,
                uefi,
                memory_mib: opts.memory_mib.max(INSTALLER_MEMORY_MIB),
                boot: BootFrom::Media(media),
                sockets: Sockets::in_dir(&dir),
                ..first.machine.clone()
            };
            let media_iscsi = match &iscsi {
                Some(rig) => {
                    let node = cluster
                        .nodes
                        .iter()
                        .find(|n| n.name.as_str() == first.name)
                        .ok_or(PlanError::Nodes { asked: 0, have })?;
                    let netmask = Ipv4Addr::from(
                        u32::MAX
                            .checked_shl(32 - u32::from(rig.prefix))
                            .unwrap_or(0),
                    );
                    Some(MediaIscsi {
                        url: crate::iscsi_install::url(rig),
                        mac: crate::iscsi::storage_mac(first.mac).to_string(),
                        addr: crate::iscsi::storage_address(cluster, rig, node)?,
                        netmask,
                    })
                }
                None => None,
            };
            steps.push(Step::Media {
                profile: run.join("media.toml"),
                out,
                iscsi: media_iscsi,
            });
            steps.push(Step::InstallFromMedia {
                san: san.clone(),
                size: cluster.disk.size,
                installer: Box::new(installer),
            });
        }
    }
    if stop >= 3 {
        let mut first = names(Part::ColdStart);
        first.extend(names(Part::Stranger));
        steps.push(Step::PowerOn {
            blades: first,
            from: if iscsi.is_some() {
                "the iSCSI target by each blade's boot ROM (iPXE sanboot, an iBFT), no DHCP anywhere"
                    .into()
            } else {
                "the SAN's ESP, no network service anywhere".into()
            },
        });
    }
    if stop >= 4 {
        steps.push(Step::AwaitReady {
            blades: names(Part::ColdStart),
        });
        let strangers = names(Part::Stranger);
        if !strangers.is_empty() {
            steps.push(Step::AwaitRefusal { blades: strangers });
        }
        // Only a blade held back can take the wrong secret: a running
        // blade's twin would share its MACs and initiator name.
        if let (Some(rig), Some(late)) = (&iscsi, late)
            && let Some(chap) = &rig.chap
        {
            let b = &blades[late];
            let name = format!("{}-wrong-chap", b.name);
            let node = cluster
                .nodes
                .iter()
                .find(|n| n.name.as_str() == b.name)
                .ok_or_else(|| PlanError::NoMac(b.name.clone()))?;
            let addr = crate::iscsi::storage_address(cluster, rig, node)?;
            let wrong = crate::iscsi::IscsiRig {
                chap: Some(chap.wrong()),
                ..rig.clone()
            };
            let smac = crate::iscsi::storage_mac(b.mac);
            steps.push(Step::WrongChap {
                machine: Box::new(Machine {
                    boot: BootFrom::Sanboot {
                        rom: rig.rom.clone(),
                        script: crate::iscsi::sanboot_script(
                            &wrong,
                            addr,
                            &crate::iscsi::initiator_name(cluster, smac),
                            iscsi_second.as_ref().map(|p| (p, p.address(addr))),
                        ),
                    },
                    sockets: Sockets::in_dir(&run.join(&name)),
                    name,
                    ..b.machine.clone()
                }),
            });
        }
        let chained = names(Part::Chained);
        if !chained.is_empty() {
            steps.push(Step::PowerOn {
                blades: chained.clone(),
                from: "the network, served by the blades already up".into(),
            });
            steps.push(Step::AwaitReady { blades: chained });
        }
    }
    if stop >= 5 {
        steps.push(Step::Checks);
        if iscsi.is_some() {
            steps.push(Step::TargetRestart);
        }
    }
    if let (true, Some(late)) = (stop >= 6, late) {
        steps.push(Step::LoseBlades {
            late: blades[late].name.clone(),
            from: if iscsi.is_some() {
                "the iSCSI target by its boot ROM (iPXE sanboot), as every blade of an iSCSI SAN \
                 boots, while the lost blades stay dead"
                    .into()
            } else {
                "the network, served by the survivors".into()
            },
        });
    }
    if stop >= 7 {
        steps.push(Step::FactoryReset);
    }
    if let Some(d) = day2 {
        steps.push(Step::AddBlade {
            blade: d.added.name.clone(),
            profile: day2::profile_path(run, 9),
            nodes: d.with_added,
            grow_to: d.grow_to,
        });
        steps.push(Step::ReplaceBoard {
            node: d.swapped,
            mac: d.new_mac,
            profile: day2::profile_path(run, 10),
            nodes: d.with_new_board,
        });
        steps.push(Step::RemoveBlade {
            node: d.removed,
            profile: day2::profile_path(run, 11),
            nodes: d.without_removed,
        });
        steps.push(Step::Upgrade {
            image: run.join("image-upgraded"),
        });
        steps.push(Step::SharedFailover);
    }
    if stop >= 3 {
        steps.push(Step::Shutdown);
    }
    steps.push(Step::Report {
        dir: host.report_dir.clone(),
    });

    Ok(Rehearsal {
        cluster: cluster.cluster.name.clone(),
        profile: host.profile.clone(),
        scheme: opts.scheme,
        firmware,
        accel: host.accel,
        run_dir: run.clone(),
        report_dir: host.report_dir.clone(),
        image,
        san,
        san_size: cluster.disk.size,
        switch,
        iscsi,
        iscsi_second,
        iscsi_installer,
        blades,
        steps,
        fill_store: opts.fill_store,
        timeouts: opts.timeouts,
    })
}

impl fmt::Display for Rehearsal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "rehearsal of cluster {} ({}), {} blade(s), {} firmware, {} acceleration",
            self.cluster,
            self.profile.display(),
            self.blades.len(),
            self.firmware,
            self.accel
        )?;
        writeln!(
            f,
            "SAN {} ({}), private segment {}",
            self.san.display(),
            self.san_size,
            self.switch.display()
        )?;
        if let Some(i) = &self.iscsi {
            writeln!(
                f,
                "iSCSI target {} LUN {} at {}:{} (tgt) on the storage network {}",
                i.target,
                i.lun,
                i.portal,
                i.port,
                i.switch.display()
            )?;
        }
        writeln!(f, "\nBlades:")?;
        let mut rows = vec![["BLADE", "MAC", "IP", "PART", "FIRST BOOT"].map(String::from)];
        for b in &self.blades {
            rows.push([
                b.name.clone(),
                b.mac.to_string(),
                b.ip.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
                b.part.to_string(),
                b.machine.boot.to_string(),
            ]);
        }
        let widths: Vec<usize> = (0..5)
            .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
            .collect();
        for r in &rows {
            let line: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            writeln!(f, "  {}", line.join("  ").trim_end())?;
        }
        writeln!(f, "\nSteps:")?;
        for s in &self.steps {
            writeln!(f, "  {}. {s}", s.number())?;
        }
        writeln!(f, "\nQEMU:")?;
        for b in &self.blades {
            writeln!(f, "  {}: {}", b.name, b.machine.command_line())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> Plan {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../profiles/clusters/demo.toml"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let source = cluster::Source::new("demo.toml", text);
        cluster::load(&source, &cluster::Trusting, cluster::SanFacts::default())
            .unwrap()
            .1
    }

    fn host() -> Host {
        Host {
            profile: "profiles/clusters/demo.toml".into(),
            host_profile: "profiles/hosts/tiny.toml".into(),
            run_dir: "/tmp/r".into(),
            report_dir: "target/rehearsal".into(),
            accel: Accel::Tcg,
            ovmf: Some(Ovmf {
                code: "/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
                vars_template: "/usr/share/OVMF/OVMF_VARS_4M.fd".into(),
            }),
        }
    }

    fn eurotech() -> Plan {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../profiles/clusters/eurotech-4u.toml"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let source = cluster::Source::new("eurotech-4u.toml", text);
        cluster::load(&source, &cluster::Trusting, cluster::SanFacts::default())
            .unwrap()
            .1
    }

    #[test]
    fn an_iscsi_cluster_cold_starts_from_the_target_on_a_storage_network() {
        let r = plan(&eurotech(), &Options::default(), &host()).unwrap();
        let rig = r.iscsi.clone().unwrap();
        assert_eq!(
            (
                rig.portal,
                rig.port,
                rig.prefix,
                rig.lun,
                rig.target.as_str()
            ),
            (
                Ipv4Addr::new(10, 10, 0, 250),
                3260,
                24,
                1,
                "iqn.2007-01.it.unipi.di:virtualinux.san0"
            )
        );
        assert_eq!(rig.switch, Path::new("/tmp/r/storage"));
        // Every step of the disk rehearsal; the target restarts in 5.
        let numbers: Vec<u8> = r.steps.iter().map(Step::number).collect();
        assert_eq!(numbers, [1, 1, 3, 4, 4, 5, 5, 6, 7, 8, 8]);
        assert!(r.steps.contains(&Step::TargetRestart));
        // The late blade boots from the target as the others do.
        assert_eq!(r.blades[3].part, Part::Late);
        assert!(matches!(r.blades[3].machine.boot, BootFrom::Sanboot { .. }));
        assert!(r.steps.iter().any(
            |s| matches!(s, Step::LoseBlades { late, from } if late == "node4" && from.starts_with("the iSCSI target"))
        ));
        let b = &r.blades[2].machine;
        assert!(
            b.disks.is_empty(),
            "a blade of an iSCSI SAN has no SAN disk"
        );
        assert_eq!(
            b.storage.as_ref().map(|s| s.mac.to_string()),
            Some("52:54:5a:7a:10:03".into())
        );
        let BootFrom::Sanboot { rom, script } = &b.boot else {
            panic!("node3 boots {}", b.boot);
        };
        assert_eq!(rom, Path::new(crate::iscsi::IPXE_LKRN));
        // Two paths: a second storage network, the storage network's next
        // /24 (no network of the plan), and a second NIC on it.
        let second = r.iscsi_second.as_ref().expect("a second path");
        assert_eq!(
            (second.portal, second.switch.as_path()),
            (Ipv4Addr::new(10, 10, 1, 250), Path::new("/tmp/r/storage2"))
        );
        assert_eq!(
            b.storage2.as_ref().map(|s| s.mac.to_string()),
            Some("52:54:5b:7a:10:03".into())
        );
        assert_eq!(
            script,
            "set net1/ip 10.10.0.3 && set net1/netmask 255.255.255.0 && set net2/ip 10.10.1.3 \
             && set net2/netmask 255.255.255.0 && set initiator-iqn \
             iqn.2007-01.org.vlx:3d0f5e8a7c214b6e9f430a5d2c8e1b77.52545a7a1003 && set username \
             vlx-blade && set password Rig-Blade-0413 && set reverse-username vlx-san && set \
             reverse-password Rig-Target-0731 && ifopen net1 && ifopen net2 \
             && sanboot iscsi:10.10.0.250::3260:1:iqn.2007-01.it.unipi.di:virtualinux.san0 \
             iscsi:10.10.1.250::3260:1:iqn.2007-01.it.unipi.di:virtualinux.san0"
        );
        // The late blade, held back, is tried first with a wrong secret.
        let wrong = r
            .steps
            .iter()
            .find_map(|s| match s {
                Step::WrongChap { machine } => Some(machine),
                _ => None,
            })
            .expect("a step with a wrong CHAP secret");
        assert_eq!(wrong.name, "node4-wrong-chap");
        assert_eq!(wrong.mac, r.blades[3].mac);
        let BootFrom::Sanboot { script: w, .. } = &wrong.boot else {
            panic!("the wrong-secret blade boots {}", wrong.boot);
        };
        assert!(w.contains("set password Wrong-Secret-99 && "));
        assert!(!w.contains("Rig-Blade-0413"));
        let argv = b.argv();
        assert!(
            argv.windows(2)
                .any(|w| w[0] == "-append" && w[1] == *script)
        );
        assert!(argv.iter().any(|a| a == "vde,id=net1,sock=/tmp/r/storage"));
        // What the iSCSI rehearsal does not do.
        for (o, want) in [
            (
                Options {
                    firmware: Some(Firmware::Uefi),
                    ..Options::default()
                },
                PlanError::Firmware {
                    profile: "bios".into(),
                    asked: Firmware::Uefi,
                },
            ),
            (
                Options {
                    scheme: Scheme::PxeOnly,
                    ..Options::default()
                },
                PlanError::IscsiScheme,
            ),
        ] {
            assert_eq!(plan(&eurotech(), &o, &host()), Err(want));
        }
    }

    #[test]
    fn an_iscsi_cluster_installs_from_media_through_the_storage_nic() {
        let o = Options {
            from_media: Some(MediaKind::Iso),
            ..Options::default()
        };
        let r = plan(&eurotech(), &o, &host()).unwrap();
        let Some(Step::Media {
            iscsi: Some(m),
            profile,
            ..
        }) = r.steps.iter().find(|s| matches!(s, Step::Media { .. }))
        else {
            panic!("no media step onto the target: {:?}", r.steps)
        };
        assert_eq!(
            m.url,
            "iscsi://10.10.0.250:3260/iqn.2007-01.it.unipi.di:virtualinux.san0/1"
        );
        assert_eq!(
            (m.mac.as_str(), m.addr, m.netmask),
            (
                "52:54:5a:7a:10:01",
                Ipv4Addr::new(10, 10, 0, 1),
                Ipv4Addr::new(255, 255, 255, 0)
            )
        );
        assert_eq!(profile, Path::new("/tmp/r/media.toml"));
        let Some(Step::InstallFromMedia { installer, .. }) = r
            .steps
            .iter()
            .find(|s| matches!(s, Step::InstallFromMedia { .. }))
        else {
            panic!("no install from the media: {:?}", r.steps)
        };
        assert!(installer.disks.is_empty(), "{:?}", installer.disks);
        assert_eq!(
            installer.storage.as_ref().map(|s| s.mac.to_string()),
            Some(m.mac.clone())
        );
        assert_eq!(installer.firmware, Firmware::Bios);
        // Step 7 resets a node through the rig's installer guest.
        assert!(r.iscsi_installer.is_some());
        assert!(
            !r.steps
                .iter()
                .any(|s| matches!(s, Step::InstallThroughIscsi { .. }))
        );

        // The media profile is one the image builder takes as it is.
        let d = tempfile::tempdir().unwrap();
        let cluster =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/clusters/eurotech-4u.toml");
        let chap = d.path().join("chap");
        std::fs::write(&chap, "username=a\npassword=b\n").unwrap();
        let path = d.path().join("media.toml");
        std::fs::write(&path, media_profile(&cluster, Some(m), Some(&chap))).unwrap();
        let u = imagebuilder::media::profile::MediaProfile::load(&path)
            .unwrap()
            .unattended
            .unwrap();
        assert_eq!(u.target.to_string(), m.url);
        assert_eq!(u.chap.as_deref(), Some(chap.as_path()));
        let words = contracts::cmdline::media::write(&contracts::cmdline::media::MediaArgs {
            media: "0".repeat(64),
            target: Some(u.target),
            storage: u.storage,
            ..Default::default()
        });
        assert_eq!(
            words[2..],
            [
                "vlx.sif=52:54:5a:7a:10:01",
                "vlx.sifip=10.10.0.1",
                "vlx.sifnm=255.255.255.0"
            ]
        );
    }

    fn parts(r: &Rehearsal) -> Vec<(String, Part, String)> {
        r.blades
            .iter()
            .map(|b| (b.name.clone(), b.part, b.machine.boot.to_string()))
            .collect()
    }

    #[test]
    fn the_default_rehearsal_holds_the_last_blade_back_for_pxe() {
        let r = plan(&demo(), &Options::default(), &host()).unwrap();
        assert_eq!(
            parts(&r),
            [
                ("blade01".into(), Part::ColdStart, "disk".into()),
                ("blade02".into(), Part::ColdStart, "disk".into()),
                ("blade03".into(), Part::ColdStart, "disk".into()),
                ("blade04".into(), Part::Late, "network".into()),
            ]
        );
        let numbers: Vec<u8> = r.steps.iter().map(Step::number).collect();
        assert_eq!(numbers, [1, 1, 3, 4, 5, 6, 7, 8, 8]);
        assert_eq!(r.firmware, Firmware::Bios);
        assert_eq!(r.blades[1].machine.mac.to_string(), "52:54:00:77:00:02");
        assert_eq!(r.blades[3].ip, Some(Ipv4Addr::new(10, 77, 0, 14)));
        assert_eq!(r.san, Path::new("/tmp/r/san.img"));
        assert_eq!(
            r.blades[0].machine.sockets.console,
            Path::new("/tmp/r/blade01/ttyS0")
        );
    }

    #[test]
    fn stopping_after_checks_cold_starts_every_blade() {
        let opts = Options {
            stop_after: Some(5),
            nodes: Some(2),
            ..Options::default()
        };
        let r = plan(&demo(), &opts, &host()).unwrap();
        assert!(r.blades.iter().all(|b| b.part == Part::ColdStart));
        assert_eq!(r.blades.len(), 2);
        assert!(r.steps.contains(&Step::Checks));
        assert!(!r.steps.iter().any(|s| s.number() == 6 || s.number() == 7));
        assert!(r.steps.contains(&Step::Shutdown));
    }

    #[test]
    fn pxe_only_boots_the_first_from_the_san_and_chains_the_rest() {
        let opts = Options {
            scheme: Scheme::PxeOnly,
            ..Options::default()
        };
        let r = plan(&demo(), &opts, &host()).unwrap();
        assert_eq!(r.blades[0].part, Part::ColdStart);
        assert!(
            r.blades[1..]
                .iter()
                .all(|b| b.part == Part::Chained && b.machine.boot == BootFrom::Network)
        );
        let power: Vec<&Step> = r
            .steps
            .iter()
            .filter(|s| matches!(s, Step::PowerOn { .. }))
            .collect();
        assert_eq!(power.len(), 2);
        let opts = Options {
            stop_after: Some(6),
            ..opts
        };
        assert_eq!(plan(&demo(), &opts, &host()), Err(PlanError::PxeOnlyStops));
    }

    #[test]
    fn refusals_say_why() {
        let cases = [
            (
                Options {
                    nodes: Some(5),
                    ..Options::default()
                },
                PlanError::Nodes { asked: 5, have: 4 },
            ),
            (
                Options {
                    nodes: Some(3),
                    ..Options::default()
                },
                PlanError::TooFewForLosses(3),
            ),
            (
                Options {
                    stop_after: Some(9),
                    ..Options::default()
                },
                PlanError::StopAfter(9),
            ),
            (
                Options {
                    strangers: vec!["52:54:00:77:00:03".parse().unwrap()],
                    ..Options::default()
                },
                PlanError::StrangerKnown("52:54:00:77:00:03".parse().unwrap(), "blade03".into()),
            ),
        ];
        for (opts, want) in cases {
            assert_eq!(plan(&demo(), &opts, &host()), Err(want));
        }
        let no_ovmf = Host {
            ovmf: None,
            ..host()
        };
        let uefi = Options {
            firmware: Some(Firmware::Uefi),
            ..Options::default()
        };
        assert_eq!(plan(&demo(), &uefi, &no_ovmf), Err(PlanError::NoOvmf));
    }

    #[test]
    fn strangers_boot_from_the_san_with_the_cold_start() {
        let opts = Options {
            nodes: Some(1),
            stop_after: Some(5),
            strangers: vec!["52:54:00:ff:00:01".parse().unwrap()],
            ..Options::default()
        };
        let r = plan(&demo(), &opts, &host()).unwrap();
        let s = r.blade("stranger1").unwrap();
        assert_eq!(s.part, Part::Stranger);
        assert_eq!(s.machine.boot, BootFrom::Disk);
        assert!(r.steps.contains(&Step::PowerOn {
            blades: vec!["blade01".into(), "stranger1".into()],
            from: "the SAN's ESP, no network service anywhere".into(),
        }));
        assert!(r.steps.contains(&Step::AwaitRefusal {
            blades: vec!["stranger1".into()]
        }));
    }

    #[test]
    fn uefi_blades_get_their_own_variable_store() {
        let opts = Options {
            firmware: Some(Firmware::Uefi),
            ..Options::default()
        };
        let r = plan(&demo(), &opts, &host()).unwrap();
        let vars: Vec<PathBuf> = r
            .blades
            .iter()
            .map(|b| b.machine.uefi.as_ref().unwrap().vars.clone())
            .collect();
        assert_eq!(vars[0], Path::new("/tmp/r/blade01/vars.fd"));
        assert_eq!(vars[3], Path::new("/tmp/r/blade04/vars.fd"));
    }

    #[test]
    fn from_media_the_first_blade_installs_then_the_cluster_boots() {
        let opts = Options {
            nodes: Some(3),
            stop_after: Some(5),
            from_media: Some(MediaKind::Usb),
            ..Options::default()
        };
        let r = plan(&demo(), &opts, &host()).unwrap();
        let installer = match &r.steps[..3] {
            [
                Step::Image { .. },
                Step::Media {
                    profile,
                    out,
                    iscsi: None,
                },
                Step::InstallFromMedia { installer, san, .. },
            ] => {
                assert_eq!(profile, Path::new("/tmp/r/media.toml"));
                assert_eq!(out, Path::new("/tmp/r/media"));
                assert_eq!(san, &r.san);
                installer.clone()
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(installer.name, "blade01-installer");
        assert_eq!(installer.mac, r.blades[0].mac);
        assert_eq!(installer.firmware, Firmware::Uefi);
        assert_eq!(
            installer.boot,
            BootFrom::Media(Media::Usb("/tmp/r/media/vlx-rig.img".into()))
        );
        assert!(installer.memory_mib >= INSTALLER_MEMORY_MIB);
        assert!(!r.steps.iter().any(|s| matches!(s, Step::Install { .. })));
        // The cluster then boots as without media: three blades from the
        // SAN, with the firmware the profile chooses.
        assert!(matches!(&r.steps[3], Step::PowerOn { blades, .. } if blades.len() == 3));
        assert_eq!(r.blades[0].machine.boot, BootFrom::Disk);

        let iso = plan(
            &demo(),
            &Options {
                from_media: Some(MediaKind::Iso),
                ..opts
            },
            &host(),
        )
        .unwrap();
        let Step::InstallFromMedia { installer, .. } = &iso.steps[2] else {
            panic!("{:?}", iso.steps[2]);
        };
        assert_eq!(installer.firmware, Firmware::Bios);
        assert!(installer.uefi.is_none());
        assert_eq!(
            installer.boot,
            BootFrom::Media(Media::Cd("/tmp/r/media/vlx-rig.iso".into()))
        );

        // The media profile is one the image builder takes as it is.
        let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/clusters/demo.toml");
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("media.toml");
        std::fs::write(&path, media_profile(&demo, None, None)).unwrap();
        let m = imagebuilder::media::profile::MediaProfile::load(&path).unwrap();
        assert_eq!(m.name, MEDIA_NAME);
        let u = m.unattended.unwrap();
        assert_eq!(
            (u.profile.as_str(), u.target.to_string().as_str()),
            ("demo", "serial:vlx-san")
        );
        assert_eq!(m.console, ["ttyS0,115200"]);
    }

    #[test]
    fn the_plan_prints_blades_steps_and_command_lines() {
        let r = plan(&demo(), &Options::default(), &host()).unwrap();
        let text = r.to_string();
        assert!(text.contains("blade04  52:54:00:77:00:04  10.77.0.14  late        network"));
        assert!(text.contains("  6. kill the VIP holder"));
        assert!(text.contains("blade01: qemu-system-x86_64 -name blade01"));
        // The same inputs print the same plan.
        assert_eq!(
            text,
            plan(&demo(), &Options::default(), &host())
                .unwrap()
                .to_string()
        );
    }

    #[test]
    fn day_two_changes_the_running_cluster_after_step_7_and_before_the_shutdown() {
        let opts = Options {
            day2: true,
            ..Options::default()
        };
        let r = plan(&demo(), &opts, &host()).unwrap();
        let numbers: Vec<u8> = r.steps.iter().map(Step::number).collect();
        assert_eq!(numbers, [1, 1, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 8, 8]);
        let added = r.blade("blade05").unwrap();
        assert_eq!(added.part, Part::Added);
        assert_eq!(added.machine.boot, BootFrom::Network);
        assert_eq!(added.ip, Some(Ipv4Addr::new(10, 77, 0, 15)));
        // The added blade is no cold-start blade and is not powered on in
        // step 3.
        assert!(r.steps.iter().all(|s| match s {
            Step::PowerOn { blades, .. } => !blades.iter().any(|b| b == "blade05"),
            _ => true,
        }));
        let text = r.to_string();
        assert!(text.contains("blade05  52:54:00:77:00:05  10.77.0.15  added"));
        assert!(text.contains("  10. blade02 writes a file and is powered off"));
        assert!(text.contains("/tmp/r/cluster/day2-step11.toml (without blade04)"));
    }

    #[test]
    fn day_two_needs_the_whole_cold_start_rehearsal() {
        let day2 = |o: Options| Options { day2: true, ..o };
        for opts in [
            day2(Options {
                stop_after: Some(7),
                ..Options::default()
            }),
            day2(Options {
                scheme: Scheme::PxeOnly,
                stop_after: Some(5),
                ..Options::default()
            }),
        ] {
            assert_eq!(
                plan(&demo(), &opts, &host()),
                Err(PlanError::Day2(day2::Day2Error::Steps)),
                "{opts:?}"
            );
        }
        let three = day2(Options {
            nodes: Some(3),
            stop_after: Some(8),
            ..Options::default()
        });
        assert!(plan(&demo(), &three, &host()).is_err());
    }
}
