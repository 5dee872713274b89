//! `vlx-install media-env`: the installer environment's front end, run by
//! the `/init` of the install media's initramfs. It finds the payload,
//! checks it, shows the disks, takes a cluster profile and a target
//! (asking, or from `vlx.profile=`/`vlx.target=` when unattended), shows
//! the plan, and runs the installer's own [`crate::apply::apply`]; then it
//! powers the machine off. Every step prints one `vlx-install:` line; a
//! failure prints `vlx-install: error:` and `vlx-install: hint:` and
//! returns, and `/init` keeps a shell on the console.
//!
//! The decisions (command line, which disk a target names, the answers to
//! the prompts) are in [`cmdline`], [`disks`] and [`prompt`] and are tested
//! as values; this module does the I/O.

pub use contracts::cmdline::media as cmdline;
pub mod disks;
pub mod iscsi;
pub mod payload;
pub mod prompt;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::apply::{self, ApplyError, Options, Outcome};
use crate::device::{self, Contents, Refusal};
use crate::prepare::{self, PrepareError, Request};
use crate::report::Console;
use cmdline::{CmdlineError, MediaArgs, Target};
use disks::{Disk, PickError};
use payload::{MediaManifest, PayloadError};
use prompt::{Prompt, PromptError};

/// Where the payload is mounted.
pub const MEDIA_MOUNT: &str = "/run/vlx/media";
/// How long the medium may take to show: USB sticks and CD drives are
/// probed after the kernel starts init.
const MEDIA_WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(250);
/// Progress lines while the payload is checked, at most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Prints one line of the environment on the console.
pub fn say(line: impl std::fmt::Display) {
    println!("vlx-install: {line}");
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error(transparent)]
    Cmdline(#[from] CmdlineError),
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("loading kernel modules: {0}")]
    Modules(String),
    #[error(
        "no install payload with manifest sha256 {sha} on any disk after {secs} s (looked at: {looked})"
    )]
    NoPayload {
        sha: String,
        secs: u64,
        looked: String,
    },
    #[error("mounting {what} on {target}: {source}")]
    Mount {
        what: String,
        target: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error("vlx.profile={name}: the media carry no such cluster profile (they carry {known})")]
    NoProfile { name: String, known: String },
    #[error("the media carry no cluster profile")]
    NoProfiles,
    #[error(transparent)]
    Pick(#[from] PickError),
    #[error("no disk to install on: every disk the kernel sees is the install medium")]
    NoDisks,
    #[error("unattended install: {0}")]
    Unattended(&'static str),
    #[error(transparent)]
    Prompt(#[from] PromptError),
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("the install was not confirmed; nothing was written")]
    NotConfirmed,
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Net(#[from] iscsi::NetError),
    /// The error names the URL, portal, target and LUN.
    #[error("vlx.target: {0}")]
    Login(Box<crate::iscsi::LoginError>),
    #[error("vlx.target: {0}")]
    Logout(Box<crate::iscsi::IscsiError>),
    #[error("the payload's CHAP file {path}: {detail}")]
    Chap { path: PathBuf, detail: String },
}

impl MediaError {
    /// Where to look next, for the console.
    pub fn hint(&self) -> String {
        match self {
            MediaError::Cmdline(_) => "boot the install media's own boot entry, or fix the vlx.* arguments at the boot loader".into(),
            MediaError::NoPayload { .. } => "the payload partition or the CD is not readable: is the medium fully written (compare it with NAME.json), and does the kernel have the driver of its drive (media.modules)?".into(),
            MediaError::Payload(_) => "write the medium again from the published image and check it with its NAME.json; the SAN was not touched".into(),
            MediaError::Modules(_) | MediaError::Mount { .. } => "the installer's initramfs lacks a driver: add it to media.modules and build the media again".into(),
            MediaError::NoProfile { .. } | MediaError::NoProfiles => "pick a profile at the prompt (boot the guided entry), or build media that carry it".into(),
            MediaError::Pick(_) | MediaError::NoDisks => "check that the SAN is attached and seen by this blade (the list above shows every disk)".into(),
            MediaError::Net(_) => "check vlx.sif (a NIC name or MAC of this blade), vlx.sifip, vlx.sifnm and vlx.sifm at the boot loader; the SAN was not touched".into(),
            MediaError::Login(_) => "check the portal, the target name and the LUN of vlx.target, the storage network, and the media's CHAP file; no session is left logged in and the SAN was not touched".into(),
            MediaError::Chap { .. } => "build the media again with a CHAP file of username=, password= (and username_in=, password_in=) lines".into(),
            MediaError::Unattended(_) => "unattended media need vlx.profile and vlx.target; edit them at the boot loader or boot the guided entry".into(),
            MediaError::Refused(Refusal::NotBlank { .. }) => "the target was left as it was; pass vlx.wipe=1 (or answer erase in the guided install) to overwrite it".into(),
            MediaError::Prepare(PrepareError::Change { .. }) => "the SAN holds this cluster with a layout the media's profile cannot change in place (the keys are named above); the target was left as it was; pass vlx.wipe=1 to lay it out afresh (every node's store is lost)".into(),
            MediaError::Refused(_) | MediaError::Prepare(PrepareError::Refused(_) | PrepareError::SanSize { .. }) => "the target was left as it was; pick another disk (vlx.target=), or build media with a profile that fits it".into(),
            MediaError::Prepare(PrepareError::Invalid(_) | PrepareError::Read { .. } | PrepareError::Image { .. }) => "the cluster profile on the media does not fit this SAN or image; build media with a matching profile".into(),
            _ => "the console above says what failed; `vlx-install status --san DISK` shows how far an install got, and running the media again finishes it".into(),
        }
    }
}

impl MediaError {
    /// The exit code, as `vlx-install apply` gives it: 2 for bad input (an
    /// invalid profile, a `vlx.*` argument, a NIC or CHAP file the
    /// arguments name that is not there or not right), 3 for a refused
    /// target (left as it was, or an iSCSI session that was there before),
    /// 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            MediaError::Prepare(e) => e.exit_code(),
            MediaError::Refused(_) | MediaError::NotConfirmed => prepare::EXIT_REFUSED,
            MediaError::Apply(ApplyError::Refused(_)) => prepare::EXIT_REFUSED,
            MediaError::Login(e) => match e.as_ref() {
                crate::iscsi::LoginError::Busy(_) => prepare::EXIT_REFUSED,
                crate::iscsi::LoginError::Iscsi(e) => e.exit_code(),
            },
            MediaError::Net(e) => e.exit_code(),
            MediaError::Cmdline(_) => 2,
            MediaError::Chap { .. } => 2,
            _ => 1,
        }
    }
}

/// The environment's main: runs the install and powers off, or prints the
/// failure and returns its exit code.
pub fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => {
            say("powering off");
            power_off();
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            say(format!("error: {e}"));
            say(format!("hint: {}", e.hint()));
            std::process::ExitCode::from(e.exit_code())
        }
    }
}

fn power_off() {
    // SAFETY: sync has no preconditions; reboot(2) with RB_POWER_OFF only
    // returns on failure (then /init's shell remains).
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
}

fn read(path: &Path) -> Result<String, MediaError> {
    std::fs::read_to_string(path).map_err(|source| MediaError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The install, up to (not including) the power-off.
pub fn run() -> Result<(), MediaError> {
    let args = cmdline::parse(&read(Path::new("/proc/cmdline"))?)?;
    say(format!(
        "installer environment: payload {}…, {}",
        &args.media[..16],
        if args.unattended {
            "unattended"
        } else {
            "guided"
        }
    ));
    load_modules()?;
    let (media_dev, manifest) = find_payload(&args.media)?;
    let root = Path::new(MEDIA_MOUNT);
    say(format!(
        "payload {} on {media_dev}: image {} {}, clusters {}, guests {}",
        manifest.name,
        manifest.image.name,
        manifest.image.version,
        payload::names(&manifest.clusters),
        payload::names(&manifest.guests),
    ));
    check_payload(root, &manifest)?;

    let media_disk = disks::whole_disk(Path::new("/sys/class/block"), &media_dev);
    let mut found = disks::list(Path::new("/sys/block"), std::slice::from_ref(&media_disk));
    for d in &mut found {
        d.holds = Some(match device::signatures(&d.path) {
            Ok(s) if s.is_empty() => "blank".into(),
            Ok(s) => s
                .iter()
                .map(|s| format!("{} at {}", s.kind, s.offset))
                .collect::<Vec<_>>()
                .join(", "),
            Err(e) => format!("unreadable ({e})"),
        });
    }
    say(format!(
        "disks ({} besides the medium {media_disk}):",
        found.len()
    ));
    for d in &found {
        println!("  {}", d.describe());
    }
    let iscsi = match (&args.target, &args.storage) {
        (Some(Target::Iscsi(url)), Some(nic)) => Some((url.clone(), nic.clone())),
        _ => None,
    };
    if found.is_empty() && iscsi.is_none() {
        return Err(MediaError::NoDisks);
    }

    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut out = std::io::stdout();
    let mut ask = Prompt::new(&mut input, &mut out);
    let cluster = choose_profile(&args, &manifest, &mut ask)?;
    match iscsi {
        Some((url, nic)) => install_iscsi(&args, root, &manifest, &cluster, &url, &nic, &mut ask),
        None => {
            let disk = choose_disk(&args, &found, &mut ask)?;
            install(&args, root, &cluster, &disk.path, &mut ask)
        }
    }
}

/// The install onto an iSCSI LUN: the storage NIC up, `iscsid` started,
/// the installer's own login (with the payload's CHAP file when the media
/// carry one), the same [`install`] onto the LUN's disk, and the logout,
/// which the session guard also does when the install fails.
fn install_iscsi(
    args: &MediaArgs,
    root: &Path,
    manifest: &MediaManifest,
    cluster: &Path,
    url: &crate::iscsi::IscsiUrl,
    nic: &cmdline::StorageNic,
    ask: &mut Prompt<'_>,
) -> Result<(), MediaError> {
    let (iface, mac) = iscsi::bring_up(nic, &|names| load_named(names))?;
    say(format!(
        "storage NIC {iface} ({mac}) is up ({})",
        match &nic.address {
            contracts::cmdline::iscsi::Address::Static { addr, .. } => addr.to_string(),
            _ => "DHCP".into(),
        }
    ));
    let _iscsid = iscsi::start_iscsid(&mac)?;
    let chap = match iscsi::chap_file(root, manifest) {
        Some(path) => {
            let text = read(&path)?;
            let c = crate::iscsi::Chap::parse(&text).map_err(|detail| MediaError::Chap {
                path: path.clone(),
                detail,
            })?;
            say(format!(
                "CHAP for the login from the payload ({})",
                contracts::media::CHAP_FILE
            ));
            Some(c)
        }
        None => None,
    };
    say(format!(
        "logging in to {url} as {}",
        iscsi::initiator_name(&mac)
    ));
    let session =
        crate::iscsi::login(url, chap.as_ref()).map_err(|e| MediaError::Login(Box::new(e)))?;
    say(format!("target {url} is {}", session.device().display()));
    let device = session.device().to_owned();
    // On an error the session is dropped here, which logs out.
    install(args, root, cluster, &device, ask)?;
    session
        .logout()
        .map_err(|e| MediaError::Logout(Box::new(e)))?;
    say(format!("logged out of {url}"));
    Ok(())
}

/// Loads the modules `names` (and what they need) from the environment's
/// `/lib/modules`.
fn load_named(names: &[String]) -> Result<(), String> {
    load_list(names).map(|_| ()).map_err(|e| match e {
        MediaError::Modules(m) => {
            format!("{m} (the installer's initramfs has no such module: add it to media.modules)")
        }
        other => other.to_string(),
    })
}

/// Loads the modules of `/etc/vlx/modules.load` (the agent's loader: the
/// same list format, resolved through modules.dep).
fn load_modules() -> Result<(), MediaError> {
    let wanted = initsys::modules::parse_load_list(&read(Path::new(initsys::modules::LOAD_LIST))?);
    let n = load_list(&wanted)?;
    say(format!("loaded {n} kernel modules"));
    Ok(())
}

/// Loads `wanted` with their dependencies; returns how many files.
fn load_list(wanted: &[String]) -> Result<usize, MediaError> {
    use initsys::modules::ModuleIndex;
    let release = initsys::sys::kernel_release().map_err(|source| MediaError::Read {
        path: "uname".into(),
        source,
    })?;
    let dir = Path::new("/lib/modules").join(&release);
    let dep = read(&dir.join("modules.dep"))?;
    let builtin = std::fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
    let index =
        ModuleIndex::parse(&dep, &builtin).map_err(|e| MediaError::Modules(e.to_string()))?;
    let order = index
        .load_order(wanted)
        .map_err(|e| MediaError::Modules(e.to_string()))?;
    for rel in &order {
        let path = dir.join(rel);
        let file = std::fs::File::open(&path).map_err(|source| MediaError::Read {
            path: path.clone(),
            source,
        })?;
        initsys::sys::load_module(&file, !rel.ends_with(".ko"))
            .map_err(|e| MediaError::Modules(format!("{}: {e}", path.display())))?;
    }
    Ok(order.len())
}

/// Waits for the device whose ISO 9660 volume holds the manifest with
/// sha256 `sha`, and leaves it mounted on [`MEDIA_MOUNT`].
fn find_payload(sha: &str) -> Result<(String, MediaManifest), MediaError> {
    let mount = Path::new(MEDIA_MOUNT);
    std::fs::create_dir_all(mount).map_err(|source| MediaError::Mount {
        what: "a folder".into(),
        target: mount.to_owned(),
        source,
    })?;
    let start = Instant::now();
    let mut tried: Vec<String> = Vec::new();
    loop {
        let mut names: Vec<String> = std::fs::read_dir("/sys/class/block")
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        for name in names {
            let dev = format!("/dev/{name}");
            if tried.contains(&name) || !payload::is_iso9660(Path::new(&dev)) {
                continue;
            }
            tried.push(name.clone());
            if let Err(source) = initsys::sys::mount(&dev, mount, "iso9660", libc::MS_RDONLY, "") {
                say(format!("{dev}: ISO 9660, but it does not mount: {source}"));
                continue;
            }
            match payload::read_manifest(mount, sha)? {
                Some(m) => return Ok((name, m)),
                None => {
                    say(format!("{dev}: ISO 9660 of other media, not this payload"));
                    unmount(mount);
                }
            }
        }
        if start.elapsed() > MEDIA_WAIT {
            return Err(MediaError::NoPayload {
                sha: sha.to_owned(),
                secs: MEDIA_WAIT.as_secs(),
                looked: if tried.is_empty() {
                    "no ISO 9660 volume at all".into()
                } else {
                    tried.join(", ")
                },
            });
        }
        std::thread::sleep(POLL);
    }
}

fn unmount(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    if let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) {
        // SAFETY: c is a valid NUL-terminated path. A failure leaves the
        // mount, which the next mount on the same folder hides.
        unsafe { libc::umount(c.as_ptr()) };
    }
}

/// Hashes every payload file against the manifest, with progress lines.
fn check_payload(root: &Path, m: &MediaManifest) -> Result<(), MediaError> {
    let start = Instant::now();
    let mut last = Instant::now();
    payload::verify(root, m, &mut |done, total| {
        if last.elapsed() >= PROGRESS_EVERY {
            last = Instant::now();
            say(format!(
                "checking the payload: {} of {} MiB",
                done >> 20,
                total >> 20
            ));
        }
    })?;
    say(format!(
        "payload checked: {} files match the manifest ({:.0} s)",
        m.files.len(),
        start.elapsed().as_secs_f64()
    ));
    Ok(())
}

fn choose_profile(
    args: &MediaArgs,
    m: &MediaManifest,
    ask: &mut Prompt<'_>,
) -> Result<PathBuf, MediaError> {
    let known = || payload::names(&m.clusters);
    let pick = match (&args.profile, m.clusters.as_slice()) {
        (_, []) => return Err(MediaError::NoProfiles),
        (Some(name), all) => {
            all.iter()
                .find(|c| c.name == *name)
                .ok_or_else(|| MediaError::NoProfile {
                    name: name.clone(),
                    known: known(),
                })?
        }
        (None, [one]) => one,
        (None, _) if args.unattended => {
            return Err(MediaError::Unattended(
                "the media carry several cluster profiles and vlx.profile names none",
            ));
        }
        (None, all) => {
            let names: Vec<String> = all.iter().map(|c| c.name.clone()).collect();
            &all[ask.choose("Cluster profile", &names)?]
        }
    };
    say(format!("cluster profile {} ({})", pick.name, pick.path));
    Ok(Path::new(MEDIA_MOUNT).join(&pick.path))
}

fn choose_disk<'a>(
    args: &MediaArgs,
    found: &'a [Disk],
    ask: &mut Prompt<'_>,
) -> Result<&'a Disk, MediaError> {
    let disk = match &args.target {
        Some(Target::Disk(spec)) => disks::pick(found, spec)?,
        Some(Target::Iscsi(_)) => {
            return Err(MediaError::Unattended("an iSCSI target is no local disk"));
        }
        None if args.unattended => {
            return Err(MediaError::Unattended("vlx.target names no disk"));
        }
        None => {
            let options: Vec<String> = found.iter().map(Disk::describe).collect();
            &found[ask.choose("Target disk (the SAN)", &options)?]
        }
    };
    say(format!("target {}", disk.describe().trim_end()));
    Ok(disk)
}

/// Prepares, confirms and runs the install of the profile at `cluster`
/// with the payload's image (under `root`) onto `target`: the same front
/// door as `vlx-install apply`; only the questions and lines differ.
pub fn install(
    args: &MediaArgs,
    root: &Path,
    cluster: &Path,
    target: &Path,
    ask: &mut Prompt<'_>,
) -> Result<(), MediaError> {
    let image = root.join("image");
    // vlx.wipe=1 lays the cluster out afresh; otherwise a SAN that holds
    // this cluster gets the profile's changes in place.
    let base = if args.wipe {
        prepare::Base::Fresh
    } else {
        prepare::Base::Installed
    };
    let prepared = prepare::prepare_onto(
        Request {
            cluster,
            image: &image,
            san: target,
            // Media of a test image exist only when their build
            // acknowledged it (`vlx-image media --test-image`, or the
            // media profile's `test_image`): that acknowledgement is this
            // one.
            test_image: true,
        },
        base,
    )?;
    let mut wipe = args.wipe;
    let checked = match prepared.check_target(wipe) {
        Err(Refusal::NotBlank { path, what }) if !args.unattended => {
            ask.say(&format!("{} holds {what}.", path.display()))?;
            if !ask.confirm("ALL OF IT WILL BE ERASED.", "erase")? {
                return Err(MediaError::NotConfirmed);
            }
            wipe = true;
            prepared.check_target(true)?
        }
        other => other?,
    };
    let inputs = &prepared.inputs;
    let plan = &inputs.plan;
    let holds = match checked.contents() {
        Contents::Blank => "blank".to_owned(),
        Contents::ThisCluster => "an install of this cluster (verified and finished)".to_owned(),
        Contents::Foreign(what) => format!("{what} (to be erased)"),
    };
    say(format!(
        "plan: cluster {} ({}), {} nodes, {} partitions on {} of {}, image {} {}{}; the target holds {holds}",
        plan.cluster.name,
        plan.cluster.uuid,
        plan.nodes.len(),
        plan.disk.partitions.len(),
        target.display(),
        plan.disk.size,
        inputs.image.manifest.name,
        inputs.image.manifest.version,
        crate::prepare::test_image_note(&inputs.image.manifest),
    ));
    if !args.unattended
        && !ask.confirm(
            &format!(
                "Install cluster {} on {}?",
                plan.cluster.name,
                target.display()
            ),
            "yes",
        )?
    {
        return Err(MediaError::NotConfirmed);
    }
    let outcome = apply::apply(
        inputs,
        checked,
        Options {
            wipe,
            reset_all: false,
        },
        &Console::lines(),
    )?;
    say(match outcome {
        Outcome::AlreadyInstalled => format!(
            "cluster {} was already installed on {}; every step verified",
            plan.cluster.name,
            target.display()
        ),
        Outcome::Installed { .. } => format!(
            "installed cluster {} ({} nodes) on {}",
            plan.cluster.name,
            plan.nodes.len(),
            target.display()
        ),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "7eb47bfda9775cb92283a31c25fbd6054649e9ccf95fa89e8fc93bca138d2f24";

    /// Bad `vlx.*` input stops with its argument named and exit code 2,
    /// as a bad flag of `vlx-install` does.
    #[test]
    fn bad_arguments_are_bad_input_naming_them() {
        for (line, want) in [
            (
                format!("vlx.media={SHA} vlx.target=iscsi://san.example/iqn.x"),
                "vlx.target=iscsi://san.example/iqn.x: ",
            ),
            (
                format!("vlx.media={SHA} vlx.target=iscsi://10.0.0.1/iqn.x vlx.sifip=dhcp"),
                "needs vlx.sif=",
            ),
        ] {
            let e = MediaError::from(cmdline::parse(&line).expect_err(&line));
            assert_eq!(e.exit_code(), 2, "{e}");
            assert!(e.to_string().contains(want), "{line}: {e}");
        }
        let nic = MediaError::from(iscsi::NetError::NoNic {
            nic: cmdline::Nic::Name("eth7".into()),
            secs: 15,
            have: "eth0 52:54:00:00:00:01".into(),
        });
        assert_eq!(nic.exit_code(), 2);
        assert!(nic.hint().contains("vlx.sif"), "{}", nic.hint());
    }
}
