//! A real etcd on loopback for tests, and the tools to drive it.

#![allow(dead_code)]

/// The tiny guest, built in `dir`.
pub fn tiny(dir: &Path) -> vc::tiny::TinyGuest {
    vc::tiny::build(dir).expect("building the tiny guest")
}

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long etcd may take to answer after it starts (a loaded shared
/// machine); a wait, not an assertion on speed.
const START_WAIT: Duration = Duration::from_secs(60);

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("vc/ has a parent")
        .to_path_buf()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a free loopback port")
        .port()
}

/// `program`, inside the network namespace `ns` when given.
pub fn in_ns(ns: Option<&str>, program: &str) -> Command {
    match ns {
        None => Command::new(program),
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
    }
}

/// One etcd member in a temporary directory, killed on drop.
pub struct EtcdServer {
    child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
    /// The network namespace it and its clients run in.
    pub netns: Option<String>,
}

impl EtcdServer {
    /// Builds the tiny guest in `dir` and imports it as guest `tiny` into
    /// the shared folder `shared` (made here), with a 64 MiB base image.
    pub fn import_tiny(&self, dir: &Path, shared: &Path) {
        std::fs::create_dir_all(shared).expect("shared");
        let g = tiny(dir);
        let o = self.vlx_vc(&[
            "import-guest",
            "tiny",
            "--tarball",
            &g.tarball.display().to_string(),
            "--kernel",
            &g.kernel.display().to_string(),
            "--initrd",
            &g.initrd.display().to_string(),
            "--shared",
            &shared.display().to_string(),
            "--size",
            "64MiB",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }

    pub fn start() -> EtcdServer {
        EtcdServer::start_in(None)
    }

    /// A member inside the network namespace `ns` (its loopback must be up).
    pub fn start_in(ns: Option<&str>) -> EtcdServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let (client, peer) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("etcd log");
        let child = in_ns(ns, "etcd")
            .arg("--name=t")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={url}"))
            .arg(format!("--advertise-client-urls={url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=t={peer_url}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting etcd (Debian package etcd-server; `cargo xtask deps` installs it)");
        let mut s = EtcdServer {
            child,
            url,
            dir,
            netns: ns.map(str::to_owned),
        };
        let deadline = Instant::now() + START_WAIT;
        loop {
            let o = s.etcdctl(&["endpoint", "health"]);
            if o.status.success() {
                return s;
            }
            if let Ok(Some(st)) = s.child.try_wait() {
                panic!("etcd exited with {st}: {}", s.log());
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not answer within {START_WAIT:?}: {}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    /// Kills the member (SIGKILL), as a lost blade or a cut cable would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Runs `etcdctl` (v3 API) against this member.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        in_ns(self.netns.as_deref(), "etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.url))
            .args(args)
            .output()
            .expect("running etcdctl (Debian package etcd-client)")
    }

    pub fn put(&self, key: &str, value: &str) {
        let o = self.etcdctl(&["put", key, value]);
        assert!(o.status.success(), "etcdctl put {key}: {o:?}");
    }

    /// Every key under `prefix`, as etcdctl lists them.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let o = self.etcdctl(&["get", "--prefix", "--keys-only", prefix]);
        assert!(o.status.success(), "etcdctl get {prefix}: {o:?}");
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The blades of `profiles/vcs/blades-demo.toml` and the guest `tiny`,
    /// as the agents and the guest import would register them.
    pub fn demo_cluster(&self) {
        for b in ["blade01", "blade02", "blade03"] {
            self.put(
                &format!("/vlx/blades/{b}"),
                r#"{"cores":2,"memory":1073741824}"#,
            );
        }
        self.put("/vlx/guests/tiny", r#"{"base":"guests/tiny/base.raw"}"#);
    }

    /// Runs `vlx-vc ARGS --etcd URL`.
    pub fn vlx_vc(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--etcd", &self.url]);
        match &self.netns {
            None => vlx_vc(&all),
            Some(ns) => in_ns(Some(ns), env!("CARGO_BIN_EXE_vlx-vc"))
                .args(&all)
                .current_dir(repo())
                .env_remove("VLX_ETCD")
                .output()
                .expect("running vlx-vc"),
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `vlx-vc ARGS` in the repository, without `$VLX_ETCD`.
pub fn vlx_vc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vlx-vc"))
        .args(args)
        .current_dir(repo())
        .env_remove("VLX_ETCD")
        .output()
        .expect("running vlx-vc")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn json(o: &Output) -> serde_json::Value {
    assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
    serde_json::from_slice(&o.stdout).expect("JSON on stdout")
}

/// The blade of every VM in a `vms` array, in order.
pub fn blades_of(v: &serde_json::Value) -> Vec<String> {
    v["vms"]
        .as_array()
        .expect("vms")
        .iter()
        .map(|vm| vm["blade"].as_str().expect("blade").to_owned())
        .collect()
}

/// One `vlx-vcd`, killed with SIGKILL on drop (its VMs stay, as after a
/// crash).
pub struct Vcd {
    child: Child,
    pub log: PathBuf,
}

impl Vcd {
    pub fn start(etcd: &str, blade: &str, shared: &Path, run: &Path, log_dir: &Path) -> Vcd {
        let log = log_dir.join(format!("vcd-{blade}.log"));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("agent log");
        let child = Command::new(env!("CARGO_BIN_EXE_vlx-vcd"))
            .args([
                "--blade", blade, "--cores", "2", "--memory", "1GiB", "--ttl", "5",
            ])
            .arg("--shared")
            .arg(shared)
            .arg("--run")
            .arg(run)
            // Nothing of the host's: no settings file to record.
            .arg("--net-settings")
            .arg(run.join("no-vc-net.toml"))
            .args(["--etcd", etcd])
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .expect("starting vlx-vcd");
        Vcd { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Vcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `f` until it gives a value; fails naming `what` and `context()`
/// after `limit` (a wait for a slow machine, not a speed check).
pub fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> Option<T>,
    context: &dyn Fn() -> String,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether a process with this pid exists.
pub fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Kills, on drop, every QEMU whose `qemu.pid` lies under its folder: the
/// VMs are daemons that outlive their agent by design, so a test that
/// fails before `destroy` would otherwise leave them running. Declare it
/// right after the temporary folder, so that it drops before the folder.
pub struct Reaper(pub PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        fn walk(dir: &Path) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p);
                } else if p.file_name().is_some_and(|n| n == "qemu.pid") {
                    let pid = std::fs::read_to_string(&p).unwrap_or_default();
                    if let Ok(pid) = pid.trim().parse::<i32>() {
                        // SAFETY: kill(2) with a pid read from the VM's own
                        // pid file; a pid that has gone gives ESRCH.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
        }
        walk(&self.0);
    }
}

/// A network namespace for one test (`PREFIX-t<pid>`) with loopback up and
/// the blade's cluster address 10.0.1.1/32 on it (this kernel has no dummy
/// links); deleted on drop with every process inside it.
pub struct Ns(pub String);

impl Ns {
    pub fn create(prefix: &str) -> Ns {
        let name = format!("{prefix}-t{}", std::process::id());
        let o = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("running ip (Debian iproute2)");
        assert!(
            o.status.success(),
            "ip netns add {name} (this test needs root): {}",
            stderr(&o)
        );
        let ns = Ns(name);
        ns.ip(&["link", "set", "lo", "up"]);
        ns.ip(&["addr", "add", "10.0.1.1/32", "dev", "lo"]);
        ns
    }

    /// `ip -n NS ARGS...`, which must succeed; its standard output.
    pub fn ip(&self, args: &[&str]) -> String {
        let o = Command::new("ip")
            .args(["-n", &self.0])
            .args(args)
            .output()
            .expect("running ip");
        assert!(
            o.status.success(),
            "ip -n {} {}: {}",
            self.0,
            args.join(" "),
            stderr(&o)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        if let Ok(o) = Command::new("ip").args(["netns", "pids", &self.0]).output() {
            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}
