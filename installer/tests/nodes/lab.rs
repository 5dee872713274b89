//! A private L2 segment of network namespaces for live tests: a bridge in
//! its own namespace, one namespace per host with an `eth0` on the bridge,
//! and "containers" that run a node's root (rendered files + the tiny
//! image's runtime + the build machine's busybox and daemons) in private
//! mount, UTS, IPC and PID namespaces, the way the tiny image runs on a
//! blade, without a kernel of their own. Everything is torn down on drop,
//! also when a test fails.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::run_ok;

/// Daemons copied into a container root, where the tiny image has them.
const DAEMONS: [&str; 4] = [
    "/usr/sbin/dnsmasq",
    "/usr/sbin/mini_httpd",
    "/usr/sbin/keepalived",
    "/usr/sbin/chronyd",
];

#[derive(Debug)]
pub struct Lab {
    tag: String,
    pub dir: tempfile::TempDir,
    namespaces: Vec<String>,
    children: Vec<(String, Child)>,
    loops: Vec<String>,
}

impl Lab {
    /// A new segment; `tag` keeps concurrent tests apart.
    pub fn new(tag: &str) -> Lab {
        let dir = tempfile::Builder::new()
            .prefix("vlx-lab-")
            .tempdir()
            .unwrap();
        // Daemons that drop privileges (dnsmasq) read their files from here.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let mut lab = Lab {
            tag: format!("vlxt{}{tag}", std::process::id()),
            dir,
            namespaces: Vec::new(),
            children: Vec::new(),
            loops: Vec::new(),
        };
        let sw = lab.add_ns("sw");
        run_ok(Command::new("ip").args(["-n", &sw, "link", "add", "br0", "type", "bridge"]));
        run_ok(Command::new("ip").args(["-n", &sw, "link", "set", "br0", "up"]));
        lab
    }

    pub fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.tag)
    }

    fn add_ns(&mut self, host: &str) -> String {
        let ns = self.ns(host);
        run_ok(Command::new("ip").args(["netns", "add", &ns]));
        self.namespaces.push(ns.clone());
        run_ok(Command::new("ip").args(["-n", &ns, "link", "set", "lo", "up"]));
        ns
    }

    /// Whether `host` has its namespace already.
    pub fn has_host(&self, host: &str) -> bool {
        self.namespaces.contains(&self.ns(host))
    }

    /// A host namespace with `eth0` (MAC `mac`, down) on the bridge.
    pub fn add_host(&mut self, host: &str, mac: &str) -> String {
        let ns = self.add_ns(host);
        let sw = self.ns("sw");
        let port = format!("p{}", self.namespaces.len());
        run_ok(Command::new("ip").args([
            "link", "add", "name", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port,
            "netns", &sw,
        ]));
        run_ok(Command::new("ip").args(["-n", &ns, "link", "set", "eth0", "address", mac]));
        run_ok(Command::new("ip").args(["-n", &sw, "link", "set", &port, "master", "br0", "up"]));
        ns
    }

    /// `program` run in `host`'s network namespace.
    pub fn cmd(&self, host: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(host), program]);
        c
    }

    /// Keeps `cmd` running until the lab is dropped; `host` names it.
    pub fn spawn(&mut self, mut cmd: Command, host: &str) {
        let log = self
            .dir
            .path()
            .join(format!("log-{host}-{}", self.children.len()));
        let file = fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        self.children
            .push((format!("{host}:{}", log.display()), child));
    }

    /// Lays out a container root for a node from its files: busybox with
    /// every applet, the daemons, and mount points for the build machine's
    /// libraries. Returns the root.
    pub fn stage(&self, host: &str, files: &[templating::Entry]) -> PathBuf {
        let root = self.dir.path().join("stage").join(host);
        fs::create_dir_all(&root).unwrap();
        installer::render::write_tree(files, &root).unwrap();
        for d in ["bin", "usr/sbin", "usr/lib/x86_64-linux-gnu", "lib64"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
        fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
        let list = run_ok(Command::new("/bin/busybox").arg("--list"));
        for applet in String::from_utf8(list.stdout).unwrap().lines() {
            let at = root.join("bin").join(applet);
            if !at.exists() {
                std::os::unix::fs::symlink("busybox", at).unwrap();
            }
        }
        for d in DAEMONS {
            fs::copy(d, root.join(d.trim_start_matches('/'))).unwrap();
        }
        root
    }

    /// Starts a node container in `host`'s namespace: `root` (from
    /// [`Lab::stage`]) on a private tmpfs, the build machine's libraries
    /// bound read-only, `devs` (block devices, e.g. `loop3p1`) in its /dev,
    /// and `/etc/init.d/rcS` run as by init. The console is a file.
    /// The container may not set the clock or read the kernel log (its
    /// bounding set lacks CAP_SYS_TIME and CAP_SYSLOG).
    pub fn start_container(&mut self, host: &str, root: &Path, devs: &[String]) -> Console {
        let console = self.dir.path().join(format!("console-{host}"));
        fs::write(&console, "").unwrap();
        let mnt = self.dir.path().join(format!("mnt-{host}"));
        fs::create_dir_all(&mnt).unwrap();
        let mut nodes = String::new();
        for d in devs {
            let majmin = fs::read_to_string(format!("/sys/class/block/{d}/dev")).unwrap();
            let (maj, min) = majmin.trim().split_once(':').unwrap();
            nodes.push_str(&format!("mknod -m 660 \"$N/dev/{d}\" b {maj} {min}\n"));
        }
        let script = format!(
            r#"set -e
R='{root}'; N='{mnt}'; C='{console}'
mount -t tmpfs -o mode=0755,size=64m vlxroot "$N"
cp -a "$R/." "$N/"
mount --bind /usr/lib/x86_64-linux-gnu "$N/usr/lib/x86_64-linux-gnu"
mount -o remount,bind,ro "$N/usr/lib/x86_64-linux-gnu"
mount --bind /lib64 "$N/lib64"
mount -t tmpfs -o mode=0755 vlxdev "$N/dev"
for d in null:1:3 zero:1:5 random:1:8 urandom:1:9 tty:5:0; do
    name=${{d%%:*}}; mm=${{d#*:}}
    mknod -m 666 "$N/dev/$name" c "${{mm%%:*}}" "${{mm#*:}}"
done
{nodes}touch "$N/dev/console"
mount --bind "$C" "$N/dev/console"
exec chroot "$N" /bin/sh -c '/etc/init.d/rcS; exec sleep 2147483647' >> "$C" 2>&1
"#,
            root = root.display(),
            mnt = mnt.display(),
            console = console.display(),
        );
        let child = self
            .cmd(host, "setpriv")
            .args([
                "--bounding-set",
                "-sys_time,-syslog",
                "unshare",
                "-m",
                "-u",
                "-i",
                "-p",
            ])
            .args(["-f", "--kill-child", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push((host.to_owned(), child));
        Console { path: console }
    }

    /// The pid (in the root PID namespace) of `host`'s container init.
    fn container_init(&self, host: &str) -> u32 {
        let (_, child) = self
            .children
            .iter()
            .find(|(h, _)| h == host)
            .unwrap_or_else(|| panic!("no container {host}"));
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let children =
                fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
            if let Some(first) = children.split_whitespace().next() {
                return first.parse().unwrap();
            }
            assert!(Instant::now() < deadline, "container {host} did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs a shell command inside `host`'s container (its root, mounts,
    /// PID namespace and network); returns (success, output).
    pub fn in_container(&self, host: &str, command: &str) -> (bool, String) {
        let init = self.container_init(host).to_string();
        let out = Command::new("nsenter")
            .args(["-t", &init, "-m", "-u", "-i", "-n", "-p", "-r", "-w"])
            .args(["/bin/sh", "-c", command])
            .output()
            .unwrap();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    /// Kills `host`'s container at once, as a node that loses power, and
    /// takes its link down.
    pub fn kill_container(&mut self, host: &str) {
        let at = self.children.iter().position(|(h, _)| h == host).unwrap();
        let (_, mut child) = self.children.remove(at);
        child.kill().unwrap();
        child.wait().unwrap();
        // unshare --kill-child takes the container's init, and with it its
        // PID namespace, down with it; wait until nothing is left.
        let ns = self.ns(host);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pids(&ns).is_empty() {
            assert!(Instant::now() < deadline, "{host} did not die");
            std::thread::sleep(Duration::from_millis(100));
        }
        run_ok(self.cmd(host, "ip").args(["link", "set", "vlx0", "down"]));
    }

    /// A loop device over a fresh image with one GPT partition named
    /// `label`, formatted ext4. Returns the disk's and the partition's
    /// names (`loopN`, `loopNp1`). This machine's kernel does not scan
    /// partitions of loop devices (`losetup -P` gives none), so `partx`
    /// adds them, and without their GPT names in sysfs: partdev then reads
    /// the GPT itself.
    pub fn shared_disk(&mut self, label: &str) -> [String; 2] {
        let img = self.dir.path().join("san.img");
        run_ok(Command::new("truncate").args(["-s", "64M"]).arg(&img));
        run_ok(
            Command::new("sgdisk")
                .args(["-n", "1:2048:0", "-t", "1:8300", "-c"])
                .arg(format!("1:{label}"))
                .arg(&img),
        );
        let out = run_ok(
            Command::new("losetup")
                .args(["-P", "-f", "--show"])
                .arg(&img),
        );
        let dev = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        self.loops.push(dev.clone());
        run_ok(Command::new("partx").arg("-u").arg(&dev));
        let disk = dev.trim_start_matches("/dev/").to_owned();
        let part = format!("{disk}p1");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Path::new("/dev").join(&part).exists() {
            assert!(Instant::now() < deadline, "no /dev/{part}");
            std::thread::sleep(Duration::from_millis(100));
        }
        run_ok(
            Command::new("mkfs.ext4")
                .args(["-q", "-F"])
                .arg(format!("/dev/{part}")),
        );
        [disk, part]
    }
}

fn pids(ns: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Anything still in a namespace (a daemon that escaped) goes too.
        for ns in &self.namespaces {
            for pid in pids(ns) {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
            }
        }
        for ns in self.namespaces.iter().rev() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !pids(ns).is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        for dev in &self.loops {
            let _ = Command::new("losetup").args(["-d", dev]).status();
        }
    }
}

/// A container's console, captured in a file.
#[derive(Debug)]
pub struct Console {
    pub path: PathBuf,
}

impl Console {
    pub fn text(&self) -> String {
        fs::read_to_string(&self.path).unwrap_or_default()
    }

    /// Waits until a line starting with `prefix` appears; returns it.
    pub fn wait_for(&self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.text().lines().find(|l| l.starts_with(prefix)) {
                return l.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no `{prefix}` on {} within {timeout:?}; it says:\n{}",
                self.path.display(),
                self.text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Polls `f` until it returns true or `timeout` passes; returns the time
/// it took, or None.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Some(start.elapsed());
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
