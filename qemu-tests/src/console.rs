//! A blade's serial port, as timestamped lines.
//!
//! QEMU connects each serial port to a UNIX socket the rig listens on, so
//! nothing the guest prints is lost before the rig reads it. A reader
//! thread turns the byte stream into lines (without terminal escapes,
//! carriage returns and backspaces), stamps each with the time since the
//! run started, appends it to the console log, and wakes anyone waiting
//! for a marker.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::run;

/// How long QEMU may take to connect to the socket after it starts.
const ACCEPT_LIMIT: Duration = Duration::from_secs(60);
/// Lines of console shown in an error.
pub const TAIL: usize = 25;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("cannot listen on {path}: {source}")]
    Listen {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the console log {path}: {source}")]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the reader of {name}: {source}")]
    Thread {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write to {name}: {reason}")]
    Write { name: String, reason: String },
}

/// Why a wait for a console line ended without it.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("{console}: no {what} within {} s; last lines:\n{}", .waited.as_secs(), indent(.tail))]
    Timeout {
        console: String,
        what: String,
        waited: Duration,
        tail: Vec<String>,
    },
    #[error("{console}: {reason} (while waiting for {what}); last lines:\n{}", indent(.tail))]
    Failed {
        console: String,
        what: String,
        reason: String,
        tail: Vec<String>,
    },
    #[error("{console}: the blade powered off before {what}; last lines:\n{}", indent(.tail))]
    Closed {
        console: String,
        what: String,
        tail: Vec<String>,
    },
    #[error("{console}: interrupted while waiting for {what}")]
    Interrupted { console: String, what: String },
}

impl WaitError {
    /// The console's last lines at the time of the error.
    pub fn tail(&self) -> &[String] {
        match self {
            WaitError::Timeout { tail, .. }
            | WaitError::Failed { tail, .. }
            | WaitError::Closed { tail, .. } => tail,
            WaitError::Interrupted { .. } => &[],
        }
    }
}

fn indent(lines: &[String]) -> String {
    if lines.is_empty() {
        return "    (nothing)".into();
    }
    lines
        .iter()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One line of a console, with the time it ended (since the run started).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub at: Duration,
    pub text: String,
}

/// A socket QEMU will connect a serial port to.
#[derive(Debug)]
pub struct Listening {
    listener: UnixListener,
    path: PathBuf,
}

impl Listening {
    /// Listens on `path` (which must not exist yet).
    pub fn bind(path: &Path) -> Result<Listening, ConsoleError> {
        let listener = UnixListener::bind(path).map_err(|source| ConsoleError::Listen {
            path: path.to_owned(),
            source,
        })?;
        Ok(Listening {
            listener,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts reading what QEMU sends once it connects. `name` names the
    /// console in errors ("blade01 ttyS0"); lines go to `log` (appended).
    pub fn attach(self, name: &str, log: &Path, t0: Instant) -> Result<Console, ConsoleError> {
        let file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|source| ConsoleError::Log {
                path: log.to_owned(),
                source,
            })?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                lines: Vec::new(),
                partial: String::new(),
                first_byte: None,
                closed: false,
                writer: None,
                log: file,
            }),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let console = Console {
            name: name.to_string(),
            shared: shared.clone(),
            t0,
        };
        let thread_name = format!("console {name}");
        std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || reader(self.listener, shared, t0))
            .map_err(|source| ConsoleError::Thread {
                name: name.to_string(),
                source,
            })?;
        Ok(console)
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    cv: Condvar,
    /// Set when the console is dropped, so that a reader still waiting for
    /// QEMU to connect gives up.
    stop: AtomicBool,
}

#[derive(Debug)]
struct State {
    lines: Vec<Line>,
    partial: String,
    first_byte: Option<Duration>,
    closed: bool,
    writer: Option<UnixStream>,
    log: File,
}

/// The lines of one serial port of one power-on of a blade.
#[derive(Debug)]
pub struct Console {
    name: String,
    shared: Arc<Shared>,
    t0: Instant,
}

impl Drop for Console {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

impl Console {
    pub fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Count of complete lines so far: a cursor for [`Console::wait_for`].
    pub fn cursor(&self) -> usize {
        self.lock().lines.len()
    }

    /// Every complete line so far.
    pub fn lines(&self) -> Vec<Line> {
        self.lock().lines.clone()
    }

    /// When the first byte arrived (since the run started).
    pub fn first_byte(&self) -> Option<Duration> {
        self.lock().first_byte
    }

    /// Whether QEMU has closed the port (the blade is off).
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// The last `n` lines, with the unfinished one.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let s = self.lock();
        tail_of(&s, n)
    }

    /// Writes a note of the rig's own into the console log.
    pub fn note(&self, text: &str) {
        let at = self.t0.elapsed();
        let mut s = self.lock();
        let _ = writeln!(s.log, "[{:>9.3}] --- {text}", at.as_secs_f64());
    }

    /// Sends `bytes` to the guest (the shell channel).
    pub fn send(&self, bytes: &[u8]) -> Result<(), ConsoleError> {
        let mut s = self.lock();
        let closed = s.closed;
        let w = s.writer.as_mut().ok_or_else(|| ConsoleError::Write {
            name: self.name.clone(),
            reason: if closed {
                "the blade is off (QEMU closed the port)".into()
            } else {
                "QEMU has not connected yet".into()
            },
        })?;
        w.write_all(bytes)
            .and_then(|()| w.flush())
            .map_err(|e| ConsoleError::Write {
                name: self.name.clone(),
                reason: e.to_string(),
            })
    }

    /// Waits until `check` accepts a line from index `from` on: it returns
    /// `Some(Ok(v))` for the line waited for, `Some(Err(reason))` for a line
    /// that means it will never come (a kernel panic), `None` otherwise.
    /// Returns the value, the line and its index.
    pub fn wait_for<T>(
        &self,
        what: &str,
        from: usize,
        limit: Duration,
        mut check: impl FnMut(&str) -> Option<Result<T, String>>,
    ) -> Result<(T, Line, usize), WaitError> {
        let deadline = Instant::now() + limit;
        let mut next = from;
        let mut s = self.lock();
        loop {
            while next < s.lines.len() {
                let line = &s.lines[next];
                match check(&line.text) {
                    Some(Ok(v)) => return Ok((v, line.clone(), next)),
                    Some(Err(reason)) => {
                        return Err(WaitError::Failed {
                            console: self.name.clone(),
                            what: what.to_string(),
                            reason,
                            tail: tail_of(&s, TAIL),
                        });
                    }
                    None => next += 1,
                }
            }
            if run::interrupted() {
                return Err(WaitError::Interrupted {
                    console: self.name.clone(),
                    what: what.to_string(),
                });
            }
            if s.closed {
                return Err(WaitError::Closed {
                    console: self.name.clone(),
                    what: what.to_string(),
                    tail: tail_of(&s, TAIL),
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(WaitError::Timeout {
                    console: self.name.clone(),
                    what: what.to_string(),
                    waited: limit,
                    tail: tail_of(&s, TAIL),
                });
            }
            // Wake now and then to notice an interruption.
            let slice = (deadline - now).min(Duration::from_millis(500));
            s = self
                .shared
                .cv
                .wait_timeout(s, slice)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits for a line containing `marker` as a whole word (so that
    /// `ready blade01` does not match `ready blade010`), failing early on a
    /// line containing any of `fatal`.
    pub fn wait_marker(
        &self,
        marker: &str,
        fatal: &[&str],
        from: usize,
        limit: Duration,
    ) -> Result<(Line, usize), WaitError> {
        self.wait_for(&format!("`{marker}`"), from, limit, |l| {
            if has_word(l, marker) {
                return Some(Ok(()));
            }
            fatal
                .iter()
                .find(|f| l.contains(*f))
                .map(|_| Err(format!("it printed `{l}`")))
        })
        .map(|((), line, i)| (line, i))
    }
}

/// Whether `line` holds `word` not followed by more of a name.
pub fn has_word(line: &str, word: &str) -> bool {
    line.match_indices(word).any(|(i, _)| {
        !line[i + word.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    })
}

fn tail_of(s: &State, n: usize) -> Vec<String> {
    let mut t: Vec<String> = s
        .lines
        .iter()
        .rev()
        .take(n)
        .rev()
        .map(|l| l.text.clone())
        .collect();
    if !s.partial.is_empty() {
        t.push(s.partial.clone());
    }
    t
}

/// Accepts QEMU's connection, then reads until QEMU closes it.
fn reader(listener: UnixListener, shared: Arc<Shared>, t0: Instant) {
    let stream = accept(&listener, &shared.stop);
    let close = |shared: &Shared| {
        let mut s = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        s.closed = true;
        s.writer = None;
        shared.cv.notify_all();
    };
    let Some(mut stream) = stream else {
        close(&shared);
        return;
    };
    {
        let mut s = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        s.writer = stream.try_clone().ok();
    }
    let mut clean = Cleaner::default();
    let mut buf = [0u8; 8192];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let at = t0.elapsed();
        let mut s = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.first_byte.is_none() {
            s.first_byte = Some(at);
        }
        for &b in &buf[..n] {
            if let Some(line) = clean.push(b, &mut s.partial) {
                let _ = writeln!(s.log, "[{:>9.3}] {line}", at.as_secs_f64());
                s.lines.push(Line { at, text: line });
            }
        }
        shared.cv.notify_all();
    }
    let mut s = shared.state.lock().unwrap_or_else(|e| e.into_inner());
    if !s.partial.is_empty() {
        let line = std::mem::take(&mut s.partial);
        let at = t0.elapsed();
        let _ = writeln!(s.log, "[{:>9.3}] {line}", at.as_secs_f64());
        s.lines.push(Line { at, text: line });
    }
    drop(s);
    close(&shared);
}

fn accept(listener: &UnixListener, stop: &AtomicBool) -> Option<UnixStream> {
    let deadline = Instant::now() + ACCEPT_LIMIT;
    while Instant::now() < deadline && !stop.load(Ordering::SeqCst) && !run::interrupted() {
        let mut pfd = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for the duration of the call.
        let ready = unsafe { libc::poll(&mut pfd, 1, 100) };
        if ready > 0 {
            return listener.accept().ok().map(|(s, _)| s);
        }
    }
    None
}

/// Turns terminal output into plain lines: drops escape sequences (colours,
/// cursor moves, the firmware's screen clears), carriage returns and other
/// control characters, and applies backspaces.
#[derive(Debug, Default)]
pub struct Cleaner {
    esc: Esc,
    utf8: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Esc {
    #[default]
    None,
    /// After ESC.
    Start,
    /// In a CSI sequence (ESC [ ... final byte).
    Csi,
    /// In an OSC sequence (ESC ] ... BEL or ESC \).
    Osc,
}

impl Cleaner {
    /// Feeds one byte; returns a finished line at a newline.
    pub fn push(&mut self, b: u8, partial: &mut String) -> Option<String> {
        match self.esc {
            Esc::Start => {
                self.esc = match b {
                    b'[' => Esc::Csi,
                    b']' => Esc::Osc,
                    _ => Esc::None,
                };
                return None;
            }
            Esc::Csi => {
                if (0x40..=0x7e).contains(&b) {
                    self.esc = Esc::None;
                }
                return None;
            }
            Esc::Osc => {
                if b == 0x07 || b == 0x1b {
                    self.esc = Esc::None;
                }
                return None;
            }
            Esc::None => {}
        }
        match b {
            0x1b => self.esc = Esc::Start,
            b'\n' => {
                self.utf8.clear();
                return Some(std::mem::take(partial));
            }
            0x08 => {
                partial.pop();
            }
            b'\t' => partial.push('\t'),
            0..=0x1f | 0x7f => {}
            0x20..=0x7e => partial.push(b as char),
            _ => {
                self.utf8.push(b);
                match std::str::from_utf8(&self.utf8) {
                    Ok(s) => {
                        partial.push_str(s);
                        self.utf8.clear();
                    }
                    Err(e) if e.error_len().is_some() || self.utf8.len() >= 4 => {
                        partial.push(char::REPLACEMENT_CHARACTER);
                        self.utf8.clear();
                    }
                    Err(_) => {}
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(bytes: &[u8]) -> (Vec<String>, String) {
        let mut c = Cleaner::default();
        let mut partial = String::new();
        let lines = bytes
            .iter()
            .filter_map(|b| c.push(*b, &mut partial))
            .collect();
        (lines, partial)
    }

    #[test]
    fn firmware_screens_become_plain_lines() {
        // Taken from SeaBIOS and iPXE on a serial console.
        let (lines, partial) = clean(
            b"\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2)\r\n\
              \x1b[0;1miPXE 1.0.0\x1b[0m -- Open Source\r\n\
              Press Ctrl-B...\x08 \x08\x08 \x08net0: 52:54:00:77:00:09\r\n\
              ~ # ",
        );
        assert_eq!(
            lines,
            [
                "SeaBIOS (version 1.16.2)",
                "iPXE 1.0.0 -- Open Source",
                "Press Ctrl-B.net0: 52:54:00:77:00:09",
            ]
        );
        assert_eq!(partial, "~ # ");
    }

    #[test]
    fn markers_are_whole_words() {
        assert!(has_word(
            "vlx-node: ready blade01",
            "vlx-node: ready blade01"
        ));
        assert!(has_word(
            "x vlx: services ready blade01 (3 s)",
            "services ready blade01"
        ));
        assert!(!has_word(
            "vlx-node: ready blade010",
            "vlx-node: ready blade01"
        ));
        assert!(has_word("ready blade010 ready blade01", "ready blade01"));
    }

    #[test]
    fn utf8_survives_and_garbage_is_marked() {
        let (lines, _) = clean("größe µs\n".as_bytes());
        assert_eq!(lines, ["größe µs"]);
        let (lines, _) = clean(b"a\xffb\n");
        assert_eq!(lines, ["a\u{fffd}b"]);
    }

    #[test]
    fn waits_see_lines_fail_early_and_time_out() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s");
        let t0 = Instant::now();
        let console = Listening::bind(&sock)
            .unwrap()
            .attach("test ttyS0", &dir.path().join("log"), t0)
            .unwrap();
        let mut peer = UnixStream::connect(&sock).unwrap();
        peer.write_all(b"Linux version 6.1\r\nvlx-node: ready blade01\r\n")
            .unwrap();
        let (line, i) = console
            .wait_marker("vlx-node: ready", &[], 0, Duration::from_secs(10))
            .unwrap();
        assert_eq!(line.text, "vlx-node: ready blade01");
        assert_eq!(i, 1);
        assert!(console.first_byte().is_some());

        peer.write_all(b"Kernel panic - not syncing: VFS\n")
            .unwrap();
        let err = console
            .wait_marker(
                "vlx: services ready",
                &["Kernel panic"],
                i + 1,
                Duration::from_secs(10),
            )
            .unwrap_err();
        assert!(matches!(err, WaitError::Failed { .. }), "{err}");
        assert!(err.to_string().contains("| Kernel panic"), "{err}");

        let err = console
            .wait_marker("never", &[], 0, Duration::from_millis(200))
            .unwrap_err();
        assert!(matches!(err, WaitError::Timeout { .. }), "{err}");

        drop(peer);
        let err = console
            .wait_marker("never", &[], 0, Duration::from_secs(10))
            .unwrap_err();
        assert!(matches!(err, WaitError::Closed { .. }), "{err}");
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
        assert_eq!(log.lines().count(), 3, "{log}");
        assert!(log.lines().all(|l| l.starts_with('[')), "{log}");
    }
}
