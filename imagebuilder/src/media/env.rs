//! The installer environment: the initramfs install media boot. Its
//! `/init` (a short busybox script) mounts the kernel's file systems and
//! runs `vlx-install media-env`, which finds the payload, checks it, asks
//! (or, unattended, does not) and installs with the installer's own
//! `apply`. The host image's initramfs is the node agent's; this one is
//! the installer's.
//!
//! It carries `vlx-install` and every program the install runs (mke2fs,
//! debugfs, mkswap, wipefs, ssh-keygen, syslinux with the mtools it calls,
//! and e2fsck, blkid, dmsetup for an administrator at the shell), with
//! their libraries; the boot loaders the install lays on the SAN (bootfs's
//! assets, at the paths bootfs looks for them); busybox; the kernel modules to see disks (those the
//! kernel has of [`DISK_MODULES`]) and to read the payload ([`REQUIRED`]);
//! and an iSCSI initiator for `vlx.target=iscsi://...`:
//! open-iscsi's `iscsid` and `iscsiadm` with their libraries and
//! configuration, and the modules of [`ISCSI_MODULES`] and
//! [`NIC_MODULES`] the kernel has.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::image::kernel::{Kernel, Module, ModuleIndex};
use crate::image::libs::{Resolver, find_program};
use crate::image::tree::{Content, Entry, Tree};

/// Programs `vlx-install apply` and bootfs run (see installer/src/fs.rs,
/// device.rs, apply.rs, render/keys.rs and bootfs/src/esp.rs), then tools
/// for the rescue shell. syslinux's installer runs mcopy, mattrib and
/// mmove through the shell.
pub const PROGRAMS: &[&str] = &[
    "mke2fs",
    "debugfs",
    "mkswap",
    "wipefs",
    "ssh-keygen",
    "syslinux",
    "mcopy",
    "mattrib",
    "mmove",
    "e2fsck",
    "blkid",
    "dmsetup",
];

/// Modules without which the environment cannot work: the payload is
/// ISO 9660 (on the USB image's payload partition and on the ISO).
pub const REQUIRED: &[&str] = &["isofs"];

/// Disk, CD and USB drivers, taken as far as the kernel has them (the
/// Debian cloud kernel, for one, has no USB storage and no AHCI). Listed
/// order is load order; dependencies come first on their own.
pub const DISK_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "virtio_scsi",
    "nvme",
    "ahci",
    "ata_piix",
    "ata_generic",
    "sd_mod",
    "sr_mod",
    "xhci_pci",
    "ehci_pci",
    "usb_storage",
    "uas",
    "vfat",
    "nls_cp437",
    "nls_iso8859_1",
    "dm_mod",
    "dm_snapshot",
];

/// The iSCSI initiator's modules (with their closure: libiscsi,
/// scsi_transport_iscsi), taken as far as the kernel has them; `sd_mod`
/// gives the LUN its disk.
pub const ISCSI_MODULES: &[&str] = &["iscsi_tcp", "sd_mod"];

/// NIC drivers for the storage network, taken as far as the kernel has
/// them (the cloud kernel has only virtio_net). Others go in the media
/// profile's `media.modules`.
pub const NIC_MODULES: &[&str] = &["virtio_net", "e1000", "e1000e", "igb", "ixgbe"];

/// open-iscsi's programs: the daemon that holds sessions and the tool that
/// makes them (`vlx-install`'s iSCSI login runs `iscsiadm`).
pub const ISCSI_PROGRAMS: &[&str] = &["iscsid", "iscsiadm"];

/// The initiator name the environment carries; `vlx-install media-env`
/// writes one of the storage NIC's own before it starts `iscsid`.
pub const INITIATOR_NAME: &str = "iqn.2007-01.org.vlx:installer";

/// What `/init` runs. Busybox's shell stays as process 1 so that a failed
/// install leaves a shell on the console rather than a kernel panic.
pub const INIT: &str = r#"#!/bin/sh
# vlx installer environment. The install itself is `vlx-install media-env`;
# this script only mounts what the kernel offers and keeps a shell after it.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t devtmpfs -o mode=0755 devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc -o nosuid,noexec,nodev proc /proc
mount -t sysfs -o nosuid,noexec,nodev sysfs /sys
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
vlx-install media-env
echo "vlx-install: the installer stopped; a shell follows (poweroff -f powers off)"
while true; do
    setsid cttyhack sh || sh
done
"#;

/// glibc's iconv converters on Debian amd64.
pub const GCONV: &str = "/usr/lib/x86_64-linux-gnu/gconv";

/// Where the installer binary lands.
pub const INSTALLER: &str = "usr/sbin/vlx-install";

/// The modules of the environment, in load order: [`REQUIRED`], those of
/// [`DISK_MODULES`], [`ISCSI_MODULES`] and [`NIC_MODULES`] the kernel
/// has, and `extra` (which must exist).
/// Returns them and the names skipped.
pub fn modules(index: &ModuleIndex, extra: &[String]) -> Result<(Vec<Module>, Vec<String>)> {
    let mut wanted: Vec<(String, String)> = REQUIRED
        .iter()
        .map(|m| {
            (
                (*m).to_owned(),
                "the installer environment (payload)".to_owned(),
            )
        })
        .collect();
    let mut skipped = Vec::new();
    for (list, why) in [
        (DISK_MODULES, "the installer environment (disks)"),
        (ISCSI_MODULES, "the installer environment (iSCSI)"),
        (NIC_MODULES, "the installer environment (storage NIC)"),
    ] {
        for m in list {
            if index.has(m) {
                wanted.push(((*m).to_owned(), why.to_owned()));
            } else if !skipped.iter().any(|s| s == m) {
                skipped.push((*m).to_owned());
            }
        }
    }
    wanted.extend(
        extra
            .iter()
            .map(|m| (m.clone(), "media.modules of the media profile".to_owned())),
    );
    Ok((index.closure(&wanted)?, skipped))
}

/// Plans the environment's tree.
pub fn plan(
    installer: &Path,
    kernel: &Kernel,
    index: &ModuleIndex,
    modules: &[Module],
    resolver: &Resolver,
) -> Result<Tree> {
    if !installer.is_file() {
        return Err(Error::MissingBinary {
            name: format!("vlx-install {}", installer.display()),
            searched: installer.display().to_string(),
        });
    }
    let mut t = Tree::new();
    // The build machine's merged-/usr links, so that every program and
    // library sits where its loader and its callers look.
    for top in ["bin", "sbin", "lib", "lib64"] {
        let host = Path::new("/").join(top);
        if let Ok(target) = std::fs::read_link(&host) {
            t.insert(Path::new(top), Entry::symlink(target))?;
        }
    }
    for (d, mode) in [
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("run", 0o755),
        ("tmp", 0o1777),
        ("root", 0o700),
        ("etc/vlx", 0o755),
        ("etc/iscsi", 0o755),
        ("var/lib/iscsi", 0o700),
        ("etc/iscsi/nodes", 0o700),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
    ] {
        let real = t.mkdir_p(Path::new(d))?;
        t.insert(&real, Entry::dir(mode))?;
    }
    t.insert(
        Path::new("init"),
        Entry::file(Content::Bytes(INIT.as_bytes().to_vec()), 0o755),
    )?;
    t.insert(
        Path::new(INSTALLER),
        Entry::file(Content::Host(installer.to_owned()), 0o755),
    )?;
    let busybox = find_program("busybox")?;
    t.add_host_path(&busybox)?;
    let mut elves = vec![installer.to_owned(), busybox.clone()];
    let mut seen = BTreeSet::new();
    for name in PROGRAMS.iter().chain(ISCSI_PROGRAMS) {
        let p = find_program(name)?;
        t.add_host_path(&p)?;
        // mcopy and friends are links to one mtools binary.
        let file = std::fs::canonicalize(&p).map_err(crate::error::io(&p))?;
        if seen.insert(file.clone()) && crate::formats::elf::is_elf(&file)? {
            elves.push(file);
        }
    }
    for lib in resolver.closure(&elves)? {
        t.add_host_path(&lib)?;
    }
    for applet in crate::image::initramfs::applets(&busybox)? {
        if t.get(&applet).is_none() {
            t.insert(&applet, Entry::symlink(&busybox))?;
        }
    }
    // The boot loaders the install lays on the SAN's ESP and PXE tree,
    // where bootfs looks for them.
    let a = bootfs::Assets::default();
    for asset in [
        &a.systemd_boot,
        &a.gptmbr,
        &a.pxelinux,
        &a.ldlinux_c32,
        &a.undionly,
        &a.snponly,
    ] {
        a.source(asset)
            .map_err(|e| Error::Other(format!("boot loaders for the installer: {e}")))?;
        t.add_host_path(asset)?;
    }
    // syslinux's installer runs mtools, which converts FAT names through
    // code page 850 with iconv: glibc loads that converter at run time.
    let gconv = Path::new(GCONV);
    for f in ["gconv-modules", "gconv-modules.cache", "IBM850.so"] {
        let p = gconv.join(f);
        if !p.is_file() {
            return Err(Error::Other(format!(
                "{}: missing (glibc's code page converters, Debian package libc6); mtools needs it",
                p.display()
            )));
        }
        t.add_host_path(&p)?;
    }
    if gconv.join("gconv-modules.d").is_dir() {
        t.add_host_tree(&gconv.join("gconv-modules.d"))?;
    }
    // mke2fs reads its defaults here; the same as the build machine's, so
    // that volumes made by the media match those made elsewhere.
    let conf = PathBuf::from("/etc/mke2fs.conf");
    if conf.is_file() {
        t.add_host_path(&conf)?;
    }
    // ssh-keygen looks the user up; glibc reads these without NSS modules.
    t.insert(
        Path::new("etc/passwd"),
        Entry::file(
            Content::Bytes(b"root:x:0:0:root:/root:/bin/sh\n".to_vec()),
            0o644,
        ),
    )?;
    t.insert(
        Path::new("etc/group"),
        Entry::file(Content::Bytes(b"root:x:0:\n".to_vec()), 0o644),
    )?;
    iscsi_config(&mut t)?;
    crate::image::initramfs::add_modules(&mut t, kernel, index, modules)?;
    Ok(t)
}

/// open-iscsi's configuration: `/etc/iscsi/initiatorname.iscsi`
/// ([`INITIATOR_NAME`]) and an `iscsid.conf` that starts no session by
/// itself (the installer logs in to the one target it names, and out
/// again). The programs ([`ISCSI_PROGRAMS`]) and their libraries go in
/// with the others, the modules are [`modules`]'s.
fn iscsi_config(t: &mut Tree) -> Result<()> {
    for (path, text) in [
        (
            "etc/iscsi/initiatorname.iscsi",
            format!("InitiatorName={INITIATOR_NAME}\n"),
        ),
        (
            "etc/iscsi/iscsid.conf",
            "node.startup = manual\n".to_owned(),
        ),
    ] {
        t.insert(
            Path::new(path),
            Entry::file(Content::Bytes(text.into_bytes()), 0o600),
        )?;
    }
    Ok(())
}
