//! The SAN target, a block device or a regular file: its facts, and the
//! checks that must pass before anything is written to it.
//!
//! Nothing here writes. [`check`] returns a [`Checked`] target, which only
//! it can make: the executor takes one, so no write happens to a target that
//! was not checked (stratisd's `UnownedDevices` works the same way).

use std::fs::File;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use cluster::gpt::{self, Header};
use cluster::{Bytes, Plan, SectorSize};
use serde::Deserialize;
use uuid::Uuid;

/// What kind of target a SAN path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    BlockDevice,
    RegularFile,
}

/// Size and sector size of a SAN target, read without changing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetFacts {
    pub path: PathBuf,
    pub kind: TargetKind,
    pub size: Bytes,
    /// Logical sector size the kernel reports; `None` for a regular file,
    /// whose sector size is whatever the plan says.
    pub sector_size: Option<SectorSize>,
    /// `major:minor` of a block device.
    pub rdev: Option<(u32, u32)>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is {what}, neither a block device nor a regular file")]
    NotATarget { path: PathBuf, what: &'static str },
    #[error("cannot read the size of {path}: {source}")]
    Size {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} reports a logical sector size of {size} bytes; vlx supports 512 and 4096")]
    SectorSize { path: PathBuf, size: u32 },
    #[error("reading {what} to check {path}: {source}")]
    Probe {
        path: PathBuf,
        what: String,
        #[source]
        source: std::io::Error,
    },
}

// From <linux/fs.h>: _IOR(0x12, 114, size_t) and _IO(0x12, 104).
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
const BLKSSZGET: libc::c_ulong = 0x1268;

/// What a file type is, in words, for an error that refuses it.
fn kind_name(ft: std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_file() {
        "a regular file"
    } else {
        "of an unknown file type"
    }
}

/// Refuses anything but a block device or a regular file.
fn target_type(path: &Path, meta: &std::fs::Metadata) -> Result<(), DeviceError> {
    let ft = meta.file_type();
    if ft.is_file() || ft.is_block_device() {
        return Ok(());
    }
    Err(DeviceError::NotATarget {
        path: path.to_owned(),
        what: kind_name(ft),
    })
}

/// Opens a target that [`target_type`] accepted. `O_NONBLOCK` is a belt to
/// the type check's braces: should the path be swapped for a FIFO between
/// the check and the open, the open still returns at once (and the type
/// is checked again on the open file). The flag is cleared once open, so
/// that no driver sees non-blocking reads and writes.
fn open_target(path: &Path, write: bool) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl with F_GETFL/F_SETFL only takes the descriptor, which
    // `file` keeps open, and plain integers.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}

/// Opens `path` read-only without blocking, after checking (with `stat`,
/// which follows links such as `/dev/disk/by-id/...`) that it is a block
/// device or a regular file; a FIFO, socket, character device or directory
/// is refused before it is opened.
pub fn open_read(path: &Path) -> Result<File, DeviceError> {
    let meta = std::fs::metadata(path).map_err(|source| DeviceError::Open {
        path: path.to_owned(),
        source,
    })?;
    target_type(path, &meta)?;
    let file = open_target(path, false).map_err(|source| DeviceError::Open {
        path: path.to_owned(),
        source,
    })?;
    let again = file.metadata().map_err(|source| DeviceError::Size {
        path: path.to_owned(),
        source,
    })?;
    target_type(path, &again)?;
    Ok(file)
}

/// Reads the facts of `path` (opening it read-only, never blocking).
pub fn inspect(path: &Path) -> Result<TargetFacts, DeviceError> {
    let file = open_read(path)?;
    let meta = file.metadata().map_err(|source| DeviceError::Size {
        path: path.to_owned(),
        source,
    })?;
    let ft = meta.file_type();
    if ft.is_file() {
        return Ok(TargetFacts {
            path: path.to_owned(),
            kind: TargetKind::RegularFile,
            size: Bytes(meta.len()),
            sector_size: None,
            rdev: None,
        });
    }
    if !ft.is_block_device() {
        return Err(DeviceError::NotATarget {
            path: path.to_owned(),
            what: kind_name(ft),
        });
    }
    let fd = file.as_raw_fd();
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which is valid.
    if unsafe { libc::ioctl(fd, BLKGETSIZE64, &mut size as *mut u64) } != 0 {
        return Err(DeviceError::Size {
            path: path.to_owned(),
            source: std::io::Error::last_os_error(),
        });
    }
    let mut ssz: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int through the pointer, which is valid.
    if unsafe { libc::ioctl(fd, BLKSSZGET, &mut ssz as *mut libc::c_int) } != 0 {
        return Err(DeviceError::Size {
            path: path.to_owned(),
            source: std::io::Error::last_os_error(),
        });
    }
    let sector = SectorSize::try_from(ssz as u32).map_err(|_| DeviceError::SectorSize {
        path: path.to_owned(),
        size: ssz as u32,
    })?;
    let rdev = meta.rdev();
    Ok(TargetFacts {
        path: path.to_owned(),
        kind: TargetKind::BlockDevice,
        size: Bytes(size),
        sector_size: Some(sector),
        rdev: Some((libc::major(rdev), libc::minor(rdev))),
    })
}

/// Why a target is in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InUse {
    /// The device (or loop device over the file) that is in use.
    pub device: String,
    pub how: String,
}

impl std::fmt::Display for InUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.device, self.how)
    }
}

/// The kernel names (`sdb`, `sdb1`, `loop0p2`) of a whole block device and
/// its partitions, from sysfs.
fn with_partitions(name: &str) -> Vec<String> {
    let mut out = vec![name.to_owned()];
    if let Ok(rd) = std::fs::read_dir(format!("/sys/class/block/{name}")) {
        let mut parts: Vec<String> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                n.starts_with(name)
                    && Path::new(&format!("/sys/class/block/{n}/partition")).exists()
            })
            .collect();
        parts.sort();
        out.extend(parts);
    }
    out
}

/// The kernel name of the block device with `major:minor`.
fn name_of_dev(major: u32, minor: u32) -> Option<String> {
    let link = std::fs::read_link(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    link.file_name().map(|n| n.to_string_lossy().into_owned())
}

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Loop devices whose backing file is `file`.
fn loops_over(file: &Path) -> Vec<String> {
    let Ok(canon) = std::fs::canonicalize(file) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/sys/block") {
        for e in rd.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("loop") {
                continue;
            }
            // The kernel appends " (deleted)" when the file is gone.
            if let Some(b) = read_trim(&format!("/sys/block/{name}/loop/backing_file"))
                && Path::new(b.trim_end_matches(" (deleted)")) == canon
            {
                out.push(name);
            }
        }
    }
    out.sort();
    out
}

/// Every way the target is in use: mounted, swapped on, or held (by
/// device-mapper, md, ...), for itself, its partitions, and for a file,
/// any loop device over it.
pub fn in_use(facts: &TargetFacts) -> Result<Vec<InUse>, DeviceError> {
    let mut devices = Vec::new();
    match (facts.kind, facts.rdev) {
        (TargetKind::BlockDevice, Some((ma, mi))) => {
            if let Some(n) = name_of_dev(ma, mi) {
                devices.extend(with_partitions(&n));
            }
        }
        _ => {
            for l in loops_over(&facts.path) {
                devices.extend(with_partitions(&l));
            }
        }
    }
    let probe = |what: &str| {
        let path = facts.path.clone();
        let what = what.to_owned();
        move |source| DeviceError::Probe { path, what, source }
    };
    let mut found = Vec::new();
    let dev_ids: Vec<(String, String)> = devices
        .iter()
        .filter_map(|d| read_trim(&format!("/sys/class/block/{d}/dev")).map(|id| (d.clone(), id)))
        .collect();

    // Mounts: field 3 of mountinfo is the major:minor of the mounted device.
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(probe("/proc/self/mountinfo"))?;
    for line in mountinfo.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() < 5 {
            continue;
        }
        if let Some((d, _)) = dev_ids.iter().find(|(_, id)| id == f[2]) {
            found.push(InUse {
                device: format!("/dev/{d}"),
                how: format!("is mounted on {}", f[4]),
            });
        }
    }

    // Swaps: /proc/swaps names devices or files.
    let swaps = std::fs::read_to_string("/proc/swaps").map_err(probe("/proc/swaps"))?;
    let target_canon = std::fs::canonicalize(&facts.path).ok();
    for line in swaps.lines().skip(1) {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let canon = std::fs::canonicalize(name).ok();
        let hit = devices.iter().any(|d| name == format!("/dev/{d}"))
            || (canon.is_some() && canon == target_canon);
        if hit {
            found.push(InUse {
                device: name.to_owned(),
                how: "is used as swap".into(),
            });
        }
    }

    // Holders: device-mapper, md or bcache on top of the device.
    for d in &devices {
        if let Ok(rd) = std::fs::read_dir(format!("/sys/class/block/{d}/holders")) {
            let mut holders: Vec<String> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            holders.sort();
            if !holders.is_empty() {
                found.push(InUse {
                    device: format!("/dev/{d}"),
                    how: format!("is held by {}", holders.join(", ")),
                });
            }
        }
    }
    // A loop device over the file that is not otherwise in use is still a
    // second writer the install would race with.
    if facts.kind == TargetKind::RegularFile {
        for l in loops_over(&facts.path) {
            if !found
                .iter()
                .any(|u| u.device.starts_with(&format!("/dev/{l}")))
            {
                found.push(InUse {
                    device: format!("/dev/{l}"),
                    how: format!("is a loop device over {}", facts.path.display()),
                });
            }
        }
    }
    Ok(found)
}

/// A signature `wipefs` finds on the target.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Signature {
    pub offset: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// Signatures on the target, as `wipefs --no-act --json` (util-linux) sees
/// them: partition tables and file systems.
pub fn signatures(path: &Path) -> Result<Vec<Signature>, DeviceError> {
    #[derive(Deserialize)]
    struct Out {
        #[serde(default)]
        signatures: Vec<Signature>,
    }
    let out = Command::new("wipefs")
        .args(["--no-act", "--json"])
        .arg(path)
        .output()
        .map_err(|source| DeviceError::Probe {
            path: path.to_owned(),
            what: "signatures with wipefs".into(),
            source,
        })?;
    if !out.status.success() {
        return Err(DeviceError::Probe {
            path: path.to_owned(),
            what: "signatures with wipefs".into(),
            source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        });
    }
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    serde_json::from_slice::<Out>(&out.stdout)
        .map(|o| o.signatures)
        .map_err(|e| DeviceError::Probe {
            path: path.to_owned(),
            what: "wipefs output".into(),
            source: std::io::Error::other(e),
        })
}

/// Reads `len` bytes at `offset` (short at the end of the target).
pub fn read_at(file: &File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(done);
    Ok(buf)
}

/// A GPT found on the target: its header, entries, and which copy was read.
#[derive(Debug, Clone)]
pub struct FoundGpt {
    pub header: Header,
    pub entries: Vec<gpt::Entry>,
    pub primary_ok: bool,
}

/// Reads the GPT of a target with `sector` logical sectors, from the primary
/// copy or, when that is damaged, the backup. `None`: no valid GPT.
pub fn read_gpt(file: &File, sector: SectorSize, size: Bytes) -> std::io::Result<Option<FoundGpt>> {
    let s = sector.bytes();
    let try_at = |lba: u64| -> std::io::Result<Option<FoundGpt>> {
        let sec = read_at(file, lba * s, s as usize)?;
        let Ok(h) = Header::parse(&sec) else {
            return Ok(None);
        };
        if h.my_lba != lba {
            return Ok(None);
        }
        // The entry array must lie on the disk (a damaged or hostile
        // header may put it anywhere); its length is bounded by
        // `Header::parse`.
        let Some(at) = h
            .entries_lba
            .checked_mul(s)
            .filter(|at| at.saturating_add(h.entries_len() as u64) <= size.get())
        else {
            return Ok(None);
        };
        let bytes = read_at(file, at, h.entries_len())?;
        Ok(gpt::parse_entries(&h, &bytes).ok().map(|entries| FoundGpt {
            header: h,
            entries,
            primary_ok: lba == 1,
        }))
    };
    if let Some(g) = try_at(1)? {
        return Ok(Some(g));
    }
    let last = size.get() / s;
    if last == 0 {
        return Ok(None);
    }
    try_at(last - 1)
}

/// What the target holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contents {
    /// No partition table or file system signature.
    Blank,
    /// A GPT of this same cluster (finished or not).
    ThisCluster,
    /// Anything else: the named signatures, or another cluster's GPT.
    Foreign(String),
}

/// A target that passed every check: the only way to get a writable target.
/// It holds the target open for writing under an exclusive lock (see
/// [`crate::lock`]), from the check to the end of the run.
#[derive(Debug)]
pub struct Checked {
    facts: TargetFacts,
    contents: Contents,
    file: File,
    /// The backing file of a loop-device target, locked too.
    backing: Option<File>,
}

impl Checked {
    pub fn facts(&self) -> &TargetFacts {
        &self.facts
    }

    pub fn contents(&self) -> &Contents {
        &self.contents
    }

    /// The facts, the locked target open for reading and writing, and the
    /// locked backing file of a loop device (keep it open to keep its lock).
    pub(crate) fn into_parts(self) -> (TargetFacts, File, Option<File>) {
        (self.facts, self.file, self.backing)
    }
}

/// Opens the target for writing and takes the install lock, before any of
/// the checks that read it: an install running on it already is named.
fn open_locked(facts: &TargetFacts) -> Result<(File, Option<File>), Refusal> {
    let path = &facts.path;
    let meta = std::fs::metadata(path).map_err(|source| DeviceError::Open {
        path: path.clone(),
        source,
    })?;
    target_type(path, &meta)?;
    let file = open_target(path, true).map_err(|source| not_writable(facts, source))?;
    let meta = file.metadata().map_err(|source| DeviceError::Size {
        path: path.clone(),
        source,
    })?;
    target_type(path, &meta)?;
    let rdev = meta.file_type().is_block_device().then(|| {
        let r = meta.rdev();
        (libc::major(r), libc::minor(r))
    });
    if rdev != facts.rdev {
        return Err(Refusal::Changed { path: path.clone() });
    }
    crate::lock::exclusive(&file, path)?;
    let backing = match rdev.and_then(crate::lock::loop_backing_file) {
        Some(b) => {
            // Read-only is enough to lock; the install writes through the
            // loop device.
            let bf = File::open(&b).map_err(|source| DeviceError::Open {
                path: b.clone(),
                source,
            })?;
            crate::lock::exclusive(&bf, &b)?;
            Some(bf)
        }
        None => None,
    };
    Ok((file, backing))
}

fn not_writable(facts: &TargetFacts, source: std::io::Error) -> Refusal {
    let why = match source.raw_os_error() {
        Some(libc::EPERM) if facts.kind == TargetKind::RegularFile => {
            " (an immutable or append-only file? `lsattr` shows it, `chattr -i` clears it)"
        }
        Some(libc::EROFS) => " (it is on a read-only mount)",
        _ => "",
    };
    Refusal::NotWritable {
        path: facts.path.clone(),
        why,
        source,
    }
}

/// Why the installer will not write to a target.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("{path} is in use: {}", .uses.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InUse { path: PathBuf, uses: Vec<InUse> },
    #[error("{path} holds {what}; refusing to overwrite it without --wipe")]
    NotBlank { path: PathBuf, what: String },
    #[error("{path} is {have}, smaller than the {need} the plan needs")]
    TooSmall {
        path: PathBuf,
        have: Bytes,
        need: Bytes,
    },
    #[error("{path} has {have}-byte logical sectors, but the plan is for {want}-byte sectors")]
    SectorMismatch {
        path: PathBuf,
        have: SectorSize,
        want: SectorSize,
    },
    #[error("{path} cannot be opened for writing{why}: {source}")]
    NotWritable {
        path: PathBuf,
        why: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Locked(#[from] crate::lock::LockError),
    #[error("{path} changed while it was checked (another device now has its name)")]
    Changed { path: PathBuf },
}

/// Checks `facts` against `plan` before any write: in use, too small, wrong
/// sector size, or holding something that is not this cluster (unless
/// `wipe`). Reads only.
pub fn check(facts: TargetFacts, plan: &Plan, wipe: bool) -> Result<Checked, Refusal> {
    let path = facts.path.clone();
    if let Some(have) = facts.sector_size.filter(|s| *s != plan.disk.sector_size) {
        return Err(Refusal::SectorMismatch {
            path,
            have,
            want: plan.disk.sector_size,
        });
    }
    if facts.size < plan.disk.size {
        return Err(Refusal::TooSmall {
            path,
            have: facts.size,
            need: plan.disk.size,
        });
    }
    let (file, backing) = open_locked(&facts)?;
    let uses = in_use(&facts)?;
    if !uses.is_empty() {
        return Err(Refusal::InUse { path, uses });
    }
    let found = read_gpt(&file, plan.disk.sector_size, facts.size).map_err(|source| {
        DeviceError::Probe {
            path: path.clone(),
            what: "the partition table".into(),
            source,
        }
    })?;
    let ours = cluster::layout::derived_guid(plan.cluster.uuid, "disk");
    let contents = match found {
        Some(g) if g.header.disk_guid == ours => Contents::ThisCluster,
        Some(g) => Contents::Foreign(format!(
            "the GPT of another disk or cluster (disk GUID {})",
            g.header.disk_guid
        )),
        None => {
            let sigs = signatures(&path)?;
            if sigs.is_empty() {
                Contents::Blank
            } else {
                let list: Vec<String> = sigs
                    .iter()
                    .map(|s| format!("{} at {}", s.kind, s.offset))
                    .collect();
                Contents::Foreign(list.join(", "))
            }
        }
    };
    if let (Contents::Foreign(what), false) = (&contents, wipe) {
        return Err(Refusal::NotBlank {
            path,
            what: what.clone(),
        });
    }
    Ok(Checked {
        facts,
        contents,
        file,
        backing,
    })
}

/// Model and serial of a block device, for the confirmation prompt.
pub fn describe(facts: &TargetFacts) -> String {
    match (facts.kind, facts.rdev.and_then(|(a, b)| name_of_dev(a, b))) {
        (TargetKind::BlockDevice, Some(name)) => {
            let model = read_trim(&format!("/sys/class/block/{name}/device/model"))
                .unwrap_or_else(|| "unknown model".into());
            let serial = read_trim(&format!("/sys/class/block/{name}/device/serial"))
                .or_else(|| read_trim(&format!("/sys/class/block/{name}/device/wwid")))
                .unwrap_or_else(|| "no serial".into());
            format!(
                "{} ({model}, serial {serial}, {})",
                facts.path.display(),
                facts.size
            )
        }
        _ => format!("{} (image file, {})", facts.path.display(), facts.size),
    }
}

/// A GUID used for file systems on the SAN (ext4 and swap UUIDs): derived,
/// so that the same plan always gives the same bytes.
pub fn fs_uuid(plan: &Plan, what: &str) -> Uuid {
    cluster::layout::derived_guid(plan.cluster.uuid, &format!("fs:{what}"))
}

/// Checks a target that already holds `plan`'s cluster before changing one
/// part of it (`reset-node`): not in use on this machine, and its partition
/// table is this cluster's.
pub fn check_installed(facts: TargetFacts, plan: &Plan) -> Result<Checked, Refusal> {
    let path = facts.path.clone();
    let checked = check(facts, plan, false)?;
    if checked.contents != Contents::ThisCluster {
        return Err(Refusal::NotBlank {
            path,
            what: "no partition table of this cluster".into(),
        });
    }
    Ok(checked)
}
