//! A QMP client for QEMU processes that listen on a UNIX socket
//! (`-qmp unix:PATH,server=on,wait=off`), so that a VM outlives the agent
//! that started it and any later agent re-adopts it by its socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};

/// How long QEMU may take to answer one command (a migration to a file is
/// started by `migrate` and polled, so no command waits for long).
const ANSWER_WAIT: Duration = Duration::from_secs(30);

/// One monitor connection.
#[derive(Debug)]
pub struct Qmp {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects, reads the greeting and leaves capability negotiation.
    pub fn connect(path: &Path) -> anyhow::Result<Qmp> {
        let s = UnixStream::connect(path)
            .with_context(|| format!("connecting to QMP socket {}", path.display()))?;
        s.set_read_timeout(Some(ANSWER_WAIT))?;
        let writer = s.try_clone()?;
        let mut q = Qmp {
            path: path.to_owned(),
            reader: BufReader::new(s),
            writer,
        };
        let greeting = q.read()?;
        if greeting.get("QMP").is_none() {
            bail!("{}: no QMP greeting: {greeting}", path.display());
        }
        q.execute("qmp_capabilities", json!({}))?;
        Ok(q)
    }

    fn read(&mut self) -> anyhow::Result<Value> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .with_context(|| format!("reading QMP {}", self.path.display()))?;
        if n == 0 {
            bail!("QMP {}: QEMU closed the monitor", self.path.display());
        }
        serde_json::from_str(&line)
            .with_context(|| format!("QMP {}: not JSON: {line}", self.path.display()))
    }

    /// Runs a command and returns its `return` value; events in between are
    /// skipped.
    pub fn execute(&mut self, command: &str, args: Value) -> anyhow::Result<Value> {
        let msg = json!({ "execute": command, "arguments": args });
        writeln!(self.writer, "{msg}")
            .with_context(|| format!("writing QMP {}", self.path.display()))?;
        loop {
            let v = self.read()?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(anyhow!(
                    "QMP {}: `{command}` failed: {}",
                    self.path.display(),
                    e.get("desc")
                        .and_then(Value::as_str)
                        .unwrap_or("no description")
                ));
            }
        }
    }

    /// The VM's run state (`running`, `paused`, `postmigrate`, `inmigrate`…).
    pub fn status(&mut self) -> anyhow::Result<String> {
        let r = self.execute("query-status", json!({}))?;
        Ok(r.get("status")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned())
    }

    /// The migration's state (`active`, `completed`, `failed`…), if any.
    pub fn migration(&mut self) -> anyhow::Result<Option<String>> {
        let r = self.execute("query-migrate", json!({}))?;
        Ok(r.get("status").and_then(Value::as_str).map(str::to_owned))
    }

    /// Ends QEMU. The monitor closes under us; that is the answer.
    pub fn quit(mut self) -> anyhow::Result<()> {
        match self.execute("quit", json!({})) {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("closed the monitor") => Ok(()),
            Err(e) => Err(e),
        }
    }
}
