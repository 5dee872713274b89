//! The Debian packages vlx's tests and rehearsals run, and installing the
//! missing ones.

use std::process::Command;

use anyhow::{Context, bail};

/// Every package the test suite or the rig starts a program from, with why.
/// One list, so that a fresh machine and CI install the same things.
pub const PACKAGES: &[(&str, &str)] = &[
    ("qemu-system-x86", "the rig boots blades under QEMU"),
    (
        "etcd-server",
        "VC state on the blades: the tiny image carries etcd, live_etcd and the VC tests start real members",
    ),
    (
        "etcd-client",
        "etcdctl: the tiny image's etcd-start rejoins with it; the tests read etcd with a tool vlx did not write",
    ),
    (
        "qemu-utils",
        "qemu-img: a qcow2 overlay per VC VM on its guest's base image",
    ),
    ("ovmf", "UEFI firmware for the rig's blades"),
    ("seabios", "BIOS firmware for the rig's blades"),
    ("ipxe-qemu", "network boot ROMs for QEMU's NICs"),
    (
        "ipxe",
        "iPXE loaders for the PXE boot tree; ipxe.lkrn, the boot ROM of the iSCSI rehearsal's blades",
    ),
    (
        "dnsmasq-base",
        "DHCP, TFTP and DNS on every node; config checks",
    ),
    ("chrony", "time on every node; config checks"),
    ("keepalived", "VRRP for the cluster VIPs; config checks"),
    (
        "busybox-static",
        "the shell and tools of the initramfs and tiny image; httpd in PXE tests; the node root of the follow test; nslookup of VC names",
    ),
    ("dmsetup", "device-mapper snapshots on every node"),
    (
        "mini-httpd",
        "the tiny image's boot HTTP server (a listen backlog of 1,024; busybox httpd's 9 drops clients in a boot storm); bench storm",
    ),
    (
        "open-iscsi",
        "iscsistart in initramfs images for the iscsi transport",
    ),
    ("e2fsprogs", "mke2fs, e2fsck and debugfs for ext4 volumes"),
    (
        "mmdebstrap",
        "Debian root file systems for host and guest images",
    ),
    ("gdisk", "sgdisk -v checks partition tables"),
    ("fdisk", "fdisk checks 4096-byte-sector partition tables"),
    ("dosfstools", "fsck.vfat checks ESPs"),
    ("mtools", "FAT access for syslinux's installer; ESP checks"),
    ("syslinux", "BIOS boot from the ESP (its installer)"),
    (
        "syslinux-common",
        "syslinux modules, ldlinux.c32 and gptmbr.bin",
    ),
    ("syslinux-efi", "syslinux for UEFI"),
    ("pxelinux", "BIOS network boot"),
    ("isolinux", "BIOS boot of the install ISO"),
    ("systemd-boot-efi", "UEFI boot loader on the ESP"),
    ("grub-efi-amd64-bin", "UEFI network loader"),
    ("grub-pc-bin", "BIOS GRUB modules"),
    ("xorriso", "the install ISO and its El Torito check"),
    ("cpio", "cpio -t checks initramfs images"),
    (
        "open-iscsi",
        "iscsistart: the node agent's iSCSI login in the initramfs; iscsiadm and iscsid: \
         vlx-install --san iscsi:// and its test guest, the tiny-iscsi image's recovery",
    ),
    (
        "tgt",
        "an iSCSI target for the node agent's boot, the installer's login tests and the iSCSI rehearsal",
    ),
    ("kmod", "depmod and modinfo for kernel modules"),
    ("vde2", "the rig's private L2 switch"),
    ("iproute2", "network namespaces for the rig"),
    (
        "apt-utils",
        "apt-ftparchive: the offline Debian build test indexes a file mirror made from the package cache",
    ),
    (
        "iputils-arping",
        "arping -U: the VC rig announces the storage address it moves, as keepalived announces a VIP",
    ),
    (
        "openssh-client",
        "ssh-keygen makes per-node host keys; ssh: the rig checks the Debian host's blades over one kept connection each",
    ),
    (
        "nfs-kernel-server",
        "NFS export of the shared volume; exportfs -r judges the VC export lines",
    ),
    (
        "nfs-ganesha",
        "user-space NFSv4 server of VC shares where the kernel has no nfsd (the VC rig, the ganesha test)",
    ),
    (
        "nfs-ganesha-vfs",
        "ganesha's VFS back end: VC shares on the shared volume's ext4",
    ),
    (
        "libnfs-utils",
        "nfs-ls, nfs-cp: a user-space NFSv4 client judges the ganesha exports",
    ),
    (
        "util-linux",
        "mkswap, blkid, losetup, partx; unshare, nsenter, setpriv for live tests",
    ),
    (
        "systemd",
        "systemd-analyze verify checks the Debian image's units",
    ),
    ("zstd", "compressed kernel modules and root tarballs"),
    ("xz-utils", "compressed kernel modules and root tarballs"),
    ("apt", "apt-get download of kernel packages"),
    ("dpkg", "dpkg-deb extracts kernel packages"),
    (
        "tar",
        "GNU tar checks guest tarballs and writes the FIFO archives of the tarball-source tests",
    ),
    ("gzip", "gzip checks initramfs and guest tarballs"),
    (
        "netbase",
        "/etc/services and /etc/protocols for the tiny image",
    ),
    (
        "libtirpc-common",
        "/etc/netconfig for the tiny image's NFS tools",
    ),
    (
        "binutils",
        "readelf checks of copied binaries; strip makes the vlx tools a host image carries",
    ),
    (
        "nftables",
        "nft -c checks VC rulesets; the VC network executor loads them",
    ),
    (
        "iputils-ping",
        "ping between VM namespaces in the VC network tests",
    ),
    (
        "slurmd",
        "slurmd -G checks the slurm.conf of the Slurm VC example",
    ),
    ("procps", "process checks in tests"),
    (
        "kea-admin",
        "perfdhcp plays a row of booting blades in the boot-storm benchmark and its test",
    ),
    (
        "libxml2-utils",
        "xmllint checks the rehearsal's SVG timeline",
    ),
    ("groff", "groff -ww checks the man pages"),
    ("man-db", "man -l renders the man pages"),
    ("zsh", "zsh -n checks the zsh completion scripts"),
    ("fish", "fish -n checks the fish completion scripts"),
    (
        "node-spdx-license-ids",
        "the SPDX license list the SBOM tests check license ids against",
    ),
    (
        "findutils",
        "find lists the files of an image's root in SBOM tests",
    ),
];

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).ends_with("install ok installed")
        })
        .unwrap_or(false)
}

fn is_root() -> bool {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() == 0 }
}

/// Installs what is missing of [`PACKAGES`] when root on Debian; otherwise
/// prints the exact command and fails.
pub fn ensure() -> anyhow::Result<()> {
    if Command::new("dpkg-query")
        .arg("--version")
        .output()
        .is_err()
    {
        bail!(
            "this is not a Debian system (no dpkg-query); install the equivalents of: {}",
            names(PACKAGES.iter().map(|p| p.0))
        );
    }
    let missing: Vec<&str> = PACKAGES
        .iter()
        .map(|p| p.0)
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let line = format!(
        "apt-get install -y --no-install-recommends {}",
        missing.join(" ")
    );
    if !is_root() {
        bail!("missing Debian packages; run as root:\n  apt-get update && {line}");
    }
    eprintln!(
        "xtask: installing {} missing package(s): {}",
        missing.len(),
        missing.join(" ")
    );
    run(Command::new("apt-get")
        .arg("update")
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    let still: Vec<&str> = missing.into_iter().filter(|p| !installed(p)).collect();
    if !still.is_empty() {
        bail!("apt-get did not install: {}", still.join(" "));
    }
    Ok(())
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    it.collect::<Vec<_>>().join(" ")
}

pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}
