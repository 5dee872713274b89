//! A private L2 segment for boot storms: a bridge in a network namespace of
//! its own, one namespace per host with an `eth0` on the bridge, and blades
//! that run their rendered boot services there (the node's own `net-up`,
//! then dnsmasq and mini_httpd exactly as the tiny image's rcS starts
//! them) in a chroot of their rendered files, in private mount and PID
//! namespaces. Nothing touches the host's own network: every address is
//! inside the namespaces. Everything is torn down on drop, also when a
//! storm fails half-way.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cluster::MacAddr;

/// Programs a blade's root gets from the build machine, where the tiny
/// image has them.
const PROGRAMS: [(&str, &str); 3] = [
    ("/usr/sbin/dnsmasq", "usr/sbin/dnsmasq"),
    ("/usr/sbin/mini_httpd", "usr/sbin/mini_httpd"),
    ("/bin/busybox", "bin/busybox"),
];

/// How long a blade may take from start to serving.
const START: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Segment {
    tag: String,
    namespaces: Vec<String>,
    blades: Vec<(String, Child)>,
}

impl Segment {
    /// A new segment; `tag` (a few letters) keeps concurrent segments apart.
    pub fn new(tag: &str) -> anyhow::Result<Segment> {
        let mut seg = Segment {
            tag: format!("vlxs{}{tag}", std::process::id()),
            namespaces: Vec::new(),
            blades: Vec::new(),
        };
        let sw = seg.add_ns("sw")?;
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        Ok(seg)
    }

    /// The network namespace of `host`.
    pub fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.tag)
    }

    fn add_ns(&mut self, host: &str) -> anyhow::Result<String> {
        let ns = self.ns(host);
        ip(&["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A host namespace with `eth0` (MAC `mac`, down) on the bridge.
    pub fn add_host(&mut self, host: &str, mac: MacAddr) -> anyhow::Result<String> {
        let ns = self.add_ns(host)?;
        let sw = self.ns("sw");
        let port = format!("p{}", self.namespaces.len());
        ip(&[
            "link", "add", "name", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port,
            "netns", &sw,
        ])?;
        ip(&[
            "-n",
            &ns,
            "link",
            "set",
            "eth0",
            "address",
            &mac.to_string(),
        ])?;
        ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"])?;
        Ok(ns)
    }

    /// A client host: `eth0` up with `addr/prefix`.
    pub fn add_client(
        &mut self,
        host: &str,
        mac: MacAddr,
        addr: Ipv4Addr,
        prefix: u8,
    ) -> anyhow::Result<String> {
        let ns = self.add_host(host, mac)?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/{prefix}"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        Ok(ns)
    }

    /// Starts blade `host` (added with [`Segment::add_host`]) from its
    /// staged `root` (see [`stage`]): `net-up` from its node.env, then
    /// dnsmasq and httpd as rcS starts them. Returns once dnsmasq has
    /// written its pid file and httpd accepts connections from `probe`'s
    /// namespace at `ip:port`; the blade's output goes to `log`.
    pub fn start_blade(
        &mut self,
        host: &str,
        root: &Path,
        log: &Path,
        probe: &str,
        at: SocketAddr,
    ) -> anyhow::Result<()> {
        let pidfile = root.join("var/run/dnsmasq.pid");
        let _ = fs::remove_file(&pidfile);
        let script = format!(
            r#"set -e
R='{root}'
mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
mount --bind /usr/lib/x86_64-linux-gnu "$R/usr/lib/x86_64-linux-gnu"
mount -o remount,bind,ro "$R/usr/lib/x86_64-linux-gnu"
mount --bind /lib64 "$R/lib64"
mount -t tmpfs -o mode=0755 vlxdev "$R/dev"
for d in null:1:3 zero:1:5 random:1:8 urandom:1:9; do
    name=${{d%%:*}}; mm=${{d#*:}}
    mknod -m 666 "$R/dev/$name" c "${{mm%%:*}}" "${{mm#*:}}"
done
exec chroot "$R" /bin/sh -c '
    set -e
    . /etc/vlx/node.env
    /usr/lib/vlx/net-up
    dnsmasq --keep-in-foreground -C /etc/dnsmasq.conf < /dev/null &
    mini_httpd -D -p "$VLX_HTTP_PORT" -d "$VLX_HTTP_ROOT" -u nobody < /dev/null &
    wait'
"#,
            root = root.display()
        );
        let out = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(host)])
            .args([
                "unshare",
                "-m",
                "-p",
                "-f",
                "--kill-child",
                "sh",
                "-c",
                &script,
            ])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting blade {host}"))?;
        self.blades.push((host.to_owned(), child));
        let t = Instant::now();
        loop {
            let dhcp = fs::metadata(&pidfile).is_ok_and(|m| m.len() > 0);
            if dhcp && connects(probe, at)? {
                return Ok(());
            }
            if let Some((_, c)) = self.blades.last_mut()
                && let Some(status) = c.try_wait()?
            {
                bail!(
                    "blade {host} stopped ({status}) before serving: {}",
                    fs::read_to_string(log).unwrap_or_default()
                );
            }
            if t.elapsed() > START {
                bail!(
                    "blade {host} did not serve DHCP and HTTP within {START:?}: {}",
                    fs::read_to_string(log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops every blade (its whole PID namespace goes with it) and waits
    /// until nothing of them runs.
    pub fn stop_blades(&mut self) {
        for (host, mut child) in self.blades.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
            let ns = format!("{}-{host}", self.tag);
            let deadline = Instant::now() + Duration::from_secs(10);
            while !pids(&ns).is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        self.stop_blades();
        // Anything still in a namespace (a daemon that escaped) goes too.
        for ns in &self.namespaces {
            for pid in pids(ns) {
                if let Ok(pid) = pid.parse::<libc::pid_t>() {
                    // SAFETY: kill has no memory effects.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        for ns in self.namespaces.iter().rev() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !pids(ns).is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Lays out a blade's root under `root`: its rendered files (`files`, as
/// the installer renders them, with the tiny image's runtime merged in),
/// the PXE tree at the HTTP and TFTP root, dnsmasq and busybox with every
/// applet, and mount points for the build machine's libraries.
pub fn stage(files: &[templating::Entry], tree: &Path, root: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(root).with_context(|| format!("making {}", root.display()))?;
    // Daemons that drop privileges read their files from here.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(root, fs::Permissions::from_mode(0o755))?;
    installer::render::write_tree(files, root)?;
    for d in [
        "bin",
        "usr/sbin",
        "usr/lib/x86_64-linux-gnu",
        "lib64",
        "proc",
        "sys",
        "dev",
        "var/run",
    ] {
        fs::create_dir_all(root.join(d))
            .with_context(|| format!("making {d} in {}", root.display()))?;
    }
    if !root.join("lib").exists() {
        std::os::unix::fs::symlink("usr/lib", root.join("lib"))?;
    }
    for (from, to) in PROGRAMS {
        fs::copy(from, root.join(to)).with_context(|| format!("copying {from}"))?;
    }
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .context("busybox --list")?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let at = root.join("bin").join(applet);
        if !at.exists() {
            std::os::unix::fs::symlink("busybox", at)?;
        }
    }
    let www = root.join(installer::render::TFTP_ROOT.trim_start_matches('/'));
    fs::create_dir_all(&www).with_context(|| format!("making {}", www.display()))?;
    for e in fs::read_dir(tree).with_context(|| format!("reading {}", tree.display()))? {
        let e = e?;
        let to = www.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to)?;
        } else {
            // A hard link where possible: four blades serve the same
            // bytes, as they read one meta volume.
            if fs::hard_link(e.path(), &to).is_err() {
                fs::copy(e.path(), &to)
                    .with_context(|| format!("copying {}", e.path().display()))?;
            }
        }
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(to)?;
    for e in fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()))?;
        } else {
            fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

/// The leases blade `root`'s dnsmasq handed out (its lease file's lines).
pub fn leases(root: &Path) -> usize {
    fs::read_to_string(root.join("var/lib/misc/dnsmasq.leases"))
        .map(|t| t.lines().filter(|l| !l.trim().is_empty()).count())
        .unwrap_or(0)
}

/// Runs `f` on a thread that has entered network namespace `ns`; sockets
/// it opens live there.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<anyhow::Result<T>> {
    let path = PathBuf::from("/run/netns").join(ns);
    std::thread::spawn(move || {
        enter(&path)?;
        Ok(f())
    })
}

/// Moves the calling thread into the network namespace at `path`.
pub fn enter(path: &Path) -> anyhow::Result<()> {
    let file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: setns on a valid descriptor changes only this thread's
    // network namespace; the file outlives the call.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        bail!(
            "entering network namespace {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// The kernel's count of connections namespace `ns` dropped because a
/// listening socket's accept queue was full (`TcpExt: ListenOverflows` of
/// its `/proc/net/netstat`).
pub fn listen_overflows(ns: &str) -> anyhow::Result<u64> {
    let text = in_netns(ns, || {
        std::fs::read_to_string("/proc/thread-self/net/netstat")
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the netstat thread panicked"))??
    .context("reading /proc/net/netstat")?;
    let mut tcp_ext = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (tcp_ext.next(), tcp_ext.next()) else {
        bail!("no TcpExt lines in /proc/net/netstat of {ns}");
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(k, _)| *k == "ListenOverflows")
        .and_then(|(_, v)| v.parse().ok())
        .with_context(|| format!("no ListenOverflows in /proc/net/netstat of {ns}"))
}

/// Whether a TCP connection from namespace `ns` to `at` succeeds.
fn connects(ns: &str, at: SocketAddr) -> anyhow::Result<bool> {
    in_netns(ns, move || {
        TcpStream::connect_timeout(&at, Duration::from_millis(500)).is_ok()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the probe thread panicked"))?
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn pids(ns: &str) -> Vec<String> {
    Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}
