//! The check channel: the root shell an image runs on its second serial
//! port (ttyS1), driven the way a person at that console would.
//!
//! Each command is sent as one line that prints a start marker, runs the
//! command in a subshell, and prints an end marker with its exit status:
//! `echo @vlx-b7; (CMD); echo @vlx-e7=$?`. The terminal echoes the line
//! back and the shell may print prompts, so markers are recognised at the
//! end of a line and only when expanded (the echoed line still holds `$?`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use crate::answer::{Output, ShellError};
use crate::console::{Console, WaitError};

/// How often [`Shell::ready`] knocks while the shell is not up yet.
const KNOCK: Duration = Duration::from_secs(2);

/// The check channel of a blade: the shell on its ttyS1 (a test image),
/// or SSH with the rig's key once the blade is up (any other image).
#[derive(Debug)]
pub struct Shell {
    console: Console,
    ssh: Option<crate::ssh::SshTarget>,
}

/// Command numbers, unique in the process so that a late answer to an
/// earlier command is never taken for a later one.
static NEXT: AtomicU64 = AtomicU64::new(1);

impl Shell {
    pub fn new(console: Console) -> Shell {
        Shell { console, ssh: None }
    }

    /// From now on, commands go over SSH to `target`.
    pub fn use_ssh(&mut self, target: crate::ssh::SshTarget) {
        self.ssh = Some(target);
    }

    pub fn console(&self) -> &Console {
        &self.console
    }

    /// Waits until the shell answers; bytes sent before the image opens
    /// ttyS1 are lost, so this knocks until it does.
    pub fn ready(&self, limit: Duration) -> Result<(), ShellError> {
        if let Some(t) = &self.ssh {
            return t.ready(limit);
        }
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.run(":", left.min(KNOCK)) {
                Ok(_) => return Ok(()),
                Err(ShellError::Wait { source, .. })
                    if matches!(*source, WaitError::Timeout { .. })
                        && Instant::now() < deadline => {}
                Err(ShellError::Wait { source, .. })
                    if matches!(*source, WaitError::Timeout { .. }) =>
                {
                    return Err(ShellError::NoShell {
                        console: self.console.name().to_string(),
                        waited: limit,
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Copies a local file onto the blade, over SSH only (a console
    /// shell carries lines, not files).
    pub fn send(
        &self,
        from: &std::path::Path,
        to: &str,
        limit: Duration,
    ) -> Result<(), ShellError> {
        match &self.ssh {
            Some(t) => t.send(from, to, limit),
            None => Err(ShellError::NoFiles {
                console: self.console.name().to_string(),
            }),
        }
    }

    /// Runs `command` (one line of POSIX shell) and returns its output and
    /// exit status.
    pub fn run(&self, command: &str, limit: Duration) -> Result<Output, ShellError> {
        if let Some(t) = &self.ssh {
            return t.run(command, limit);
        }
        if crate::run::interrupted() {
            return Err(ShellError::Interrupted {
                console: self.console.name().to_string(),
            });
        }
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let begin = format!("@vlx-b{n}");
        let end = format!("@vlx-e{n}=");
        let from = self.console.cursor();
        self.console
            .send(format!("echo {begin}; ({command}); echo {end}$?\n").as_bytes())?;
        let wait_err = |source| ShellError::Wait {
            console: self.console.name().to_string(),
            command: command.to_string(),
            source: Box::new(source),
        };
        let (_, _, start) = self
            .console
            .wait_for(&format!("the start of `{command}`"), from, limit, |l| {
                (l.ends_with(&begin) && !l.contains("echo ")).then_some(Ok(()))
            })
            .map_err(wait_err)?;
        let (status, _, stop) = self
            .console
            .wait_for(&format!("the end of `{command}`"), start + 1, limit, |l| {
                end_status(l, &end).map(Ok)
            })
            .map_err(wait_err)?;
        let all = self.console.lines();
        let mut lines: Vec<String> = all[start + 1..stop]
            .iter()
            .map(|l| l.text.clone())
            .collect();
        // Output without a final newline shares its line with the marker.
        if let Some(head) = all[stop].text.rfind(&end).map(|i| &all[stop].text[..i])
            && !head.is_empty()
        {
            lines.push(head.to_string());
        }
        Ok(Output { lines, status })
    }
}

/// The exit status in a line ending in `@vlx-eN=STATUS`.
fn end_status(line: &str, end: &str) -> Option<i32> {
    let at = line.rfind(end)?;
    let digits = &line[at + end.len()..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_markers_need_an_expanded_status() {
        assert_eq!(end_status("@vlx-e3=0", "@vlx-e3="), Some(0));
        assert_eq!(end_status("~ # @vlx-e3=127", "@vlx-e3="), Some(127));
        assert_eq!(end_status("partial@vlx-e3=1", "@vlx-e3="), Some(1));
        assert_eq!(end_status("~ # echo @vlx-e3=$?", "@vlx-e3="), None);
        assert_eq!(end_status("@vlx-e3=", "@vlx-e3="), None);
        assert_eq!(end_status("@vlx-e31=0", "@vlx-e3="), None);
    }
}
