//! Rig tier: install media boot under QEMU (TCG): the ISO as a CD under
//! SeaBIOS (BIOS), guided over the serial console, installs the demo
//! cluster onto a blank SAN, which `vlx-install verify` then accepts; a USB
//! image with one flipped payload byte stops the install under OVMF before
//! the SAN is touched. The unattended USB install under UEFI, followed by
//! the cluster's boot, is `vlx-rig rehearse --from-media`'s test
//! (qemu-tests/tests/rig_rehearsal.rs). Media for metal (Debian's full
//! kernel, the modules of isos/vlx-installer-metal.toml) boot from a USB
//! stick under OVMF on a q35 machine, see an NVMe SAN and load every module
//! the profile names.
//!
//! Needs root, QEMU, OVMF and `cargo build --workspace --bins` (the media
//! carry the workspace's vlx-install).

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::media::{self, extract, partition};
use common::{agent, run, tiny_profile_text, workspace};

/// Generous: TCG on a loaded two-core machine; the payload is hashed,
/// the origin written and read back, all emulated.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(1200);

/// QEMU guests of this file run one at a time (the machine has 2 cores).
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A guest whose serial console the test reads and types into.
struct Vm {
    child: Child,
    stdin: ChildStdin,
    console: Arc<Mutex<String>>,
}

impl Vm {
    fn start(args: &[String], log: &Path) -> Vm {
        let mut child = Command::new("qemu-system-x86_64")
            .args(["-accel", "tcg", "-m", "1024", "-smp", "1"])
            .args(["-nographic", "-no-reboot", "-net", "none"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting qemu-system-x86_64");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let console = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&console);
        let mut log = std::fs::File::create(log).unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let _ = log.write_all(&buf[..n]);
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Vm {
            child,
            stdin,
            console,
        }
    }

    fn console(&self) -> String {
        self.console.lock().unwrap().replace('\r', "")
    }

    /// Waits for `needle`; panics with the console when it does not come.
    fn wait_for(&mut self, needle: &str, timeout: Duration) {
        self.wait_for_unless(needle, None, timeout)
    }

    /// Waits for `needle`, as [`Vm::wait_for`]; a `stop` line seen before
    /// it ends the wait at once (it will not come).
    fn wait_for_unless(&mut self, needle: &str, stop: Option<&str>, timeout: Duration) {
        let start = Instant::now();
        loop {
            let console = self.console();
            if console.contains(needle) {
                return;
            }
            if let Some(stop) = stop.filter(|s| console.contains(s)) {
                std::thread::sleep(Duration::from_secs(1));
                panic!("{stop:?} before {needle:?}:\n{}", self.console());
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(300));
                if self.console().contains(needle) {
                    return;
                }
                panic!(
                    "the guest ended ({st}) before {needle:?}:\n{}",
                    self.console()
                );
            }
            assert!(
                start.elapsed() < timeout,
                "no {needle:?} within {} s:\n{}",
                timeout.as_secs(),
                self.console()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn type_line(&mut self, line: &str) {
        self.stdin.write_all(line.as_bytes()).unwrap();
        self.stdin.write_all(b"\n").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Waits for the guest to power off.
    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(300));
                return st;
            }
            assert!(
                start.elapsed() < timeout,
                "the guest did not power off within {} s:\n{}",
                timeout.as_secs(),
                self.console()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn ovmf(dir: &Path) -> Vec<String> {
    let vars = dir.join("OVMF_VARS.fd");
    std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars).unwrap();
    vec![
        "-drive".into(),
        "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
        "-drive".into(),
        format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
    ]
}

/// The USB image as the first boot disk (a virtio disk: the cloud kernel
/// has no USB storage driver), with the serial number `MEDIA`.
fn usb(img: &Path) -> Vec<String> {
    vec![
        "-drive".into(),
        format!(
            "file={},format=raw,if=none,id=media,readonly=on",
            img.display()
        ),
        "-device".into(),
        "virtio-blk-pci,drive=media,serial=MEDIA,bootindex=0".into(),
    ]
}

/// A blank SAN of the demo profile's size, as a virtio disk with the
/// serial number `SAN0`.
fn san(dir: &Path) -> (PathBuf, Vec<String>) {
    let path = dir.join("san.img");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(8 << 30)
        .unwrap();
    let args = vec![
        "-drive".into(),
        format!("file={},format=raw,if=none,id=san", path.display()),
        "-device".into(),
        "virtio-blk-pci,drive=san,serial=SAN0".into(),
    ];
    (path, args)
}

fn verify(san: &Path) -> String {
    run(Command::new(media::vlx_install())
        .args(["verify", "--san"])
        .arg(san))
}

struct Built {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    img: PathBuf,
    iso: PathBuf,
}

fn build(unattended: bool) -> Built {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_owned();
    let image = media::tiny_image(&dir);
    let target = unattended.then_some("serial:SAN0");
    let profile = media::profile(&dir, "vlx-rig", target, "");
    let out = dir.join("out");
    media::build(&profile, &image, &out);
    Built {
        _dir: d,
        img: out.join("vlx-rig.img"),
        iso: out.join("vlx-rig.iso"),
        dir,
    }
}

#[test]
fn rig_media_iso_installs_guided_under_bios() {
    let m = build(false);
    let _one = one_at_a_time();
    let (san, mut args) = san(&m.dir);
    args.extend([
        "-drive".into(),
        format!(
            "file={},media=cdrom,if=ide,index=2,readonly=on",
            m.iso.display()
        ),
        "-boot".into(),
        "d".into(),
    ]);
    let mut vm = Vm::start(&args, &m.dir.join("console-bios.log"));
    vm.wait_for("vlx-install: payload checked", INSTALL_TIMEOUT);
    // One profile on the media: no question; one disk: still asked.
    vm.wait_for("Target disk (the SAN) [1-1]:", INSTALL_TIMEOUT);
    vm.type_line("1");
    vm.wait_for("Type yes to go on:", INSTALL_TIMEOUT);
    vm.type_line("yes");
    vm.wait_for("vlx-install: installed cluster demo", INSTALL_TIMEOUT);
    vm.wait_exit(INSTALL_TIMEOUT);
    let console = vm.console();
    assert!(
        console.contains(" on sr0:"),
        "the payload came from the CD:\n{console}"
    );
    let v = verify(&san);
    assert!(v.contains("cluster demo verifies"), "{v}");
    // And by tools nobody here wrote.
    let said = qemu_tests::outside::check_san(&san, 512).unwrap_or_else(|e| panic!("{e}"));
    assert!(said.contains("sgdisk -v"), "{said}");
}

#[test]
fn rig_media_corrupted_payload_stops_before_the_san_is_touched() {
    let m = build(true);
    // Flip one byte in the middle of origin.ext4 on the payload partition.
    let (at, len) = partition(&m.img, 2);
    let part = m.dir.join("payload.iso");
    extract(&m.img, at, len, &part);
    let report = run(Command::new("xorriso").arg("-indev").arg(&part).args([
        "-find",
        "/image/origin.ext4",
        "-exec",
        "report_lba",
        "--",
    ]));
    let lba: u64 = report
        .lines()
        .find_map(|l| l.strip_prefix("File data lba:"))
        .and_then(|l| l.split(',').nth(1))
        .map(|n| n.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no LBA for origin.ext4:\n{report}"));
    let offset = at + lba * 2048 + 3 * 1024 * 1024 + 17;
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&m.img)
            .unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, offset).unwrap();
        f.write_all_at(&[b[0] ^ 0x01], offset).unwrap();
    }
    let _one = one_at_a_time();
    let (san, san_args) = san(&m.dir);
    let mut args = ovmf(&m.dir);
    args.extend(usb(&m.img));
    args.extend(san_args);
    let mut vm = Vm::start(&args, &m.dir.join("console-corrupt.log"));
    vm.wait_for(
        "vlx-install: error: payload file image/origin.ext4 does not match",
        INSTALL_TIMEOUT,
    );
    vm.wait_for("the installer stopped", INSTALL_TIMEOUT);
    let console = vm.console();
    drop(vm);
    assert!(console.contains("nothing was written"), "{console}");
    assert!(!console.contains("vlx-install: gpt"), "{console}");
    // Not one byte reached the SAN: a write to a sparse file allocates.
    let meta = std::fs::metadata(&san).unwrap();
    assert_eq!(meta.blocks(), 0, "the SAN was written to");
    assert_eq!(meta.len(), 8 << 30);
}

/// A TOML file's value at `table.key`.
fn toml_value(path: &Path, table: &str, key: &str) -> toml::Value {
    let v: toml::Table = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v[table][key].clone()
}

/// Media built as isos/vlx-installer-metal.toml says (its name, consoles
/// and modules), carrying profiles/clusters/metal.toml, with the kernel
/// package of profiles/hosts/debian-bookworm-metal.toml. The image is the
/// tiny one with that kernel instead of the Debian metal root: built from
/// the build machine's binaries in seconds, where mmdebstrap with the full
/// kernel takes minutes (about ten on a loaded two-core machine); the
/// installer environment, its kernel and its modules are the same. The
/// profiles are staged under `dir` as in the repository (the media carry
/// them at their relative paths).
fn metal_media(dir: &Path) -> PathBuf {
    let ws = workspace();
    let kernel = toml_value(
        &ws.join("profiles/hosts/debian-bookworm-metal.toml"),
        "kernel",
        "package",
    );
    let kernel = kernel.as_str().unwrap();
    assert_ne!(kernel, "linux-image-cloud-amd64");
    let stage = dir.join("stage");
    for d in ["profiles/hosts", "profiles/clusters", "isos", "overlays"] {
        std::fs::create_dir_all(stage.join(d)).unwrap();
    }
    run(Command::new("cp")
        .arg("-a")
        .arg(ws.join("overlays/node"))
        .arg(stage.join("overlays/node")));
    let host = stage.join("profiles/hosts/tiny-metal.toml");
    let text = tiny_profile_text(&[ws.join("overlays/tiny")], "")
        .replace("name = \"tiny\"", "name = \"tiny-metal\"")
        .replace(
            "package = \"linux-image-cloud-amd64\"",
            &format!("package = {kernel:?}"),
        );
    assert!(
        text.contains("tiny-metal") && text.contains(kernel),
        "{text}"
    );
    std::fs::write(&host, text).unwrap();
    let image = dir.join("image");
    run(Command::new(media::vlx_image())
        .arg("build")
        .arg("--profile")
        .arg(&host)
        .arg("--out")
        .arg(&image)
        .arg("--agent")
        .arg(agent())
        .env("SOURCE_DATE_EPOCH", common::EPOCH.to_string()));
    let text = std::fs::read_to_string(ws.join("profiles/clusters/metal.toml")).unwrap();
    let cluster_text = text.replace(
        "\"../hosts/debian-bookworm-metal.toml\"",
        "\"../hosts/tiny-metal.toml\"",
    );
    assert_ne!(cluster_text, text);
    std::fs::write(stage.join("profiles/clusters/metal.toml"), cluster_text).unwrap();
    let profile = stage.join("isos/vlx-installer-metal.toml");
    std::fs::copy(ws.join("isos/vlx-installer-metal.toml"), &profile).unwrap();
    let out = dir.join("out");
    media::build(&profile, &image, &out);
    out.join("vlx-installer-metal.img")
}

/// What the installer prints when it stops on an error.
const ERROR: &str = "vlx-install: error:";

#[test]
fn rig_media_metal_usb_boots_uefi_with_its_modules() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let img = metal_media(dir);
    let wanted: Vec<String> = toml_value(
        &workspace().join("isos/vlx-installer-metal.toml"),
        "media",
        "modules",
    )
    .as_array()
    .unwrap()
    .iter()
    .map(|m| m.as_str().unwrap().replace('-', "_"))
    .collect();
    for m in ["ahci", "nvme", "usb_storage", "xhci_pci", "e1000e"] {
        assert!(wanted.iter().any(|w| w == m), "{m} not in {wanted:?}");
    }
    let release = release_of(&img, dir);
    let _one = one_at_a_time();
    let san = dir.join("san.img");
    std::fs::File::create(&san)
        .unwrap()
        .set_len(64 << 30)
        .unwrap();
    let mut args = vec!["-machine".to_owned(), "q35".to_owned()];
    args.extend(ovmf(dir));
    // The stick on an xHCI controller, the SAN on NVMe, an Intel NIC on a
    // user-mode network that reaches nothing (restrict=on).
    for a in [
        "-device",
        "qemu-xhci,id=xhci",
        "-drive",
        &format!(
            "file={},format=raw,if=none,id=media,readonly=on",
            img.display()
        ),
        "-device",
        "usb-storage,bus=xhci.0,drive=media,serial=MEDIA,bootindex=0",
        "-drive",
        &format!("file={},format=raw,if=none,id=san", san.display()),
        "-device",
        "nvme,drive=san,serial=SAN0",
        "-netdev",
        "user,id=n0,restrict=on",
        "-device",
        "e1000e,netdev=n0",
    ] {
        args.push(a.to_owned());
    }
    let mut vm = Vm::start(&args, &dir.join("console-metal.log"));
    vm.wait_for_unless("vlx-install: payload checked", Some(ERROR), INSTALL_TIMEOUT);
    vm.wait_for_unless("Target disk (the SAN) [1-1]:", Some(ERROR), INSTALL_TIMEOUT);
    let console = vm.console();
    assert!(
        console.contains("vlx-install: payload vlx-installer-metal on sd"),
        "the payload did not come from the USB disk:\n{console}"
    );
    assert!(
        console.contains("/dev/nvme0n1 ") && console.contains("serial SAN0"),
        "the NVMe SAN is not offered:\n{console}"
    );
    assert!(
        console.contains(&format!("Linux version {release} ")),
        "not the image's kernel:\n{console}"
    );
    // Up to the question, then no: nothing is written, a shell follows.
    vm.type_line("1");
    vm.wait_for_unless("Type yes to go on:", Some(ERROR), INSTALL_TIMEOUT);
    vm.type_line("no");
    vm.wait_for("the installer stopped", INSTALL_TIMEOUT);
    // The marker is computed, so that the echo of the typed line is not it.
    vm.type_line(
        "cat /proc/modules; echo driver=$(basename $(readlink /sys/class/net/eth0/device/driver)); echo $((6*7))-listed",
    );
    vm.wait_for("42-listed\n", INSTALL_TIMEOUT);
    let console = vm.console();
    drop(vm);
    let listed = console.rsplit("-listed\n").nth(1).unwrap_or_default();
    let loaded: Vec<&str> = listed
        .lines()
        .filter(|l| l.contains(" Live "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for m in &wanted {
        assert!(
            loaded.contains(&m.as_str()),
            "module {m} is not loaded; /proc/modules:\n{listed}"
        );
    }
    assert!(
        listed.contains("\ndriver=e1000e\n"),
        "the NIC has no driver:\n{listed}"
    );
    assert_eq!(
        std::fs::metadata(&san).unwrap().blocks(),
        0,
        "the SAN was written to"
    );
}

/// The kernel release the media's image names (`image/manifest.json` on
/// the payload partition).
fn release_of(img: &Path, dir: &Path) -> String {
    let (at, len) = partition(img, 2);
    let part = dir.join("payload.iso");
    extract(img, at, len, &part);
    let to = dir.join("payload-manifest");
    std::fs::create_dir_all(&to).unwrap();
    run(Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(&part)
        .args(["-extract", "/image/manifest.json"])
        .arg(to.join("manifest.json")));
    std::fs::remove_file(&part).unwrap();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(to.join("manifest.json")).unwrap()).unwrap();
    let release = m["kernel_release"].as_str().unwrap().to_owned();
    assert!(!release.contains("cloud"), "{release}");
    release
}
