//! A minimal QMP client: the blade's power button and plug.
//!
//! QEMU connects its monitor to a UNIX socket the rig listens on; the rig
//! accepts on first use, answers the greeting with `qmp_capabilities`, and
//! then sends commands one at a time, skipping asynchronous events.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("cannot listen on {path}: {source}")]
    Listen {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("QEMU did not connect to {path} within {} s", .waited.as_secs())]
    NoConnection { path: PathBuf, waited: Duration },
    #[error("QMP on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("QMP on {path}: QEMU closed the monitor")]
    Closed { path: PathBuf },
    #[error("QMP on {path}: `{command}` failed: {error}")]
    Command {
        path: PathBuf,
        command: String,
        error: String,
    },
    #[error("QMP on {path}: not JSON: {line}")]
    Garbled { path: PathBuf, line: String },
}

/// The monitor of one QEMU process.
#[derive(Debug)]
pub struct Qmp {
    path: PathBuf,
    listener: UnixListener,
    conn: Option<(BufReader<UnixStream>, UnixStream)>,
}

/// How long QEMU may take to connect, and to answer a command.
const LIMIT: Duration = Duration::from_secs(30);

impl Qmp {
    pub fn bind(path: &Path) -> Result<Qmp, QmpError> {
        let listener = UnixListener::bind(path).map_err(|source| QmpError::Listen {
            path: path.to_owned(),
            source,
        })?;
        Ok(Qmp {
            path: path.to_owned(),
            listener,
            conn: None,
        })
    }

    fn io(&self) -> impl Fn(std::io::Error) -> QmpError + '_ {
        |source| QmpError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn connect(&mut self) -> Result<(), QmpError> {
        if self.conn.is_some() {
            return Ok(());
        }
        let deadline = Instant::now() + LIMIT;
        let stream = loop {
            let mut pfd = libc::pollfd {
                fd: self.listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, for the duration of the call.
            if unsafe { libc::poll(&mut pfd, 1, 100) } > 0 {
                break self.listener.accept().map_err(self.io())?.0;
            }
            if Instant::now() > deadline {
                return Err(QmpError::NoConnection {
                    path: self.path.clone(),
                    waited: LIMIT,
                });
            }
        };
        stream.set_read_timeout(Some(LIMIT)).map_err(self.io())?;
        let writer = stream.try_clone().map_err(self.io())?;
        self.conn = Some((BufReader::new(stream), writer));
        // The greeting, then capabilities negotiation.
        let greeting = self.read()?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Garbled {
                path: self.path.clone(),
                line: greeting.to_string(),
            });
        }
        self.execute("qmp_capabilities")?;
        Ok(())
    }

    fn read(&mut self) -> Result<Value, QmpError> {
        let path = self.path.clone();
        let (reader, _) = self
            .conn
            .as_mut()
            .ok_or(QmpError::Closed { path: path.clone() })?;
        let mut line = String::new();
        let n = reader.read_line(&mut line).map_err(|source| QmpError::Io {
            path: path.clone(),
            source,
        })?;
        if n == 0 {
            return Err(QmpError::Closed { path });
        }
        serde_json::from_str(&line).map_err(|_| QmpError::Garbled { path, line })
    }

    /// Runs a QMP command without arguments and returns its `return` value.
    pub fn execute(&mut self, command: &str) -> Result<Value, QmpError> {
        self.connect()?;
        let path = self.path.clone();
        let (_, writer) = self
            .conn
            .as_mut()
            .ok_or(QmpError::Closed { path: path.clone() })?;
        let mut text = json!({ "execute": command }).to_string();
        text.push('\n');
        writer
            .write_all(text.as_bytes())
            .map_err(|source| QmpError::Io { path, source })?;
        loop {
            let v = self.read()?;
            if v.get("event").is_some() {
                continue;
            }
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(QmpError::Command {
                    path: self.path.clone(),
                    command: command.to_string(),
                    error: e.to_string(),
                });
            }
        }
    }

    /// Pulls the plug: QEMU exits at once, as a blade losing power.
    pub fn quit(&mut self) -> Result<(), QmpError> {
        match self.execute("quit") {
            Ok(_) | Err(QmpError::Closed { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Whether the guest's CPU runs (`query-status`).
    pub fn running(&mut self) -> Result<bool, QmpError> {
        let v = self.execute("query-status")?;
        Ok(v.get("running").and_then(Value::as_bool).unwrap_or(false))
    }
}
