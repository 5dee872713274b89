//! The initramfs every blade boots: `/init` is the node agent `vlx-node`,
//! with busybox and its applets, `dmsetup`, the libraries all of them load,
//! the kernel modules the SAN transports and NICs need (with `modules.dep`)
//! and `/etc/vlx/modules.load`, the order the agent loads them in. Written
//! as a gzip-compressed cpio newc archive by [`crate::formats::cpio`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result, io};
use crate::formats::cpio;
use crate::image::kernel::{Kernel, Module, ModuleIndex};
use crate::image::libs::{Resolver, find_program};
use crate::image::tree::{Content, Entry, Tree};
use crate::profile::Transport;
use crate::tool;

/// Modules every initramfs carries: the `disk` transport on virtio (the
/// rig, and virtual machines), device-mapper snapshots, and the root's file
/// system when it is modular. virtio_net pulls failover/net_failover in.
pub const DISK_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "dm_mod",
    "dm_snapshot",
    "ext4",
];

/// Modules the `iscsi` transport adds (libiscsi and scsi_transport_iscsi
/// come from modules.dep; sd_mod gives the LUN its block device;
/// dm_multipath with its round-robin selector joins several portals' paths
/// to the LUN into one device, which the node agent builds when it sees
/// them: agent/src/multipath.rs).
pub const ISCSI_MODULES: &[&str] = &["iscsi_tcp", "sd_mod", "dm_multipath", "dm_round_robin"];

/// Applets the node agent and a rescue shell rely on; busybox must have
/// them all.
pub const REQUIRED_APPLETS: &[&str] = &[
    "sh",
    "mount",
    "umount",
    "switch_root",
    "modprobe",
    "insmod",
    "ip",
    "udhcpc",
    "cat",
    "ls",
    "mkdir",
    "sleep",
    "dmesg",
    "poweroff",
    "reboot",
];

/// Where the load order for the agent lands (an absolute path in the
/// initramfs; the tree's paths are relative to its root).
pub use contracts::names::initramfs::MODULES_LOAD;

/// The programs of the initramfs, on the build machine.
#[derive(Debug, Clone)]
pub struct Programs {
    pub agent: PathBuf,
    pub busybox: PathBuf,
    pub dmsetup: PathBuf,
    /// open-iscsi's `iscsistart`, for the `iscsi` transport.
    pub iscsistart: Option<PathBuf>,
}

impl Programs {
    /// Finds busybox, dmsetup (and iscsistart when `transports` has iSCSI)
    /// on the build machine; `agent` must exist.
    pub fn find(agent: &Path, transports: &[Transport]) -> Result<Programs> {
        if !agent.is_file() {
            return Err(Error::Other(format!(
                "the node agent {} does not exist: build vlx-node or give its path",
                agent.display()
            )));
        }
        Ok(Programs {
            agent: agent.to_owned(),
            busybox: find_program("busybox")?,
            dmsetup: find_program("dmsetup")?,
            iscsistart: if transports.contains(&Transport::Iscsi) {
                Some(find_program("iscsistart")?)
            } else {
                None
            },
        })
    }
}

/// Busybox's applets as paths (`bin/sh`, `sbin/init`, ...), from
/// `busybox --list-full` of the very binary that is shipped.
pub fn applets(busybox: &Path) -> Result<Vec<PathBuf>> {
    let out = tool::stdout(
        Command::new(busybox).arg("--list-full"),
        "listing busybox applets",
    )?;
    let list: Vec<PathBuf> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(PathBuf::from)
        .collect();
    for need in REQUIRED_APPLETS {
        if !list
            .iter()
            .any(|p| p.file_name().is_some_and(|n| n == *need))
        {
            return Err(Error::Other(format!(
                "{}: busybox has no `{need}` applet (install busybox-static)",
                busybox.display()
            )));
        }
    }
    Ok(list)
}

/// The modules the profile's transports and list need, in load order.
pub fn modules(
    index: &ModuleIndex,
    transports: &[Transport],
    extra: &[String],
) -> Result<Vec<Module>> {
    let mut wanted: Vec<(String, String)> = DISK_MODULES
        .iter()
        .map(|m| ((*m).to_owned(), "the disk transport and virtio".to_owned()))
        .collect();
    if transports.contains(&Transport::Iscsi) {
        wanted.extend(
            ISCSI_MODULES
                .iter()
                .map(|m| ((*m).to_owned(), "the iscsi transport".to_owned())),
        );
    }
    wanted.extend(
        extra
            .iter()
            .map(|m| (m.clone(), "initramfs.modules of the profile".to_owned())),
    );
    index.closure(&wanted)
}

/// Plans the initramfs tree.
pub fn plan(
    programs: &Programs,
    kernel: &Kernel,
    index: &ModuleIndex,
    modules: &[Module],
    resolver: &Resolver,
) -> Result<Tree> {
    let mut t = Tree::new();
    for d in ["dev", "proc", "sys", "run", "tmp", "newroot", "etc/vlx"] {
        t.mkdir_p(Path::new(d))?;
    }
    t.insert(
        Path::new("init"),
        Entry::file(Content::Host(programs.agent.clone()), 0o755),
    )?;
    t.insert(
        Path::new("bin/busybox"),
        Entry::file(Content::Host(programs.busybox.clone()), 0o755),
    )?;
    for applet in applets(&programs.busybox)? {
        if applet.file_name().is_some_and(|n| n == "busybox") || t.get(&applet).is_some() {
            continue;
        }
        t.insert(&applet, Entry::symlink("/bin/busybox"))?;
    }
    t.insert(
        Path::new("sbin/dmsetup"),
        Entry::file(Content::Host(programs.dmsetup.clone()), 0o755),
    )?;
    let mut binaries = vec![
        programs.agent.clone(),
        programs.busybox.clone(),
        programs.dmsetup.clone(),
    ];
    if let Some(i) = &programs.iscsistart {
        t.insert(
            Path::new("sbin/iscsistart"),
            Entry::file(Content::Host(i.clone()), 0o755),
        )?;
        binaries.push(i.clone());
    }
    for lib in resolver.closure(&binaries)? {
        t.add_host_path(&lib)?;
    }

    add_modules(&mut t, kernel, index, modules)?;
    Ok(t)
}

/// Adds `modules` (in load order) to `t`: each decompressed at its
/// `modules.dep` path under `lib/modules/<release>/`, a `modules.dep`
/// restricted to them, the kernel's `modules.builtin`, and
/// [`MODULES_LOAD`] naming them in order.
pub fn add_modules(
    t: &mut Tree,
    kernel: &Kernel,
    index: &ModuleIndex,
    modules: &[Module],
) -> Result<()> {
    let base = PathBuf::from("lib/modules").join(&kernel.release);
    let by_name: BTreeMap<&str, &Module> = modules.iter().map(|m| (m.name.as_str(), m)).collect();
    let mut dep = String::new();
    for m in modules {
        let bytes = crate::image::kernel::module_bytes(kernel, m)?;
        t.insert(
            &base.join(m.plain_path()),
            Entry::file(Content::Bytes(bytes), 0o644),
        )?;
        let deps: Vec<String> = index
            .dependencies(&m.name)
            .iter()
            .filter_map(|d| by_name.get(d.as_str()))
            .map(|d| d.plain_path())
            .collect();
        dep.push_str(&format!("{}:", m.plain_path()));
        for d in deps {
            dep.push(' ');
            dep.push_str(&d);
        }
        dep.push('\n');
    }
    t.insert(
        &base.join("modules.dep"),
        Entry::file(Content::Bytes(dep.into_bytes()), 0o644),
    )?;
    let builtin = kernel.modules.join("modules.builtin");
    if builtin.is_file() {
        t.insert(
            &base.join("modules.builtin"),
            Entry::file(Content::Host(builtin), 0o644),
        )?;
    }
    let order: String = modules.iter().map(|m| format!("{}\n", m.name)).collect();
    t.insert(
        Path::new(MODULES_LOAD.trim_start_matches('/')),
        Entry::file(Content::Bytes(order.into_bytes()), 0o644),
    )?;
    Ok(())
}

/// Writes `tree` as gzip-compressed cpio newc to `path`.
pub fn write(tree: &Tree, path: &Path, mtime: u32) -> Result<()> {
    let f = File::create(path).map_err(io(path))?;
    // Level 9: the archive is written once and read by every blade at
    // every boot, over TFTP on the slow path.
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(BufWriter::new(f), flate2::Compression::best());
    cpio::write(tree, &mut gz, mtime)?;
    let w = gz.finish().map_err(io(path))?;
    let f = w.into_inner().map_err(|e| io(path)(e.into_error()))?;
    f.sync_all().map_err(io(path))?;
    Ok(())
}
