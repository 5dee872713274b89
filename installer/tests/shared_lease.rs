//! The node overlay's `shared-lease` (the shared volume's fence) under
//! busybox sh, two nodes on one lease: a file as large as a small shared
//! partition, the record at the start of its last MiB, as the installer
//! leaves it. Timings are shortened through the script's test variables;
//! the watchdog is a file that collects the keeper's pets and its magic
//! close. The rig runs the same script on real blades (step 13).

#![allow(clippy::unwrap_used)]

mod nodes;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use installer::steps::shared::{LEASE_BYTES, LEASE_RECORD};

const DEV_BYTES: u64 = 4 << 20;

struct Lease {
    dir: PathBuf,
    dev: PathBuf,
}

impl Lease {
    fn new(dir: &Path) -> Lease {
        let dev = dir.join("san-shared");
        let f = std::fs::File::create(&dev).unwrap();
        f.set_len(DEV_BYTES).unwrap();
        for n in ["n1", "n2"] {
            let root = dir.join(n);
            std::fs::create_dir_all(root.join("etc/vlx")).unwrap();
            std::fs::create_dir_all(root.join("run")).unwrap();
            std::fs::write(root.join("etc/vlx/node.env"), format!("VLX_NODE='{n}'\n")).unwrap();
            std::fs::write(root.join("holds"), "").unwrap();
        }
        Lease {
            dir: dir.to_path_buf(),
            dev,
        }
    }

    fn root(&self, node: &str) -> PathBuf {
        self.dir.join(node)
    }

    fn cmd(&self, node: &str, args: &[&str]) -> Command {
        let root = self.root(node);
        let mut c = Command::new("busybox");
        c.arg("sh")
            .arg(nodes::overlays_dir().join("node/usr/lib/vlx/shared-lease"))
            .args(args)
            .env("VLX_ROOT", &root)
            .env("VLX_WATCHDOG", root.join("watchdog"))
            .env("VLX_WATCHDOG_TIMEOUT", "1")
            .env(
                "VLX_FENCE",
                format!("touch {}", root.join("fenced").display()),
            )
            .env(
                "VLX_HOLDS",
                format!("test -e {}", root.join("holds").display()),
            )
            .env("VLX_CONSOLE", root.join("console"))
            .env("VLX_LEASE_RENEW", "1")
            .env("VLX_LEASE_CLAIM", "1")
            .env("VLX_LEASE_MARGIN", "1");
        c
    }

    fn run(&self, node: &str, args: &[&str]) -> Output {
        self.cmd(node, args).output().unwrap()
    }

    fn take(&self, node: &str) -> Output {
        let dev = self.dev.to_str().unwrap();
        self.run(node, &["take", dev, "/nonexistent-mount"])
    }

    /// The record as the SAN holds it: one line, NUL-padded to 4 KiB.
    fn record(&self) -> String {
        let f = std::fs::File::open(&self.dev).unwrap();
        let at = DEV_BYTES - LEASE_BYTES.get();
        let b = installer::device::read_at(&f, at, LEASE_RECORD).unwrap();
        let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
        assert!(b[end..].iter().all(|c| *c == 0), "{b:?}");
        String::from_utf8(b[..end].to_vec()).unwrap()
    }

    fn keeper(&self, node: &str) -> Option<i32> {
        let s = std::fs::read_to_string(self.root(node).join("run/vlx-shared-lease.pid")).ok()?;
        let pid: i32 = s.trim().parse().ok()?;
        // SAFETY: kill with signal 0 only asks whether the process exists.
        (unsafe { libc::kill(pid, 0) } == 0).then_some(pid)
    }

    fn console(&self, node: &str) -> String {
        std::fs::read_to_string(self.root(node).join("console")).unwrap_or_default()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        for n in ["n1", "n2"] {
            if let Some(pid) = self.keeper(n) {
                // SAFETY: plain signal to a process this test started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Waits until `f` holds, for at most `limit`.
fn until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

fn seq(record: &str) -> u64 {
    record.split_whitespace().nth(4).unwrap().parse().unwrap()
}

#[test]
fn one_holder_renews_a_dead_one_is_outwaited_a_freed_one_is_taken_at_once() {
    let d = tempfile::tempdir().unwrap();
    let l = Lease::new(d.path());
    let dev = l.dev.to_str().unwrap().to_owned();

    // Never held (the installer's zeros): n1 takes it after its claim.
    let o = l.take("n1");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = l.record();
    assert!(r.starts_with("vlx-lease 1 held n1 "), "{r}");
    assert!(
        r.ends_with(" 1\n"),
        "the record announces the watchdog's 1 s: {r}"
    );
    assert!(l.keeper("n1").is_some(), "no keeper after take");
    // The keeper renews: the sequence climbs, and each renewal pets.
    let first = seq(&r);
    assert!(
        until(Duration::from_secs(10), || seq(&l.record()) >= first + 2),
        "the keeper does not renew: {}",
        l.record()
    );
    let pets = std::fs::read_to_string(l.root("n1").join("watchdog")).unwrap();
    assert!(
        pets.len() >= 2 && pets.chars().all(|c| c == '.'),
        "{pets:?}"
    );

    // n2 cannot take it while n1 renews: it waits until it no longer
    // holds the VIP (its holds file goes after 4 s), and gives up (1).
    let mut n2 = l
        .cmd("n2", &["take", &dev, "/nonexistent-mount"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    std::fs::remove_file(l.root("n2").join("holds")).unwrap();
    let status = n2.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{}", l.console("n2"));
    assert!(l.record().contains(" held n1 "), "{}", l.record());

    // n1 dies (its keeper killed: no magic close, the watchdog would
    // reset it). n2 waits until the record stayed unchanged for the
    // watchdog's 1 s plus the margin's 1 s, then takes it.
    let pid = l.keeper("n1").unwrap();
    // SAFETY: plain signal to a process this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    std::fs::write(l.root("n2").join("holds"), "").unwrap();
    let start = Instant::now();
    let o = l.take("n2");
    let took = start.elapsed();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(took >= Duration::from_secs(2), "took over in {took:?}");
    assert!(
        l.record().starts_with("vlx-lease 1 held n2 "),
        "{}",
        l.record()
    );
    let pets = std::fs::read_to_string(l.root("n1").join("watchdog")).unwrap();
    assert!(
        !pets.contains('V'),
        "a killed keeper closed the watchdog: {pets:?}"
    );

    // Had n1 only hung, its keeper would find n2's record when it woke,
    // and reset n1 at once (the fence command here), without renewing.
    let before = l.record();
    let o = l.run("n1", &["keep", &dev, "/nonexistent-mount"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(l.root("n1").join("fenced").exists(), "{}", l.console("n1"));
    assert!(
        l.record().contains(" held n2 "),
        "{before} -> {}",
        l.record()
    );

    // n2 lets go: its keeper stops with the watchdog's magic close and the
    // record says free, so n1 takes it without waiting.
    let o = l.run("n2", &["free", &dev]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(l.keeper("n2").is_none());
    let pets = std::fs::read_to_string(l.root("n2").join("watchdog")).unwrap();
    assert!(pets.ends_with('V'), "no magic close: {pets:?}");
    assert!(
        l.record().starts_with("vlx-lease 1 free n2 "),
        "{}",
        l.record()
    );
    let left: Vec<_> = std::fs::read_dir(l.root("n2").join("run"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "n2's /run keeps {left:?}");
    std::fs::remove_file(l.root("n1").join("fenced")).unwrap();
    let start = Instant::now();
    let o = l.take("n1");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        start.elapsed() < Duration::from_secs(2) + Duration::from_millis(900),
        "a free lease waited {:?}",
        start.elapsed()
    );
    assert!(
        l.record().starts_with("vlx-lease 1 held n1 "),
        "{}",
        l.record()
    );
}

#[test]
fn a_device_too_small_or_a_bad_command_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let l = Lease::new(d.path());
    let small = d.path().join("small");
    std::fs::write(&small, vec![0; 4096]).unwrap();
    let o = l.run("n1", &["take", small.to_str().unwrap(), "/m"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("too small for a lease"), "{}", text(&o));
    let o = l.run("n1", &["steal", l.dev.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // A record this script did not write, or one whose numbers are not
    // plain (a leading zero, a timeout of years, a glob for a name), is
    // waited out as one with no watchdog (30 s), not taken and not
    // believed: here n1 gives up when it loses the VIP after 2 s.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&l.dev)
        .unwrap();
    for record in [
        "vlx-lease 2 something else\n",
        "vlx-lease 1 held n2 08 5\n",
        "vlx-lease 1 held n2 7 999999999\n",
        "vlx-lease 1 held n2 7 12345678901\n",
        "vlx-lease 1 held * 7 5 *\n",
    ] {
        let mut block = record.as_bytes().to_vec();
        block.resize(LEASE_RECORD, 0);
        std::os::unix::fs::FileExt::write_all_at(&f, &block, DEV_BYTES - LEASE_BYTES.get())
            .unwrap();
        std::fs::write(l.root("n1").join("holds"), "").unwrap();
        let _ = std::fs::remove_file(l.root("n1").join("console"));
        let mut c = l
            .cmd("n1", &["take", l.dev.to_str().unwrap(), "/m"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_secs(2));
        std::fs::remove_file(l.root("n1").join("holds")).unwrap();
        assert_eq!(
            c.wait().unwrap().code(),
            Some(1),
            "{record}: {}",
            l.console("n1")
        );
        assert!(
            l.console("n1")
                .contains("lease is unknown by nobody: waiting for it to stay unchanged 30 s"),
            "{record}: {}",
            l.console("n1")
        );
        assert_eq!(l.record(), record, "{record} was overwritten");
    }
}

/// A block device (a loop device over the test's file) is read and
/// written past its page cache, through a node of its own (udev would
/// probe its own node again after every renewal).
#[test]
fn a_block_device_is_written_through_a_node_of_its_own() {
    let d = tempfile::tempdir().unwrap();
    let l = Lease::new(d.path());
    let o = Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&l.dev)
        .output()
        .unwrap();
    assert!(o.status.success(), "losetup: {}", text(&o));
    let lo = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    struct Detach(String);
    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
        }
    }
    let _detach = Detach(lo.clone());
    let o = l.run("n1", &["take", &lo, "/nonexistent-mount"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let nodes: Vec<String> = std::fs::read_dir(l.root("n1").join("dev"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("vlx-lease-"))
        .collect();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    let r = l.record();
    assert!(r.starts_with("vlx-lease 1 held n1 "), "{r}");
    let first = seq(&r);
    assert!(
        until(Duration::from_secs(10), || seq(&l.record()) >= first + 2),
        "the keeper does not renew through {lo}: {}",
        l.record()
    );
    let o = l.run("n1", &["free", &lo]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        l.record().starts_with("vlx-lease 1 free n1 "),
        "{}",
        l.record()
    );
}
