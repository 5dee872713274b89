//! Commands on a VM's serial console (its `console.sock`), for checks that
//! need to look inside a guest.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long one command on a TCG guest's shell may take on a loaded
/// machine.
const ANSWER_WAIT: Duration = Duration::from_secs(180);

/// Runs `cmd` in the guest's shell and returns what it printed.
pub fn exec(sock: &Path, cmd: &str) -> anyhow::Result<String> {
    let mut s = UnixStream::connect(sock)
        .with_context(|| format!("connecting to console {}", sock.display()))?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    // The echoed command line reads `RIG-E''ND`; only the shell's output
    // reads `RIG-END`, so the echo is never taken for the answer.
    let line = format!("\necho RIG-BE''GIN; {cmd}; echo RIG-E''ND\n");
    s.write_all(line.as_bytes())
        .with_context(|| format!("writing to {}", sock.display()))?;
    let deadline = Instant::now() + ANSWER_WAIT;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => bail!("{}: console closed", sock.display()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", sock.display())),
        }
        let text = String::from_utf8_lossy(&out);
        if let (Some(a), Some(b)) = (text.find("RIG-BEGIN"), text.rfind("RIG-END")) {
            if a < b {
                return Ok(text[a + "RIG-BEGIN".len()..b].trim().to_owned());
            }
        }
        if Instant::now() > deadline {
            bail!(
                "{}: no answer to `{cmd}` in {ANSWER_WAIT:?}: {text}",
                sock.display()
            );
        }
    }
}
