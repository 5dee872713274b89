//! Small guests to test the rig itself: the Debian cloud kernel from the
//! shared cache and busybox initramfs images that play a blade's part
//! (print the contract's ready lines, run a shell on ttyS1, serve DHCP and
//! HTTP for a network boot).
//!
//! The kernel cache, the module closure and the initramfs writer are the
//! image builder's (`imagebuilder::image::kernel`, `imagebuilder::image::initramfs`).

use std::path::{Path, PathBuf};
use std::process::Command;

use imagebuilder::image::kernel::{self as kernels, ModuleIndex};
use imagebuilder::image::tree::{Content, Entry, Tree};

pub use imagebuilder::image::kernel::Kernel;

#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    #[error("{what}: {path}: {source}")]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed: {detail}")]
    Tool { command: String, detail: String },
    #[error(transparent)]
    Image(#[from] imagebuilder::Error),
}

pub(crate) fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> TestkitError {
    let what = what.to_string();
    let path = path.to_owned();
    move |source| TestkitError::Io { what, path, source }
}

/// Runs a tool and fails with its stderr.
pub(crate) fn tool(cmd: &mut Command) -> Result<Vec<u8>, TestkitError> {
    let line = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| TestkitError::Tool {
        command: line.clone(),
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(TestkitError::Tool {
            command: line,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(out.stdout)
}

/// The guests' kernel from the shared cache, fetched into it when it holds
/// none.
pub fn kernel() -> Result<Kernel, TestkitError> {
    Ok(kernels::cached_or_fetch(kernels::DEFAULT_PACKAGE)?)
}

/// The guests' kernel when the cache holds one, without fetching.
pub fn cached_kernel() -> Option<Kernel> {
    kernels::cached(kernels::DEFAULT_PACKAGE)
}

/// The kernel modules a test blade loads: virtio PCI, its NIC and disk.
pub const MODULES: &[&str] = &["virtio_pci", "virtio_net", "virtio_blk"];

/// The test blade's `/init`. Kernel parameters it reads:
/// - `rig.name=NAME`: hostname, and the name in the ready lines;
/// - `rig.ip=A.B.C.D/NN`: a static address on eth0;
/// - `rig.serve=1`: serve DHCP (`udhcpd`) and HTTP (`httpd`) on eth0 so that
///   a blade can network-boot this same kernel and initramfs from it;
/// - `rig.silent=1`: print no ready lines (for tests of timeouts).
pub const INIT: &str = include_str!("init.sh");

/// A busybox initramfs for a test blade: [`INIT`] as `/init`, busybox, the
/// [`MODULES`] with their dependencies (in `lib/modules/`, their load order
/// in `lib/modules/order`), and `extra` files (path in the image,
/// contents). Written gzip-compressed to `out`.
pub fn initramfs(kernel: &Kernel, extra: &[(&str, &[u8])], out: &Path) -> Result<(), TestkitError> {
    let mut t = Tree::new();
    for d in [
        "bin", "dev", "proc", "sys", "etc", "tmp", "root", "srv", "var/run",
    ] {
        t.mkdir_p(Path::new(d))?;
    }
    let file = |bytes: Vec<u8>, mode| Entry::file(Content::Bytes(bytes), mode);
    t.insert(
        Path::new("bin/busybox"),
        Entry::file(Content::Host("/bin/busybox".into()), 0o755),
    )?;
    t.insert(Path::new("init"), file(INIT.into(), 0o755))?;
    let wanted: Vec<(String, String)> = MODULES
        .iter()
        .map(|m| ((*m).to_owned(), "the rig's test blades".to_owned()))
        .collect();
    let mut order = String::new();
    for m in ModuleIndex::load(kernel)?.closure(&wanted)? {
        let plain = m.plain_path();
        let base = plain.rsplit('/').next().unwrap_or(&plain).to_owned();
        let bytes = kernels::module_bytes(kernel, &m)?;
        t.insert(&Path::new("lib/modules").join(&base), file(bytes, 0o644))?;
        order.push_str(&base);
        order.push('\n');
    }
    t.insert(Path::new("lib/modules/order"), file(order.into(), 0o644))?;
    for (path, data) in extra {
        t.insert(Path::new(path), file(data.to_vec(), 0o644))?;
    }
    Ok(imagebuilder::image::initramfs::write(&t, out, 0)?)
}

/// A bootable disk image: one FAT file system without a partition table
/// (a "superfloppy", which SeaBIOS boots through its boot sector), with
/// syslinux, the kernel, the initramfs and `append` as command line.
pub fn syslinux_disk(
    kernel: &Path,
    initrd: &Path,
    append: &str,
    out: &Path,
    size_mib: u64,
) -> Result<(), TestkitError> {
    let _ = std::fs::remove_file(out);
    tool(
        Command::new("mkfs.vfat")
            .args(["-C", "-n", "RIGTEST"])
            .arg(out)
            .arg((size_mib * 1024).to_string()),
    )?;
    tool(Command::new("syslinux").arg("--install").arg(out))?;
    let cfg = format!(
        "DEFAULT linux\nTIMEOUT 0\nPROMPT 0\nSERIAL 0 115200\nLABEL linux\n  KERNEL vmlinuz\n  INITRD initrd.img\n  APPEND {append}\n"
    );
    let cfg_path = out.with_extension("cfg");
    std::fs::write(&cfg_path, cfg).map_err(io("writing syslinux.cfg", &cfg_path))?;
    for (src, name) in [
        (kernel, "vmlinuz"),
        (initrd, "initrd.img"),
        (cfg_path.as_path(), "syslinux.cfg"),
    ] {
        tool(
            Command::new("mcopy")
                .arg("-i")
                .arg(out)
                .arg(src)
                .arg(format!("::{name}")),
        )?;
    }
    let _ = std::fs::remove_file(&cfg_path);
    Ok(())
}

/// A test blade's machine: `name` with `mac` on the segment `switch`,
/// sockets in `dir/<name>/`, the given disks and boot.
pub fn machine(
    dir: &Path,
    name: &str,
    mac: cluster::MacAddr,
    switch: &Path,
    disks: Vec<crate::qemu::Disk>,
    boot: crate::qemu::BootFrom,
    accel: crate::qemu::Accel,
) -> crate::qemu::Machine {
    crate::qemu::Machine {
        name: name.to_string(),
        accel,
        firmware: crate::qemu::Firmware::Bios,
        uefi: None,
        memory_mib: 256,
        cpus: 1,
        mac,
        switch: switch.to_owned(),
        disks,
        storage: None,
        storage2: None,
        boot,
        sockets: crate::qemu::Sockets::in_dir(&dir.join(name)),
    }
}

/// The command line of a test blade booted by the rig: its console on
/// ttyS0 and the [`INIT`] parameters.
pub fn append(name: &str, ip: Option<&str>, extra: &str) -> String {
    let mut s = format!("console=ttyS0,115200 rig.name={name}");
    if let Some(ip) = ip {
        s.push_str(&format!(" rig.ip={ip}"));
    }
    if !extra.is_empty() {
        s.push(' ');
        s.push_str(extra);
    }
    s
}
