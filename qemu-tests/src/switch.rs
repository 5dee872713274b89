//! The private L2 segment: one `vde_switch` that every blade's NIC plugs
//! into. It is a process talking over UNIX sockets in the run's scratch
//! directory: no interface, bridge, route or firewall rule of the host is
//! touched, and nothing on the segment can reach the host's network.

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::run::{Run, RunError};

pub const VDE_SWITCH: &str = "vde_switch";

/// How long `vde_switch` may take to create its control socket.
const START_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error(transparent)]
    Spawn(#[from] RunError),
    #[error("vde_switch for {sock} did not create its control socket within {secs} s (log: {log})")]
    NotReady {
        sock: PathBuf,
        secs: u64,
        log: PathBuf,
    },
    #[error("vde_switch for {sock} exited at start ({status}; log: {log})")]
    Exited {
        sock: PathBuf,
        status: String,
        log: PathBuf,
    },
    #[error("cannot create {path}: {source}")]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A running switch. Dropping it stops the switch.
#[derive(Debug)]
pub struct Switch {
    sock: PathBuf,
    child: Child,
    /// `vde_switch` reads management commands from stdin and exits at its
    /// end; holding the pipe open keeps it running, and the rig's exit (by
    /// any means) closes it.
    _stdin: Option<ChildStdin>,
}

impl Switch {
    /// Starts a switch with its sockets in `sock` (a directory it creates)
    /// and room for `ports` NICs.
    pub fn start(run: &Run, sock: &Path, ports: usize) -> Result<Switch, SwitchError> {
        let log = sock.with_extension("log");
        let err = std::fs::File::create(&log).map_err(|source| SwitchError::Log {
            path: log.clone(),
            source,
        })?;
        let mut cmd = Command::new(VDE_SWITCH);
        cmd.arg("--sock")
            .arg(sock)
            .args(["--numports", &ports.max(2).to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(err);
        let mut child = run.spawn(&mut cmd, "the private L2 segment")?;
        let stdin = child.stdin.take();
        let ctl = sock.join("ctl");
        let deadline = Instant::now() + START_LIMIT;
        while !ctl.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(SwitchError::Exited {
                    sock: sock.to_owned(),
                    status: status.to_string(),
                    log,
                });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SwitchError::NotReady {
                    sock: sock.to_owned(),
                    secs: START_LIMIT.as_secs(),
                    log,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Switch {
            sock: sock.to_owned(),
            child,
            _stdin: stdin,
        })
    }

    /// The directory QEMU's `-netdev vde,sock=` names.
    pub fn sock(&self) -> &Path {
        &self.sock
    }

    /// Whether the switch still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
