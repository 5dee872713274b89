//! A QMP client for QEMU processes that listen on a UNIX socket
//! (`-qmp unix:PATH,server=on,wait=off`), so that a VM outlives the agent
//! that started it and any later agent re-adopts it by its socket.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};

/// How long QEMU may take to answer one command (a migration to a file is
/// started by `migrate` and polled, so no command waits for long).
const ANSWER_WAIT: Duration = Duration::from_secs(30);

/// What a closed monitor's error ends with.
const CLOSED: &str = "QEMU closed the monitor";

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

    /// The error of a monitor that QEMU closed (it does so only as it
    /// exits), whichever way the socket said so.
    fn closed(&self) -> anyhow::Error {
        anyhow!("QMP {}: {CLOSED}", self.path.display())
    }

    fn read(&mut self) -> anyhow::Result<Value> {
        let mut line = String::new();
        let n = match self.reader.read_line(&mut line) {
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Err(self.closed()),
            r => r.with_context(|| format!("reading QMP {}", self.path.display()))?,
        };
        if n == 0 {
            return Err(self.closed());
        }
        serde_json::from_str(&line)
            .with_context(|| format!("QMP {}: not JSON: {line}", self.path.display()))
    }

    /// Runs a command and returns its `return` value; events in between are
    /// skipped.
    pub fn execute(&mut self, command: &str, args: Value) -> anyhow::Result<Value> {
        let msg = json!({ "execute": command, "arguments": args });
        // A monitor closed before the command is written fails the write
        // (EPIPE), not the read: the same closed monitor.
        match writeln!(self.writer, "{msg}") {
            Err(e) if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) => {
                return Err(self.closed());
            }
            r => r.with_context(|| format!("writing QMP {}", self.path.display()))?,
        }
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

    /// The migration's state (`active`, `completed`, `failed`…), if any,
    /// and, when it failed, QEMU's reason
    /// (`error-desc`, e.g. what the `exec:` command's pipe said).
    pub fn migration_status(&mut self) -> anyhow::Result<(Option<String>, Option<String>)> {
        let r = self.execute("query-migrate", json!({}))?;
        let text = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_owned);
        Ok((text("status"), text("error-desc")))
    }

    /// Ends QEMU. The monitor closes under us; that is the answer, also
    /// when it closed before `quit` was written (a QEMU already exiting).
    pub fn quit(mut self) -> anyhow::Result<()> {
        match self.execute("quit", json!({})) {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().ends_with(CLOSED) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Shutdown;
    use std::os::unix::net::UnixListener;

    type Conn = (BufReader<UnixStream>, UnixStream);

    /// A monitor that greets, accepts `qmp_capabilities`, then does what
    /// `then` does with the connection.
    fn monitor(then: impl FnOnce(Conn) + Send + 'static) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            writeln!(s, "{}", json!({"QMP": {"version": {}}})).unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert!(line.contains("qmp_capabilities"), "{line}");
            writeln!(s, "{}", json!({"return": {}})).unwrap();
            then((r, s));
        });
        (dir, path)
    }

    /// A monitor that closes the connection (as an exiting QEMU does) right
    /// after the greeting; the receiver hears when it has.
    fn closing() -> (tempfile::TempDir, PathBuf, std::sync::mpsc::Receiver<()>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let (dir, path) = monitor(move |(_r, s)| {
            s.shutdown(Shutdown::Both).unwrap();
            tx.send(()).unwrap();
        });
        (dir, path, rx)
    }

    #[test]
    fn quit_accepts_a_monitor_closed_before_the_command() {
        let (_dir, path, closed) = closing();
        let q = Qmp::connect(&path).unwrap();
        closed.recv().unwrap();
        // The peer is gone: the write of `quit` fails with EPIPE.
        q.quit().unwrap();
    }

    #[test]
    fn a_closed_monitor_fails_other_commands_saying_so() {
        let (_dir, path, closed) = closing();
        let mut q = Qmp::connect(&path).unwrap();
        closed.recv().unwrap();
        let e = q.execute("stop", json!({})).unwrap_err().to_string();
        assert!(e.ends_with(CLOSED), "{e}");
    }

    #[test]
    fn quit_fails_on_an_error_answer() {
        let (_dir, path) = monitor(|(mut r, mut s)| {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert!(line.contains("quit"), "{line}");
            writeln!(s, "{}", json!({"error": {"desc": "no"}})).unwrap();
            // Keep the connection until the client has read the answer.
            let _ = r.read_line(&mut line);
        });
        let q = Qmp::connect(&path).unwrap();
        let e = q.quit().unwrap_err().to_string();
        assert!(e.contains("`quit` failed: no"), "{e}");
    }
}
