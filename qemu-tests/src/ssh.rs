//! The check channel of an image that runs no shell on a serial port (the
//! Debian host: no login without a key): SSH from the host side, as root
//! with the rig's own key, which the rehearsal's copy of the cluster
//! profile lists in `[admin] ssh_keys`.
//!
//! The host side is a network namespace of its own holding a tap device
//! plugged into the private segment (`vde_plug2tap`), with an address of
//! the cluster network that no node or VIP uses: no interface, route or
//! rule of the host's own network is touched. Each command is one
//! `nsenter --net=... ssh ...` run.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::answer::{Output, ShellError};
use crate::run::Run;

/// The host side's interface in its namespace.
const TAP: &str = "rig0";

/// Busybox applets the checks use that a Debian root has only inside
/// busybox (`udhcpc`, `nslookup`, `ping`): linked once into this folder
/// (on the node's tmpfs) and put at the end of `PATH`.
const APPLETS: &str = "/run/vlx-rig/bin";

/// How long the namespace's tap may take to come up.
const UP_LIMIT: Duration = Duration::from_secs(10);

/// A namespace on the private segment, for SSH to the blades.
#[derive(Debug)]
pub struct HostSide {
    child: Child,
    netns: PathBuf,
    pub addr: Ipv4Addr,
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
        Ok(HostSide { child, netns, addr })
    }

    /// The SSH channel to `ip` with `key`.
    pub fn target(&self, name: &str, ip: Ipv4Addr, keys: &RigKey) -> SshTarget {
        SshTarget {
            name: name.to_owned(),
            netns: self.netns.clone(),
            ip,
            key: keys.private.clone(),
            known_hosts: keys.known_hosts.clone(),
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

/// One blade reached over SSH.
#[derive(Debug, Clone)]
pub struct SshTarget {
    pub name: String,
    netns: PathBuf,
    pub ip: Ipv4Addr,
    key: PathBuf,
    known_hosts: PathBuf,
}

impl SshTarget {
    fn console(&self) -> String {
        format!("{} ssh root@{}", self.name, self.ip)
    }

    /// Runs `command` (POSIX shell) as root on the blade; ssh's own
    /// failure (exit 255) is an error, any other status is the command's.
    pub fn run(&self, command: &str, limit: Duration) -> Result<Output, ShellError> {
        if crate::run::interrupted() {
            return Err(ShellError::Interrupted {
                console: self.console(),
            });
        }
        let secs = limit.as_secs().max(1);
        let remote = format!(
            "[ -e {APPLETS}/udhcpc ] || {{ mkdir -p {APPLETS} && busybox --install -s {APPLETS}; }}; \
             PATH=$PATH:{APPLETS}; export PATH; {command}"
        );
        let o = Command::new("timeout")
            .args(["-k", "5", &secs.to_string()])
            .arg("nsenter")
            .arg(format!("--net={}", self.netns.display()))
            .arg("ssh")
            .arg("-i")
            .arg(&self.key)
            .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
            .args(["-o", "StrictHostKeyChecking=accept-new"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args(["-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"])
            .arg(format!("root@{}", self.ip))
            .arg(&remote)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| ShellError::Ssh {
                console: self.console(),
                command: command.to_owned(),
                message: format!("cannot run ssh: {e}"),
            })?;
        let status = o.status.code().unwrap_or(-1);
        if status == 255 || status == 124 || status == 137 {
            return Err(ShellError::Ssh {
                console: self.console(),
                command: command.to_owned(),
                message: if status == 255 {
                    format!("ssh failed: {}", String::from_utf8_lossy(&o.stderr).trim())
                } else {
                    format!("no answer within {secs} s")
                },
            });
        }
        let lines = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        Ok(Output { lines, status })
    }

    /// Waits until a login works (sshd starts late in a boot).
    pub fn ready(&self, limit: Duration) -> Result<(), ShellError> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.run(
                "true",
                left.clamp(Duration::from_secs(1), Duration::from_secs(20)),
            ) {
                Ok(o) if o.success() => return Ok(()),
                Ok(_) | Err(ShellError::Ssh { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_secs(2));
                }
                Ok(o) => {
                    return Err(ShellError::Ssh {
                        console: self.console(),
                        command: "true".into(),
                        message: format!("exit status {}", o.status),
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
