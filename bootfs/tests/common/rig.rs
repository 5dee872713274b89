//! Rig helpers: the guest kernel, a marker-printing initramfs, QEMU.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use imagebuilder::image::tree::{Content, Entry, Tree};

/// What the test initramfs prints before it powers off.
pub const MARKER: &str = "BOOTFS-TEST-MARKER";
/// The machine is shared and QEMU runs under TCG: be generous.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(420);

/// The guests' kernel from the shared cache (`imagebuilder::image::kernel`),
/// fetched into it when it holds none.
pub fn kernel() -> PathBuf {
    let package = imagebuilder::image::kernel::DEFAULT_PACKAGE;
    imagebuilder::image::kernel::cached_or_fetch(package)
        .unwrap_or_else(|e| panic!("the kernel of {package}: {e}"))
        .vmlinuz
}

/// A tiny initramfs, written by the image builder's initramfs writer:
/// busybox-static as `/init`'s shell; it prints the marker and the kernel
/// command line on the console, then powers off.
pub fn initramfs(dir: &Path) -> PathBuf {
    let init = format!(
        "#!/bin/busybox sh\n\
         /bin/busybox mount -t proc proc /proc\n\
         /bin/busybox mount -t devtmpfs dev /dev\n\
         exec >/dev/console 2>&1\n\
         echo \"{MARKER} cmdline: $(/bin/busybox cat /proc/cmdline)\"\n\
         /bin/busybox poweroff -f\n"
    );
    let mut tree = Tree::new();
    for d in ["proc", "dev", "sys"] {
        tree.mkdir_p(Path::new(d)).unwrap();
    }
    tree.insert(
        Path::new("bin/busybox"),
        Entry::file(Content::Host("/bin/busybox".into()), 0o755),
    )
    .unwrap();
    tree.insert(
        Path::new("init"),
        Entry::file(Content::Bytes(init.into_bytes()), 0o755),
    )
    .unwrap();
    let out = dir.join("initramfs.img");
    let mtime = u32::try_from(super::EPOCH.0).unwrap();
    imagebuilder::image::initramfs::write(&tree, &out, mtime).unwrap();
    out
}

/// A QEMU process that is killed when dropped.
pub struct Qemu {
    child: Child,
    log: PathBuf,
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn ovmf_args(dir: &Path) -> Vec<String> {
    let vars = dir.join("OVMF_VARS.fd");
    std::fs::copy("/usr/share/OVMF/OVMF_VARS.fd", &vars).unwrap();
    vec![
        "-drive".into(),
        "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd".into(),
        "-drive".into(),
        format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
    ]
}

/// Starts `qemu-system-x86_64 -accel tcg` with the serial console logged
/// to a file in `dir`.
pub fn qemu(dir: &Path, args: &[String]) -> Qemu {
    start(dir, Command::new("qemu-system-x86_64"), args)
}

/// [`qemu`] inside network namespace `ns`.
pub fn qemu_in_netns(dir: &Path, ns: &str, args: &[String]) -> Qemu {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, "qemu-system-x86_64"]);
    start(dir, cmd, args)
}

fn start(dir: &Path, mut cmd: Command, args: &[String]) -> Qemu {
    let log = dir.join("serial.log");
    let child = cmd
        .args([
            "-accel",
            "tcg",
            "-m",
            "512",
            "-display",
            "none",
            "-no-reboot",
        ])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting qemu-system-x86_64");
    Qemu { child, log }
}

impl Qemu {
    /// Waits for the marker line on the console; returns it. Panics with
    /// the console's tail on a timeout or when QEMU exits without it.
    pub fn wait_marker(mut self) -> String {
        let start = Instant::now();
        loop {
            // Whether QEMU is gone before reading, so that a marker printed
            // just before power-off is never missed.
            let exited = self.child.try_wait().unwrap();
            let text = std::fs::read(&self.log)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            if let Some(line) = text
                .lines()
                .find(|l| l.contains(MARKER) && l.contains("cmdline:"))
            {
                return line.to_owned();
            }
            if exited.is_some() || start.elapsed() > BOOT_TIMEOUT {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                let tail: String = text
                    .chars()
                    .rev()
                    .take(3000)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                panic!(
                    "no marker on the console ({exited:?} after {:?}); qemu stderr: {err}\nconsole tail:\n{tail}",
                    start.elapsed()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}
