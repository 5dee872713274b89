//! The boot itself: the steps of `docs/contracts.md` ("The node agent"), in
//! order, each printing one console line. Everything here does I/O; what
//! each step decides comes from the pure modules of this crate.

use std::convert::Infallible;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cluster::slots::{Decision, Slot, SlotTable};
use cluster::{Locate, MacAddr, NodePlan, Plan, SectorSize};
use uuid::Uuid;

use crate::cmdline::{self, BootArgs, SanBoot};
use crate::console::say;
use crate::dm::{self, ROOT_DM_NAME};
use crate::failure::Failure;
use crate::modules::{self, LOAD_LIST, ModuleIndex};
use crate::multipath::{self, PATH_RECOVERY_TMO, Paths, SAN_DM_NAME};
use crate::node::{self, PLAN_FILE};
use crate::san::{self, Found, META_LABEL, Probe, SanDisk, SanError};
use crate::sys::{self, Loaded};
use crate::tools::{command, run};
use crate::{copy, iscsi};
use contracts::cmdline::iscsi::Login;

/// Where `vlx-meta` is mounted until it moves into the node's root.
pub const META_MOUNT: &str = "/run/vlx/meta";
/// Where the node's root is mounted before the switch.
pub const NEWROOT: &str = "/newroot";
/// Where `vlx-meta` ends up in the node's root.
pub const META_IN_ROOT: &str = "vlx/meta";
/// The init of the node's root.
pub const INIT: &str = "/sbin/init";

/// After the SAN is found on a SCSI disk, one more look this much later, so
/// that a second path to the same LUN (multipath) is noticed rather than
/// raced: the SCSI scan of a second session can end a moment after the
/// first's. A disk without a SCSI identity (virtio-blk, NVMe) cannot be one
/// of several paths ([`multipath`] groups paths by it), so it is taken at
/// once.
const SETTLE: Duration = Duration::from_secs(1);
/// How long a partition or device-mapper node may take to show in /dev.
const DEVICE_WAIT: Duration = Duration::from_secs(10);
/// How long NICs may take to register after their drivers load.
const MAC_WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(250);

/// Runs the boot as process 1 and never returns: on success it becomes the
/// node's init, on failure a shell on the console.
pub fn init() -> ! {
    let early = early_mounts();
    sys::ensure_console();
    // A panic must not end process 1 either: it becomes a failure too.
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| early.and_then(|()| boot())));
    match result {
        Ok(Ok(never)) => match never {},
        Ok(Err(f)) => rescue(&f),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "unknown panic".to_owned());
            rescue(&Failure::Bug(what))
        }
    }
}

fn mount_err(what: &str, target: &Path) -> impl FnOnce(io::Error) -> Failure {
    let (what, target) = (what.to_owned(), target.to_owned());
    move |source| Failure::Mount {
        what,
        target,
        source,
    }
}

fn mkdir(path: &Path) -> Result<(), Failure> {
    fs::create_dir_all(path).map_err(mount_err("a folder", path))
}

fn read(path: &Path) -> Result<String, Failure> {
    fs::read_to_string(path).map_err(|source| Failure::Read {
        path: path.to_owned(),
        source,
    })
}

/// `/proc`, `/sys` and `/dev` (devtmpfs), unless already there.
fn early_mounts() -> Result<(), Failure> {
    let nosuid = libc::MS_NOSUID;
    let quiet = libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NODEV;
    for (fs_type, target, flags, data) in [
        ("proc", "/proc", quiet, ""),
        ("sysfs", "/sys", quiet, ""),
        ("devtmpfs", "/dev", nosuid, "mode=0755"),
    ] {
        let target = Path::new(target);
        mkdir(target)?;
        if !sys::is_mount_point(target) {
            sys::mount(fs_type, target, fs_type, flags, data)
                .map_err(mount_err(fs_type, target))?;
        }
    }
    mkdir(Path::new("/run/vlx"))
}

fn boot() -> Result<Infallible, Failure> {
    let release = sys::kernel_release().map_err(|source| Failure::Read {
        path: "uname".into(),
        source,
    })?;
    say(format!(
        "version {}, starting on kernel {release} (/proc, /sys and /dev mounted)",
        env!("CARGO_PKG_VERSION")
    ));

    let line = read(Path::new("/proc/cmdline"))?;
    let args = cmdline::parse(&line).map_err(Failure::Cmdline)?;
    say(describe_args(&args));

    let mut extra = args.pre_modules.clone();
    if let SanBoot::Iscsi(i) = &args.san {
        extra.extend(iscsi::modules(i));
    }
    load_modules(&release, &extra)?;

    if let SanBoot::Iscsi(i) = &args.san {
        iscsi::connect(i, args.cluster)?;
    }

    let san = match find_san(args.cluster, args.san_wait)? {
        Found::Disk(d) => d,
        Found::Paths(p) => map_paths(&p)?,
    };
    say(format!("SAN is {san}"));

    let meta_dev = device(&san, META_LABEL)?;
    // Read before the mount: the node's files are of this generation or a
    // later one, so `follow` loads a change made since.
    let generation = meta_generation(Path::new(&meta_dev));
    let meta = Path::new(META_MOUNT);
    mkdir(meta)?;
    // noload: a read-only mount must not replay the journal, which would
    // write to a volume other nodes have mounted.
    sys::mount(&meta_dev, meta, "ext4", libc::MS_RDONLY, "noload")
        .map_err(mount_err(&format!("{META_LABEL} ({meta_dev})"), meta))?;
    say(format!("mounted {META_LABEL} ({meta_dev}) read-only"));

    let plan =
        node::read_plan(&read(&meta.join(PLAN_FILE))?, args.cluster).map_err(Failure::Node)?;
    say(format!(
        "cluster {} ({}), {} nodes in {PLAN_FILE}",
        plan.cluster.name,
        plan.cluster.uuid,
        plan.nodes.len()
    ));

    let (node, mac) = find_node(&plan)?;
    say(format!("this blade is {} (MAC {mac})", node.name));

    let (slot, record_env) = choose_slot(&plan, &san, node, meta)?;
    assemble_root(&plan, &san, node, slot)?;
    swap_on(&plan, &san, node);

    let name = node.name.as_str();
    let tree = meta.join(contracts::names::meta::node_root(name));
    let newroot = Path::new(NEWROOT);
    let count = copy::copy_tree(&tree, newroot).map_err(Failure::Copy)?;
    say(format!(
        "applied {count} files from nodes/{name}/root on {META_LABEL}"
    ));
    if let Some(env) = record_env {
        write_root_file(newroot, RECORD_ENV, &env)?;
        say(format!("{RECORD_ENV}: {}", env.trim().replace('\n', " ")));
    }
    match generation {
        Ok(g) => write_root_file(newroot, GENERATION_FILE, &format!("{g}\n"))?,
        Err(why) => {
            // `follow` then starts from the generation it reads itself.
            let _ = fs::remove_file(newroot.join(GENERATION_FILE.trim_start_matches('/')));
            say(format!(
                "{META_LABEL} ({meta_dev}): no generation read ({why}); {GENERATION_FILE} not written"
            ));
        }
    }

    let meta_in_root = newroot.join(META_IN_ROOT);
    mkdir(&meta_in_root)?;
    sys::move_mount(meta, &meta_in_root).map_err(mount_err(META_LABEL, &meta_in_root))?;
    say(format!("{META_LABEL} moved to /{META_IN_ROOT}"));

    let init = newroot.join(INIT.trim_start_matches('/'));
    if fs::symlink_metadata(&init).is_err() {
        return Err(Failure::NoInit(INIT.into()));
    }
    for dir in ["dev", "proc", "sys"] {
        let to = newroot.join(dir);
        if to.is_dir() {
            let from = Path::new("/").join(dir);
            sys::move_mount(&from, &to).map_err(mount_err(&from.to_string_lossy(), &to))?;
        }
    }
    say(format!("ready {name}"));
    // switch_root empties the initramfs, chroots to the new root and execs
    // its init as process 1.
    let err = command("switch_root").args([NEWROOT, INIT]).exec();
    Err(Failure::SwitchRoot {
        root: newroot.to_owned(),
        source: err,
    })
}

fn describe_args(args: &BootArgs) -> String {
    match &args.san {
        SanBoot::Disk => format!("cluster {}, SAN on a local disk", args.cluster),
        SanBoot::Iscsi(i) => {
            let via = i.net.iface.as_deref().unwrap_or("its storage interface");
            match &i.login {
                Login::Firmware => format!(
                    "cluster {}, SAN over iSCSI: the targets of the firmware's iBFT through {via}",
                    args.cluster
                ),
                Login::Target(t) => format!(
                    "cluster {}, SAN over iSCSI: {} at {} through {via}",
                    args.cluster, t.name, t.portal
                ),
            }
        }
    }
}

/// Loads `/etc/vlx/modules.load` and `extra`, dependencies first.
fn load_modules(release: &str, extra: &[String]) -> Result<(), Failure> {
    let list_path = Path::new(LOAD_LIST);
    let mut wanted = match fs::read_to_string(list_path) {
        Ok(text) => modules::parse_load_list(&text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(Failure::Read {
                path: list_path.to_owned(),
                source,
            });
        }
    };
    wanted.extend(extra.iter().cloned());
    if wanted.is_empty() {
        say(format!(
            "no kernel modules to load ({LOAD_LIST} is empty or absent)"
        ));
        return Ok(());
    }
    let dir = Path::new("/lib/modules").join(release);
    let dep = read(&dir.join("modules.dep"))?;
    let builtin = match fs::read_to_string(dir.join("modules.builtin")) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(Failure::Read {
                path: dir.join("modules.builtin"),
                source,
            });
        }
    };
    let index = ModuleIndex::parse(&dep, &builtin).map_err(Failure::Modules)?;
    let order = index.load_order(&wanted).map_err(Failure::Modules)?;
    let mut loaded = Vec::new();
    for rel in &order {
        let path = dir.join(rel);
        let insmod = |source| Failure::Insmod {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(insmod)?;
        let compressed = !rel.ends_with(".ko");
        if sys::load_module(&file, compressed).map_err(insmod)? == Loaded::Now {
            loaded.push(modules::module_name(rel));
        }
    }
    say(format!(
        "loaded {} kernel modules: {}",
        loaded.len(),
        loaded.join(" ")
    ));
    Ok(())
}

fn read_trimmed(path: &Path) -> Result<String, String> {
    fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| format!("reading {}: {e}", path.display()))
}

/// What one disk holds, read from `/sys/block/<disk>` and `/dev/<disk>`.
fn probe(disk: &str) -> Option<Probe> {
    let sys = Path::new("/sys/block").join(disk);
    let sectors: u64 = read_trimmed(&sys.join("size")).ok()?.parse().ok()?;
    if sectors == 0 {
        return None; // an empty drive or a path not yet up
    }
    let sector = read_trimmed(&sys.join("queue/logical_block_size"))
        .and_then(|s| s.parse::<u32>().map_err(|e| e.to_string()))
        .and_then(SectorSize::try_from);
    let gpt = sector.clone().and_then(|sector| {
        let dev = Path::new("/dev").join(disk);
        let f = File::open(&dev).map_err(|e| format!("opening {}: {e}", dev.display()))?;
        // /sys/block/*/size counts 512-byte sectors whatever the disk's own.
        let lbas = sectors * 512 / sector.bytes();
        san::read_gpt(sector, lbas, |offset, len| {
            let mut buf = vec![0u8; len];
            f.read_exact_at(&mut buf, offset).map(|()| buf)
        })
        .map_err(|e| e.to_string())
    });
    Some(Probe {
        disk: disk.to_owned(),
        sector: sector.unwrap_or(SectorSize::B512),
        sectors,
        // Absent on disks that are not SCSI (virtio-blk, NVMe has its own).
        wwid: read_trimmed(&sys.join("device/wwid")).ok(),
        gpt,
    })
}

fn probe_all() -> Vec<Probe> {
    let mut names: Vec<String> = fs::read_dir("/sys/block")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| san::is_candidate(n))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names.iter().filter_map(|n| probe(n)).collect()
}

/// Waits a bounded time for the disk holding the cluster's SAN, or the
/// paths to its LUN.
fn find_san(cluster: Uuid, wait: Duration) -> Result<Found, Failure> {
    let start = Instant::now();
    let mut told = false;
    loop {
        let probes = probe_all();
        match san::choose(cluster, &probes) {
            // Only SCSI disks (a wwid) can be paths of one LUN: a disk
            // without one has no second path to wait for.
            Ok(Found::Disk(d)) if !san::may_have_paths(&probes, &d) => return Ok(Found::Disk(d)),
            Ok(_) => {
                std::thread::sleep(SETTLE);
                return san::choose(cluster, &probe_all()).map_err(Failure::San);
            }
            Err(e @ SanError::Paths { .. }) => return Err(Failure::San(e)),
            Err(e) if start.elapsed() > wait => return Err(Failure::San(e)),
            Err(_) if !told && start.elapsed() > Duration::from_secs(3) => {
                say(format!(
                    "waiting up to {} s for the SAN to appear",
                    wait.as_secs()
                ));
                told = true;
            }
            Err(_) => {}
        }
        std::thread::sleep(POLL);
    }
}

/// Builds the multipath map over the paths to the SAN and a linear map
/// for each of its partitions ([`multipath`]); the SAN is then the map.
fn map_paths(p: &Paths) -> Result<SanDisk, Failure> {
    say(format!(
        "the SAN's LUN {} is seen over {} paths: {}",
        p.wwid,
        p.paths.len(),
        p.names()
    ));
    let tmo = short_path_timeouts(p);
    let table = p.table();
    dm_create(SAN_DM_NAME, &table.to_string())?;
    wait_for(&Path::new("/dev/mapper").join(SAN_DM_NAME))?;
    say(format!(
        "multipath map {SAN_DM_NAME} over {} (round-robin, I/O queued while no path works{tmo}): {table}",
        p.names()
    ));
    let disk = p.disk();
    let parts = multipath::partitions(&disk);
    for l in &parts {
        dm_create(&l.name, &l.to_string())?;
    }
    say(format!(
        "partitions of {SAN_DM_NAME} mapped: {}",
        parts
            .iter()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    ));
    Ok(disk)
}

/// Shortens the recovery timeout of the iSCSI session behind each path to
/// [`PATH_RECOVERY_TMO`], so that I/O fails over to another path instead
/// of waiting 120 s for this one; says so in the text it returns. A path
/// that is no iSCSI disk (FC, SAS) keeps its driver's timeouts; a timeout
/// that cannot be written is reported and the boot goes on with it. A
/// value written in sysfs outlasts the session's later logins: the kernel
/// then ignores the one iscsid sends (`recovery_tmo_sysfs_override` in
/// the kernel's scsi_transport_iscsi.c), so the node's iscsid, which
/// adopts the sessions with its own default of 120 s, does not undo it.
fn short_path_timeouts(p: &Paths) -> String {
    let mut set = Vec::new();
    for path in &p.paths {
        match iscsi_session_of(&path.disk) {
            None => {}
            Some(session) => {
                let file = session.join("recovery_tmo");
                match fs::write(&file, PATH_RECOVERY_TMO.to_string()) {
                    Ok(()) => set.push(path.disk.as_str()),
                    Err(e) => say(format!(
                        "warning: path {}: writing {}: {e}; it keeps its timeout",
                        path.disk,
                        file.display()
                    )),
                }
            }
        }
    }
    if set.is_empty() {
        String::new()
    } else {
        format!(
            "; iSCSI recovery timeout of {} is {PATH_RECOVERY_TMO} s",
            set.join(", ")
        )
    }
}

/// The `/sys/class/iscsi_session/sessionN` of disk `disk`, if it is an
/// iSCSI disk: its device's path in sysfs runs through `.../sessionN/...`.
fn iscsi_session_of(disk: &str) -> Option<PathBuf> {
    let dev = fs::canonicalize(Path::new("/sys/block").join(disk).join("device")).ok()?;
    let name = dev
        .components()
        .filter_map(|c| c.as_os_str().to_str())
        .find(|c| c.starts_with("session"))?;
    Some(Path::new("/sys/class/iscsi_session").join(name))
}

/// Waits a bounded time for a device node.
fn wait_for(path: &Path) -> Result<(), Failure> {
    let start = Instant::now();
    while !path.exists() {
        if start.elapsed() > DEVICE_WAIT {
            return Err(Failure::Timeout {
                what: path.display().to_string(),
                waited: DEVICE_WAIT,
            });
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}

/// `/dev/<partition>` of `label` on the SAN, once it exists.
fn device(san: &SanDisk, label: &str) -> Result<String, Failure> {
    let name = san.device(label).ok_or_else(|| {
        Failure::Layout(dm::LayoutError::NotOnDisk {
            disk: san.disk.clone(),
            label: label.to_owned(),
        })
    })?;
    let path = format!("/dev/{name}");
    wait_for(Path::new(&path))?;
    Ok(path)
}

/// The blade's MACs, from every network interface.
fn macs() -> Vec<MacAddr> {
    let mut out: Vec<MacAddr> = fs::read_dir("/sys/class/net")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| fs::read_to_string(e.path().join("address")).ok())
                .filter_map(|t| node::parse_mac(&t))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out.dedup();
    out
}

/// The node owning one of the blade's MACs, waiting a bounded time for NICs
/// that register late.
fn find_node(plan: &Plan) -> Result<(&NodePlan, MacAddr), Failure> {
    let start = Instant::now();
    loop {
        let seen = macs();
        match node::find(plan, &seen) {
            Ok(n) => {
                if let Some(mac) = seen.iter().find(|m| n.macs.contains(m)) {
                    return Ok((n, *mac));
                }
            }
            Err(e) if start.elapsed() > MAC_WAIT => return Err(Failure::Node(e)),
            Err(_) => {}
        }
        std::thread::sleep(POLL);
    }
}

/// `dmsetup create` of a table under `name`, and its `/dev/mapper` node
/// (no udev runs in the initramfs to make it).
fn dm_create(name: &str, table: &str) -> Result<(), Failure> {
    run(command("dmsetup").args(["create", name, "--noudevsync", "--table", table]))?;
    run(command("dmsetup").args(["mknodes", name])).map(|_| ())
}

/// Where the node's root learns the device and 4 KiB block it publishes
/// its live status to (`/usr/lib/vlx/publish`); two-slot layouts only.
const RECORD_ENV: &str = "/etc/vlx/record.env";

/// Where the node's root learns the generation of `vlx-meta` (its ext4
/// UUID) as read before the volume was mounted and the node's files were
/// copied from it: `/usr/lib/vlx/follow` starts from it.
const GENERATION_FILE: &str = "/etc/vlx/meta-generation";

/// The ext4 UUID of the file system on `dev`, which the installer makes
/// the meta volume's generation (`docs/contracts.md`), as
/// `/usr/lib/vlx/meta-generation` prints it.
fn meta_generation(dev: &Path) -> Result<Uuid, String> {
    let mut head = [0u8; cluster::locate::EXT4_HEAD];
    File::open(dev)
        .and_then(|f| f.read_exact_at(&mut head, 0))
        .map_err(|e| e.to_string())?;
    cluster::locate::ext4_uuid(&head).ok_or_else(|| "no ext4 superblock".into())
}

/// Writes `text` to `file` of the new root, never through a link.
fn write_root_file(newroot: &Path, file: &str, text: &str) -> Result<(), Failure> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = newroot.join(file.trim_start_matches('/'));
    let err = |source| Failure::Read {
        path: path.clone(),
        source,
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)
}

/// The origin slot this boot builds the root on: slot A in a one-slot
/// layout; else the cluster's current slot, after the node's store was
/// reset if it was started on another slot or image (`slot::settle`).
/// With two slots also the text of [`RECORD_ENV`].
fn choose_slot(
    plan: &Plan,
    san: &SanDisk,
    node: &NodePlan,
    meta: &Path,
) -> Result<(Slot, Option<String>), Failure> {
    if !plan.disk.has_slots() {
        return Ok((Slot::A, None));
    }
    let name = node.name.to_string();
    let failed = |source| Failure::Slot {
        node: name.clone(),
        source,
    };
    let text = read(&meta.join(contracts::names::meta::SLOTS))?;
    let table = SlotTable::from_json(&text)
        .map_err(|e| failed(crate::slot::SlotError::Table(e.to_string())))?;
    let (dev, store) =
        dm::volume(plan, san, &cluster::locate::cow(&name)).map_err(Failure::Layout)?;
    let (_, record) =
        dm::volume(plan, san, &cluster::locate::record(&name)).map_err(Failure::Layout)?;
    wait_for(Path::new(&dev))?;
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&dev)
        .map_err(|source| Failure::Read {
            path: dev.clone().into(),
            source,
        })?;
    let sector = plan.disk.sector_size;
    let settled = crate::slot::settle(
        &file,
        store.within(sector).get(),
        record.within(sector).get(),
        &table,
        &name,
    )
    .map_err(failed)?;
    file.sync_all()
        .map_err(|e| failed(crate::slot::SlotError::Io("syncing the store", e)))?;
    let image = table
        .current_image()
        .map_err(|e| failed(crate::slot::SlotError::Table(e.to_string())))?;
    match &settled.decision {
        Decision::Keep => say(format!(
            "origin slot {} ({image}); store kept",
            settled.slot
        )),
        Decision::Start => say(format!(
            "origin slot {} ({image}); a fresh store, recorded on slot {}",
            settled.slot, settled.slot
        )),
        Decision::Reset { was } => say(format!(
            "origin slot {} ({image}): STORE OF {} RESET, everything written to its root is gone (it was started on {}); keep what must survive on the shared volume",
            settled.slot,
            name,
            match was {
                Some(r) => format!(
                    "slot {} with image {}",
                    r.slot,
                    &r.image_sha256[..r.image_sha256.len().min(12)]
                ),
                None => "an unknown slot".into(),
            }
        )),
    }
    let env = format!(
        "VLX_RECORD_DEV='{dev}'\nVLX_RECORD_BLOCK='{}'\n",
        (record.within(sector).get() + cluster::slots::LIVE_OFFSET) / 4096
    );
    Ok((settled.slot, Some(env)))
}

/// `dmsetup create vlx-root` (after the linear mapping of the store, in the
/// pool and two-slot layouts) and the mount of it on [`NEWROOT`].
fn assemble_root(plan: &Plan, san: &SanDisk, node: &NodePlan, slot: Slot) -> Result<(), Failure> {
    let (linear, table) = dm::root(plan, san, node, slot).map_err(Failure::Layout)?;
    wait_for(Path::new(&table.origin))?;
    let snapshot = |source| Failure::Snapshot {
        node: node.name.to_string(),
        source: Box::new(source),
    };
    if let Some(l) = &linear {
        wait_for(Path::new(&l.device))?;
        dm_create(&l.name, &l.to_string()).map_err(snapshot)?;
        let what = if plan.disk.pool.is_some() {
            "an extent of vlx-pool"
        } else {
            "its partition but for the slot record at its end"
        };
        say(format!("{} is {what} ({}): {l}", node.cow, l.path()));
    }
    wait_for(Path::new(&table.cow))?;
    dm_create(ROOT_DM_NAME, &table.to_string()).map_err(snapshot)?;
    say(format!(
        "root is a snapshot of {} ({}) with {} ({}): {table}",
        plan.volumes()
            .find(&slot.role())
            .map_or_else(|| "vlx-origin".to_owned(), |v| v.label),
        table.origin,
        node.cow,
        table.cow
    ));
    let dev = PathBuf::from("/dev/mapper").join(ROOT_DM_NAME);
    wait_for(&dev)?;
    let newroot = Path::new(NEWROOT);
    mkdir(newroot)?;
    sys::mount(&dev.to_string_lossy(), newroot, "ext4", 0, "")
        .map_err(mount_err(&dev.to_string_lossy(), newroot))?;
    say(format!("mounted {} on {NEWROOT}", dev.display()));
    Ok(())
}

/// Turns on the node's swap, when the plan gives it one. A swap that fails
/// is reported and the boot goes on: the node is more use up without swap
/// than stopped.
fn swap_on(plan: &Plan, san: &SanDisk, node: &NodePlan) {
    let role = cluster::locate::swap(node.name.as_str());
    let Some(label) = plan.volumes().find(&role).map(|v| v.label) else {
        return;
    };
    let result = dm::device(plan, san, &role, cluster::locate::SWAP_DM_NAME)
        .map_err(Failure::Layout)
        .and_then(|dev| {
            if let Some(l) = &dev.linear {
                wait_for(Path::new(&l.device))?;
                dm_create(&l.name, &l.to_string())?;
            }
            wait_for(Path::new(&dev.path))?;
            run(command("swapon").arg(&dev.path)).map(|_| dev.path)
        });
    match result {
        Ok(dev) => say(format!("swap on {label} ({dev})")),
        Err(e) => say(format!("warning: no swap: {e}")),
    }
}

/// Says what failed and where to look, then keeps a shell on the console.
/// Process 1 must not exit (the kernel would panic and, with `panic=`,
/// reboot into the same failure), so the shell runs as a child and starts
/// again when it ends.
fn rescue(f: &Failure) -> ! {
    say(format!("error: {f}"));
    say(format!("hint: {}", f.where_to_look()));
    say("this blade gets no root and serves nothing; a shell follows on the console");
    loop {
        match command("sh").status() {
            Ok(_) => say("the shell ended; another starts in 5 s"),
            Err(e) => say(format!("cannot start a shell ({e}); retrying in 5 s")),
        }
        std::thread::sleep(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_generation_is_the_uuid_mke2fs_was_given_and_none_without_ext4() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("meta.img");
        File::create(&img).unwrap().set_len(8 << 20).unwrap();
        let uuid = "0a4eb9ef-d527-5059-903b-b3f7b5ab8e36";
        let out = std::process::Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-U", uuid])
            .arg(&img)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(meta_generation(&img).unwrap().to_string(), uuid);
        // The installer's first write when it makes the volume again.
        File::options()
            .write(true)
            .open(&img)
            .unwrap()
            .write_all_at(&[0u8; 3072], 1024)
            .unwrap();
        assert!(meta_generation(&img).is_err());
        assert!(meta_generation(&d.path().join("absent")).is_err());
    }
}
