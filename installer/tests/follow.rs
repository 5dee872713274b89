//! A running node follows a change of the cluster, without QEMU: the node
//! overlay's `follow` runs under busybox in a chroot with its own mount
//! namespace, the meta volume mounted read-only from a read-only loop
//! device over the SAN file, as a blade has it. The change is made by
//! `vlx-install apply` on a copy of the SAN (the installer refuses a SAN
//! that a loop device holds) and its meta volume written into the SAN, as
//! the installer on another machine writes the shared LUN. Needs root.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const MIB: u64 = 1 << 20;
const SAN: u64 = 600 * MIB;
/// How long the test waits for a console line before it fails (a change
/// is followed within 30 s on a blade; here the poll is every second).
const WAIT: Duration = Duration::from_secs(60);
/// What `follow` says once it serves a change.
const SERVES: &str = "vlx: follow: s1 serves meta generation";

fn profile(dir: &Path, name: &str, s2_mac: &str) -> PathBuf {
    let text = std::fs::read_to_string(fixture("small.toml")).unwrap();
    let repo = repo().canonicalize().unwrap();
    let block = "[[nodes]]\nname = \"s[1-3]\"\nmac = \"52:54:00:66:00:01\"\nip = \"10.66.0.11\"\n";
    assert!(text.contains(block), "the fixture's nodes changed");
    let nodes = format!(
        "[[nodes]]\nname = \"s1\"\nmac = \"52:54:00:66:00:01\"\nip = \"10.66.0.11\"\n\
         [[nodes]]\nname = \"s2\"\nmac = \"{s2_mac}\"\nip = \"10.66.0.12\"\n"
    );
    let text = text
        .replace(block, &nodes)
        .replace(
            "../../../profiles/hosts/tiny.toml",
            &repo.join("profiles/hosts/tiny.toml").display().to_string(),
        )
        .replace(
            "../../../overlays/node",
            &repo.join("overlays/node").display().to_string(),
        );
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Detaches the loop device on drop.
struct Loop(String);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

/// Kills the process (and the service it restarted) on drop.
struct Running {
    child: Child,
    also: Vec<i32>,
    stderr: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in &self.also {
            // SAFETY: kill(2) with a pid and a signal number has no memory
            // effects.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
    }
}

/// Waits until the console file holds `line`; fails with the console and
/// what `follow` said on stderr, or at once when it has ended.
fn wait_for(console: &Path, running: &mut Running, line: &str) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(console).unwrap_or_default();
        if text.contains(line) {
            return text;
        }
        let stderr = std::fs::read_to_string(&running.stderr).unwrap_or_default();
        if let Some(status) = running.child.try_wait().unwrap() {
            panic!("follow ended ({status}) before {line:?}:\n{text}\nstderr:\n{stderr}");
        }
        assert!(
            start.elapsed() < WAIT,
            "no {line:?} on the console within {WAIT:?}:\n{text}\nstderr:\n{stderr}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A root with busybox, the node overlay's scripts, the node's env, and a
/// stand-in service that `follow` restarts.
fn node_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    for d in [
        "bin",
        "usr/lib/vlx",
        "etc/vlx",
        "vlx/meta",
        "run/vlx",
        "dev",
        "sys",
        "proc",
        "tmp",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .expect("/bin/busybox (busybox-static) is needed");
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    assert!(list.status.success());
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
    }
    for s in ["follow", "nap", "meta-generation", "partdev"] {
        std::fs::copy(
            repo().join("overlays/node/usr/lib/vlx").join(s),
            root.join("usr/lib/vlx").join(s),
        )
        .unwrap();
    }
    std::fs::write(
        root.join("etc/vlx/node.env"),
        "VLX_NODE='s1'\nVLX_META='/vlx/meta'\n",
    )
    .unwrap();
    root
}

/// Copies the meta volume (`size` bytes at `at`) of the SAN `from` onto
/// the SAN `to`, as `patch` leaves it.
fn write_meta(from: &Path, to: &Path, at: u64, size: u64, patch: impl Fn(&mut [u8])) {
    let mut from = std::fs::File::open(from).unwrap();
    let mut to = std::fs::OpenOptions::new().write(true).open(to).unwrap();
    from.seek(SeekFrom::Start(at)).unwrap();
    to.seek(SeekFrom::Start(at)).unwrap();
    let mut buf = vec![0u8; size as usize];
    from.read_exact(&mut buf).unwrap();
    patch(&mut buf);
    to.write_all(&buf).unwrap();
    to.sync_all().unwrap();
}

/// A node running `follow` over a SAN with the `before` cluster, and a
/// copy of that SAN changed to the `after` cluster (s2 on a new board).
struct Node {
    _dir: tempfile::TempDir,
    san: PathBuf,
    copy: PathBuf,
    /// The meta volume's offset and size on the SAN.
    at: u64,
    size: u64,
    root: PathBuf,
    console: PathBuf,
    running: Running,
    /// The stand-in dnsmasq before the change, and its pid.
    service: Child,
    old_pid: String,
    _loop: Loop,
}

impl Node {
    /// Installs, makes the change on a copy, and starts `follow` in the
    /// node's root.
    fn start() -> Node {
        Node::start_after(false)
    }

    /// [`Node::start`]; with `changed`, the node agent recorded the
    /// generation it copied the node's files from, and the change is
    /// written after that, before `follow` starts.
    fn start_after(changed: bool) -> Node {
        let d = tempfile::tempdir().unwrap();
        let img = image_dir(d.path(), "x");
        let before = profile(d.path(), "before.toml", "52:54:00:66:00:02");
        let after = profile(d.path(), "after.toml", "52:54:00:66:99:02");
        let san = san(d.path(), SAN);
        let o = apply(&before, &img, &san, &[]);
        assert!(o.status.success(), "{}", text(&o));

        // The change, made on a copy.
        let copy = d.path().join("copy.img");
        let st = Command::new("cp")
            .args(["--sparse=always"])
            .arg(&san)
            .arg(&copy)
            .status()
            .unwrap();
        assert!(st.success());
        let o = apply(&after, &img, &copy, &[]);
        assert!(o.status.success(), "{}", text(&o));
        let plan = plan(&before, &san);
        let meta = plan.disk.by_label("vlx-meta").unwrap();
        let (at, size) = (meta.offset(plan.disk.sector_size).get(), meta.size.get());

        // The blade: a read-only loop device over the SAN, its meta volume
        // mounted read-only in the node's root.
        let o = Command::new("losetup")
            .args(["--find", "--show", "--read-only", "--offset"])
            .arg(at.to_string())
            .arg("--sizelimit")
            .arg(size.to_string())
            .arg(&san)
            .output()
            .unwrap();
        assert!(o.status.success(), "losetup: {}", text(&o));
        let lp = Loop(String::from_utf8_lossy(&o.stdout).trim().to_owned());
        let root = node_root(d.path());
        let console = root.join("run/vlx/console");
        if changed {
            // As the agent writes it at boot, from the superblock.
            let mut sb = vec![0u8; 0x78];
            std::fs::File::open(&san)
                .unwrap()
                .read_exact_at(&mut sb, at + 1024)
                .unwrap();
            let g = uuid::Uuid::from_slice(&sb[0x68..0x78]).unwrap().to_string();
            std::fs::write(root.join("etc/vlx/meta-generation"), format!("{g}\n")).unwrap();
            write_meta(&copy, &san, at, size, |_| {});
        }
        // A stand-in for dnsmasq, started as the tiny image's rcS does.
        // Nothing started here keeps the test's output open once it ends.
        let service = Command::new("sleep")
            .arg("600")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let old_pid = service.id().to_string();
        std::fs::write(root.join("run/vlx/dnsmasq.cmd"), "sleep 600\n").unwrap();
        std::fs::write(root.join("run/vlx/dnsmasq.pid"), &old_pid).unwrap();
        let script = format!(
            "set -e; mount --rbind /dev {r}/dev; mount -t proc proc {r}/proc; \
             mount -t ext4 -o ro,noload {dev} {r}/vlx/meta; exec chroot {r} /bin/sh /usr/lib/vlx/follow",
            r = root.display(),
            dev = lp.0
        );
        let stderr = d.path().join("follow.stderr");
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .env("VLX_FOLLOW_INTERVAL", "1")
            .env("VLX_META_DEV", &lp.0)
            .env("VLX_CONSOLE", "/run/vlx/console")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut running = Running {
            child,
            also: vec![service.id() as i32],
            stderr,
        };
        wait_for(&console, &mut running, "vlx: follow: watching");
        Node {
            _dir: d,
            san,
            copy,
            at,
            size,
            root,
            console,
            running,
            service,
            old_pid,
            _loop: lp,
        }
    }

    /// The installer on another machine writes the new meta volume.
    fn write_the_change(&self) {
        self.write_the_change_with(|_| {});
    }

    /// Writes the new meta volume as `patch` leaves it.
    fn write_the_change_with(&self, patch: impl Fn(&mut [u8])) {
        write_meta(&self.copy, &self.san, self.at, self.size, patch);
    }

    /// Waits until the console holds `line`; returns the console.
    fn wait_for(&mut self, line: &str) -> String {
        wait_for(&self.console, &mut self.running, line)
    }

    /// The generation `follow` says the node serves.
    fn serving(&self) -> String {
        std::fs::read_to_string(self.root.join("run/vlx/meta-generation"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// Checks that the node serves the change: the new generation, the
    /// new board of s2 in its tables, and its service started again.
    fn serves_the_change(mut self, said: &str, watched: &str) {
        assert!(said.contains("the cluster changed"), "{said}");
        let now = self.serving();
        assert_ne!(now, watched, "{said}");
        assert!(
            said.contains(&format!("s1 serves meta generation {now}")),
            "{said}"
        );
        // The node's tables have the new board of s2, not the old one.
        let dns = std::fs::read_to_string(self.root.join("etc/dnsmasq.conf")).unwrap();
        assert!(dns.contains("52:54:00:66:99:02"), "{dns}");
        assert!(!dns.contains("52:54:00:66:00:02"), "{dns}");
        // The service was stopped and started again.
        let new_pid = std::fs::read_to_string(self.root.join("run/vlx/dnsmasq.pid")).unwrap();
        let new_pid = new_pid.trim();
        assert_ne!(new_pid, self.old_pid);
        let pid: i32 = new_pid.parse().unwrap();
        self.running.also.push(pid);
        assert!(
            Path::new(&format!("/proc/{pid}")).exists(),
            "the restarted service is not running"
        );
        // The one before was stopped.
        let _ = self.service.wait();
    }
}

#[test]
fn a_running_node_reloads_its_files_and_services_when_the_meta_generation_changes() {
    let mut node = Node::start();
    let watched = node.serving();
    node.write_the_change();
    let said = node.wait_for(SERVES);
    node.serves_the_change(&said, &watched);
}

/// The cluster changed after the node agent copied the node's files at
/// boot and before `follow` started: `follow` starts from the generation
/// the agent recorded, not the one it finds, and loads the change.
#[test]
fn a_change_made_while_the_node_booted_is_loaded_at_the_first_poll() {
    let mut node = Node::start_after(true);
    let watched = node.serving();
    let said = node.wait_for(SERVES);
    node.serves_the_change(&said, &watched);
}

/// A mount of the new volume fails (here: its superblock names a feature
/// no kernel has, as a volume caught half made may read); the node keeps
/// its services on the tables it has and mounts the volume at a later
/// poll, once it is whole (it does not try to unmount what is no longer
/// mounted).
#[test]
fn a_node_whose_mount_of_the_new_volume_fails_mounts_it_at_a_later_poll() {
    let mut node = Node::start();
    let watched = node.serving();
    node.write_the_change_with(|volume| {
        // s_feature_incompat, at byte 0x60 of the superblock: a bit no
        // ext4 knows. The generation (magic and UUID) reads as the new one.
        volume[1024 + 0x63] |= 0x80;
    });
    let said = node.wait_for("cannot mount");
    assert!(!said.contains("serves meta generation"), "{said}");
    node.write_the_change();
    let said = node.wait_for(SERVES);
    node.serves_the_change(&said, &watched);
}
