//! Rig helpers: the guest kernel, a marker-printing initramfs, QEMU.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::run;

/// What the test initramfs prints before it powers off.
pub const MARKER: &str = "BOOTFS-TEST-MARKER";
/// The machine is shared and QEMU runs under TCG: be generous.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(420);

fn cache() -> PathBuf {
    std::env::var_os("VLX_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/vlx")
        })
}

fn find_kernel(kernels: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(kernels)
        .ok()?
        .flatten()
        .filter(|d| d.file_name().to_string_lossy().starts_with("linux-image-"))
        .flat_map(|d| {
            std::fs::read_dir(d.path().join("boot"))
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|f| f.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .collect();
    found.sort();
    found.pop()
}

/// The Debian cloud kernel from the shared cache
/// (`$VLX_CACHE/kernels/<package>_<version>/boot/vmlinuz-<release>`),
/// filled the way the image builder fills it when it is empty.
pub fn kernel() -> PathBuf {
    let kernels = cache().join("kernels");
    if let Some(k) = find_kernel(&kernels) {
        return k;
    }
    let deps =
        super::stdout(Command::new("apt-cache").args(["depends", "linux-image-cloud-amd64"]));
    let pkg = deps
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: "))
        .expect("apt-cache names the cloud kernel package (run apt-get update)")
        .trim()
        .to_owned();
    // Download and extract in a folder of our own, then rename: tests that
    // run at once never see half a kernel.
    std::fs::create_dir_all(&kernels).unwrap();
    let tmp = tempfile::Builder::new()
        .prefix(".fill")
        .tempdir_in(&kernels)
        .unwrap();
    let dl = tmp.path().join("dl");
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&dl).unwrap();
    run(Command::new("apt-get")
        .args(["download", &pkg])
        .current_dir(&dl));
    let deb = std::fs::read_dir(&dl)
        .unwrap()
        .flatten()
        .map(|d| d.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("the downloaded package");
    let version = super::stdout(
        Command::new("dpkg-deb")
            .args(["-f"])
            .arg(&deb)
            .arg("Version"),
    );
    let release = pkg.trim_start_matches("linux-image-").to_owned();
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    run(Command::new("depmod").arg("-b").arg(&root).arg(&release));
    let dest = kernels.join(format!("{pkg}_{}", version.trim()));
    if let Err(e) = std::fs::rename(&root, &dest) {
        assert!(
            dest.is_dir(),
            "moving the kernel to {}: {e}",
            dest.display()
        );
    }
    find_kernel(&kernels).expect("the kernel just extracted")
}

/// A tiny initramfs: busybox-static as `/init`'s shell; it prints the
/// marker and the kernel command line on the console, then powers off.
pub fn initramfs(dir: &Path) -> PathBuf {
    let root = dir.join("initramfs-root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    for d in ["proc", "dev", "sys"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    let init = format!(
        "#!/bin/busybox sh\n\
         /bin/busybox mount -t proc proc /proc\n\
         /bin/busybox mount -t devtmpfs dev /dev\n\
         exec >/dev/console 2>&1\n\
         echo \"{MARKER} cmdline: $(/bin/busybox cat /proc/cmdline)\"\n\
         /bin/busybox poweroff -f\n"
    );
    std::fs::write(root.join("init"), init).unwrap();
    run(Command::new("chmod").arg("0755").arg(root.join("init")));
    let out = dir.join("initramfs.img");
    run(Command::new("sh").arg("-c").arg(format!(
        "cd '{}' && find . | LC_ALL=C sort | cpio --quiet -o -H newc --reproducible > '{}'",
        root.display(),
        out.display()
    )));
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
