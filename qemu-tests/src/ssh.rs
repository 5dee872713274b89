//! The check channel of an image that runs no shell on a serial port (the
//! Debian host: no login without a key): SSH from the host side, as root
//! with the rig's own key, which the rehearsal's copy of the cluster
//! profile lists in `[admin] ssh_keys`.
//!
//! The host side is a network namespace of its own holding a tap device
//! plugged into the private segment (`vde_plug2tap`), with an address of
//! the cluster network that no node or VIP uses: no interface, route or
//! rule of the host's own network is touched.
//!
//! Each blade gets one SSH connection, kept open for all of its commands:
//! an OpenSSH control master (`ssh -M -N`, a child of the run, its socket
//! in the run's scratch directory), which every command joins as a
//! multiplexing client (`ssh -o ControlPath=...`), so that a command costs
//! a round trip and not a key exchange (seconds on a loaded TCG guest). A
//! master that has ended (the blade rebooted, or stopped answering its
//! keepalives) is started again before the next command; dropping the
//! target (its blade powered off) ends it.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::answer::{Output, ShellError};
use crate::run::{Run, Spawner};

/// The host side's interface in its namespace.
const TAP: &str = "rig0";

/// Busybox applets the checks use that a Debian root has only inside
/// busybox (`udhcpc`, `nslookup`, `ping`): linked once into this folder
/// (on the node's tmpfs) and put at the end of `PATH`.
const APPLETS: &str = "/run/vlx-rig/bin";

/// How long the namespace's tap may take to come up.
const UP_LIMIT: Duration = Duration::from_secs(10);

/// Keepalives of a blade's connection: a blade that answers none for
/// `INTERVAL * COUNT` is taken for gone and its master ends (the next
/// command opens a new one). Long enough for a TCG guest on a busy host to
/// miss a few.
const ALIVE_INTERVAL_S: u32 = 10;
const ALIVE_COUNT: u32 = 6;

/// A namespace on the private segment, for SSH to the blades.
#[derive(Debug)]
pub struct HostSide {
    child: Child,
    netns: PathBuf,
    pub addr: Ipv4Addr,
    spawner: Spawner,
    /// Where the blades' control sockets and master logs go.
    control_dir: PathBuf,
}

impl HostSide {
    /// Plugs a namespace with `addr/prefix` into the switch at `sock`.
    pub fn start(
        run: &Run,
        sock: &Path,
        addr: Ipv4Addr,
        prefix: u8,
        log: &Path,
    ) -> Result<HostSide, String> {
        let err = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let script = format!(
            "set -e; ip link set lo up; ip tuntap add dev {TAP} mode tap; \
             ip link set {TAP} up; ip addr add {addr}/{prefix} dev {TAP}; \
             exec vde_plug2tap -s {} {TAP}",
            shell_quote(&sock.display().to_string())
        );
        let mut cmd = Command::new("unshare");
        cmd.args(["--net", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err);
        let mut child = run
            .spawn(&mut cmd, "the host side of the private segment")
            .map_err(|e| e.to_string())?;
        let netns = PathBuf::from(format!("/proc/{}/ns/net", child.id()));
        let deadline = Instant::now() + UP_LIMIT;
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Err(format!(
                    "the host side's namespace exited at start ({st}; log {})",
                    log.display()
                ));
            }
            let o = Command::new("nsenter")
                .arg(format!("--net={}", netns.display()))
                .args(["ip", "-o", "-4", "addr", "show", "dev", TAP])
                .output()
                .map_err(|e| format!("nsenter: {e}"))?;
            if String::from_utf8_lossy(&o.stdout).contains(&format!("inet {addr}/")) {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the host side's {TAP} had no address {addr} within {} s (log {})",
                    UP_LIMIT.as_secs(),
                    log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let control_dir = run.dir().join("ssh");
        std::fs::create_dir_all(&control_dir)
            .map_err(|e| format!("{}: {e}", control_dir.display()))?;
        Ok(HostSide {
            child,
            netns,
            addr,
            spawner: run.spawner(),
            control_dir,
        })
    }

    /// The SSH channel to `ip` with `key`. Its connection opens with the
    /// first command.
    pub fn target(&self, name: &str, ip: Ipv4Addr, keys: &RigKey) -> SshTarget {
        SshTarget {
            name: name.to_owned(),
            netns: self.netns.clone(),
            ip,
            key: keys.private.clone(),
            known_hosts: keys.known_hosts.clone(),
            control: self.control_dir.join(format!("{name}.sock")),
            master_log: self.control_dir.join(format!("{name}.log")),
            spawner: self.spawner,
            master: Mutex::new(None),
            opened: Mutex::new(0),
        }
    }
}

impl Drop for HostSide {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The rig's own key pair, made per run.
#[derive(Debug, Clone)]
pub struct RigKey {
    pub private: PathBuf,
    /// The public key line, for `[admin] ssh_keys`.
    pub public: String,
    pub known_hosts: PathBuf,
}

impl RigKey {
    /// `ssh-keygen -t ed25519` into `dir`.
    pub fn make(dir: &Path) -> Result<RigKey, String> {
        let private = dir.join("rig-ssh-key");
        let o = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "vlx-rig"])
            .arg("-f")
            .arg(&private)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("ssh-keygen: {e}"))?;
        if !o.status.success() {
            return Err(format!(
                "ssh-keygen failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
        let pubfile = private.with_extension("pub");
        let public = std::fs::read_to_string(&pubfile)
            .map_err(|e| format!("{}: {e}", pubfile.display()))?
            .trim()
            .to_owned();
        Ok(RigKey {
            private,
            public,
            known_hosts: dir.join("known_hosts"),
        })
    }
}

/// One blade reached over SSH, through one connection kept open.
#[derive(Debug)]
pub struct SshTarget {
    pub name: String,
    netns: PathBuf,
    pub ip: Ipv4Addr,
    key: PathBuf,
    known_hosts: PathBuf,
    /// The control master's socket.
    control: PathBuf,
    /// The master's standard error, appended over its reopenings.
    master_log: PathBuf,
    spawner: Spawner,
    master: Mutex<Option<Child>>,
    /// How many times a master was started.
    opened: Mutex<u32>,
}

impl SshTarget {
    fn console(&self) -> String {
        format!("{} ssh root@{}", self.name, self.ip)
    }

    fn error(&self, command: &str, message: impl Into<String>) -> ShellError {
        ShellError::Ssh {
            console: self.console(),
            command: command.to_owned(),
            message: message.into(),
        }
    }

    /// How many connections to the blade were opened so far (one per
    /// boot, unless one broke).
    pub fn connections(&self) -> u32 {
        *lock(&self.opened)
    }

    /// `ssh` in the host side's namespace with the rig's key and options.
    fn ssh(&self) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.netns.display()))
            .arg("ssh")
            .arg("-i")
            .arg(&self.key)
            .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
            .args(["-o", "StrictHostKeyChecking=accept-new"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args(["-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"])
            .arg("-o")
            .arg(format!("ControlPath={}", self.control.display()));
        cmd
    }

    /// Makes sure a control master is connected to the blade: starts one
    /// when none runs (the first command, or the last one ended) and
    /// waits until its socket is there (ssh makes it once logged in).
    fn connect(&self, command: &str, limit: Duration) -> Result<(), ShellError> {
        let mut master = lock(&self.master);
        if let Some(child) = master.as_mut() {
            match child.try_wait() {
                Ok(None) if self.control.exists() => return Ok(()),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    *master = None;
                }
            }
        }
        // A socket left by a master that ended would make the next one
        // run without multiplexing.
        match std::fs::remove_file(&self.control) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(self.error(
                    command,
                    format!(
                        "removing the old control socket {}: {e}",
                        self.control.display()
                    ),
                ));
            }
            _ => {}
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.master_log)
            .map_err(|e| self.error(command, format!("{}: {e}", self.master_log.display())))?;
        let mut cmd = self.ssh();
        cmd.args(["-M", "-N", "-o", "ControlPersist=no"])
            .arg("-o")
            .arg(format!("ServerAliveInterval={ALIVE_INTERVAL_S}"))
            .arg("-o")
            .arg(format!("ServerAliveCountMax={ALIVE_COUNT}"))
            .arg(format!("root@{}", self.ip))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let mut child = self
            .spawner
            .spawn(&mut cmd, &format!("the SSH connection to {}", self.name))
            .map_err(|e| self.error(command, e.to_string()))?;
        *lock(&self.opened) += 1;
        let deadline = Instant::now() + limit;
        loop {
            if self.control.exists() {
                *master = Some(child);
                return Ok(());
            }
            if let Ok(Some(st)) = child.try_wait() {
                let said = std::fs::read_to_string(&self.master_log).unwrap_or_default();
                return Err(self.error(
                    command,
                    format!(
                        "ssh failed ({st}): {}",
                        said.lines().last().unwrap_or("nothing said").trim()
                    ),
                ));
            }
            if Instant::now() >= deadline || crate::run::interrupted() {
                let _ = child.kill();
                let _ = child.wait();
                return Err(self.error(
                    command,
                    format!("no SSH login within {} s", limit.as_secs()),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `command` (POSIX shell) as root on the blade over its
    /// connection; ssh's own failure (exit 255) is an error, any other
    /// status is the command's.
    pub fn run(&self, command: &str, limit: Duration) -> Result<Output, ShellError> {
        if crate::run::interrupted() {
            return Err(ShellError::Interrupted {
                console: self.console(),
            });
        }
        let start = Instant::now();
        self.connect(command, limit)?;
        let left = limit.saturating_sub(start.elapsed());
        let secs = left.as_secs().max(1);
        let remote = format!(
            "[ -e {APPLETS}/udhcpc ] || {{ mkdir -p {APPLETS} && busybox --install -s {APPLETS}; }}; \
             PATH=$PATH:{APPLETS}; export PATH; {command}"
        );
        // The client joins the master's connection (one that finds none,
        // as the master ended just now, logs in on its own instead).
        let mut ssh = self.ssh();
        ssh.args(["-o", "ControlMaster=no"])
            .arg(format!("root@{}", self.ip))
            .arg(&remote);
        let o = Command::new("timeout")
            .args(["-k", "5", &secs.to_string()])
            .arg(ssh.get_program())
            .args(ssh.get_args())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| self.error(command, format!("cannot run ssh: {e}")))?;
        let status = o.status.code().unwrap_or(-1);
        if status == 255 || status == 124 || status == 137 {
            return Err(self.error(
                command,
                if status == 255 {
                    format!("ssh failed: {}", String::from_utf8_lossy(&o.stderr).trim())
                } else {
                    format!("no answer within {secs} s")
                },
            ));
        }
        let lines = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        Ok(Output { lines, status })
    }

    /// Writes the local file `from` to `to` on the blade (mode 0644, its
    /// folder made), through the kept connection: `cat` reads it from
    /// ssh's standard input.
    pub fn send(
        &self,
        from: &std::path::Path,
        to: &str,
        limit: Duration,
    ) -> Result<(), ShellError> {
        let what = format!("sending {} to {to}", from.display());
        let file = std::fs::File::open(from).map_err(|e| self.error(&what, e.to_string()))?;
        let start = Instant::now();
        self.connect(&what, limit)?;
        let secs = limit.saturating_sub(start.elapsed()).as_secs().max(1);
        let q = shell_quote(to);
        let mut ssh = self.ssh();
        ssh.args(["-o", "ControlMaster=no"])
            .arg(format!("root@{}", self.ip))
            .arg(format!(
                "mkdir -p \"$(dirname {q})\" && cat > {q}.part && chmod 0644 {q}.part && mv {q}.part {q}"
            ));
        let o = Command::new("timeout")
            .args(["-k", "5", &secs.to_string()])
            .arg(ssh.get_program())
            .args(ssh.get_args())
            .stdin(file)
            .output()
            .map_err(|e| self.error(&what, format!("cannot run ssh: {e}")))?;
        if o.status.success() {
            Ok(())
        } else {
            Err(self.error(
                &what,
                format!(
                    "{}: {}",
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
            ))
        }
    }

    /// Waits until a login works (sshd starts late in a boot).
    pub fn ready(&self, limit: Duration) -> Result<(), ShellError> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.run(
                "true",
                left.clamp(Duration::from_secs(1), Duration::from_secs(30)),
            ) {
                Ok(o) if o.success() => return Ok(()),
                Ok(_) | Err(ShellError::Ssh { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_secs(2));
                }
                Ok(o) => {
                    return Err(self.error("true", format!("exit status {}", o.status)));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for SshTarget {
    fn drop(&mut self) {
        let master = self.master.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(mut child) = master.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.control);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
