//! One run of the rig: its scratch directory and every process it starts,
//! cleaned up on success, on failure, on panic and on Ctrl-C or SIGTERM.
//!
//! Every process of a run lives in one process group of its own, led by an
//! idle anchor process, so that one `kill(-group)` reaches all of them and
//! a Ctrl-C on the terminal reaches only the rig, which then cleans up.
//! Each child also gets `PR_SET_PDEATHSIG`, so that even a rig killed with
//! SIGKILL leaves no QEMU running.

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Why a run could not start or a process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot make the rig's scratch directory under {dir}: {source}")]
    Scratch {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {program} ({what}): {source}")]
    Spawn {
        program: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot install the rig's Ctrl-C and SIGTERM handler: {0}")]
    Signals(#[source] std::io::Error),
}

/// A run of the rig. Dropping it kills every process of the run and
/// removes its scratch directory (unless kept).
#[derive(Debug)]
pub struct Run {
    dir: PathBuf,
    keep: bool,
    anchor: Child,
    pgid: i32,
    started: Instant,
    _one_at_a_time: MutexGuard<'static, ()>,
}

/// Environment variable that keeps every run's scratch directory.
pub const KEEP_ENV: &str = "VLX_RIG_KEEP";

/// One run per process at a time: rig tests in one test binary would
/// otherwise emulate a dozen blades at once on a small machine.
static ONE_RUN: Mutex<()> = Mutex::new(());

/// Runs alive in this process, for the signal handler.
static ACTIVE: Mutex<Vec<Active>> = Mutex::new(Vec::new());
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// The signal that interrupted the rig, for its exit code.
static SIGNAL: AtomicI32 = AtomicI32::new(0);
static HANDLER: OnceLock<Result<(), String>> = OnceLock::new();

#[derive(Debug, Clone)]
struct Active {
    pgid: i32,
    dir: PathBuf,
    keep: bool,
}

/// How long the signal handler lets the interrupted run unwind (write its
/// report, drop its blades) before it removes what is left and exits.
const UNWIND_GRACE: Duration = Duration::from_secs(10);

/// Whether Ctrl-C or SIGTERM has interrupted the rig. Waits check this and
/// give up.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The signal that interrupted the rig, if one did: the rig then exits
/// with 128 + that number, as a shell would report it.
pub fn interrupted_by() -> Option<i32> {
    interrupted().then(|| SIGNAL.load(Ordering::SeqCst))
}

impl Run {
    /// Starts a run with a fresh scratch directory under `$TMPDIR` (short,
    /// because QEMU's UNIX socket paths must stay under 108 bytes). With
    /// `keep`, or `VLX_RIG_KEEP=1` in the environment (to look at a failed
    /// test's consoles), the directory stays after the run.
    pub fn start(keep: bool) -> Result<Run, RunError> {
        let keep = keep || std::env::var_os(KEEP_ENV).is_some_and(|v| v == "1");
        install_signal_handler()?;
        let guard = ONE_RUN.lock().unwrap_or_else(|e| e.into_inner());
        let tmp = std::env::temp_dir();
        let dir = tempfile::Builder::new()
            .prefix("vlx-rig.")
            .tempdir_in(&tmp)
            .map_err(|source| RunError::Scratch {
                dir: tmp.clone(),
                source,
            })?
            .keep();
        // The anchor leads the group for the whole run, so that later
        // children can always join it (a group ends with its last member).
        let mut cmd = Command::new("sleep");
        cmd.arg("infinity")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        die_with_parent(&mut cmd);
        let anchor = match cmd.spawn() {
            Ok(c) => c,
            Err(source) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(RunError::Spawn {
                    program: "sleep".into(),
                    what: "the run's process group anchor".into(),
                    source,
                });
            }
        };
        let pgid = anchor.id() as i32;
        lock_active().push(Active {
            pgid,
            dir: dir.clone(),
            keep,
        });
        Ok(Run {
            dir,
            keep,
            anchor,
            pgid,
            started: Instant::now(),
            _one_at_a_time: guard,
        })
    }

    /// The run's scratch directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// When the run started: time zero of every timeline.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The process group every child of the run is in.
    pub fn process_group(&self) -> i32 {
        self.pgid
    }

    pub fn keeps_files(&self) -> bool {
        self.keep
    }

    /// Starts `cmd` in the run's process group. Call it from the thread
    /// that owns the run: the kernel kills the child when the thread that
    /// started it ends (`PR_SET_PDEATHSIG` follows the thread).
    pub fn spawn(&self, cmd: &mut Command, what: &str) -> Result<Child, RunError> {
        self.spawner().spawn(cmd, what)
    }

    /// A handle that starts processes in the run's group later, for what
    /// starts them on demand (an SSH connection reopened after a reboot).
    pub fn spawner(&self) -> Spawner {
        Spawner { pgid: self.pgid }
    }
}

/// Starts processes in a run's process group (see [`Run::spawn`]); once
/// the run has ended, starting one fails, as the group is gone.
#[derive(Debug, Clone, Copy)]
pub struct Spawner {
    pgid: i32,
}

impl Spawner {
    /// As [`Run::spawn`], with the same rule: call it from the thread that
    /// owns the run.
    pub fn spawn(&self, cmd: &mut Command, what: &str) -> Result<Child, RunError> {
        cmd.process_group(self.pgid);
        die_with_parent(cmd);
        cmd.spawn().map_err(|source| RunError::Spawn {
            program: cmd.get_program().to_string_lossy().into_owned(),
            what: what.to_string(),
            source,
        })
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        kill_group(self.pgid, libc::SIGKILL);
        let _ = self.anchor.wait();
        reap_group(self.pgid);
        if !self.keep {
            remove_tree(&self.dir);
        }
        // Last: the signal handler exits the process as soon as no run is
        // registered, so the directory must be gone by then.
        lock_active().retain(|a| a.pgid != self.pgid);
    }
}

/// Removes a scratch directory, trying again while something (a dying
/// process, the other of the signal handler and the unwinding run) still
/// changes it.
fn remove_tree(dir: &Path) {
    for _ in 0..20 {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !dir.exists() => return,
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn lock_active() -> MutexGuard<'static, Vec<Active>> {
    ACTIVE.lock().unwrap_or_else(|e| e.into_inner())
}

fn kill_group(pgid: i32, signal: i32) {
    // SAFETY: kill has no memory-safety preconditions; a group that is
    // already gone gives ESRCH, which is what we want.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Reaps our children in the group (their `Child` was dropped without a
/// wait) and waits until no member of the group is left, grandchildren
/// included, so that nothing of the run outlives its `Run`.
fn reap_group(pgid: i32) {
    // SAFETY: waitpid with a null status pointer is allowed; every member
    // has had SIGKILL, so the blocking wait ends.
    while unsafe { libc::waitpid(-pgid, std::ptr::null_mut(), 0) } > 0 {}
    let deadline = Instant::now() + Duration::from_secs(5);
    // SAFETY: signal 0 only checks that the group exists.
    while unsafe { libc::kill(-pgid, 0) } == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Makes the kernel SIGKILL the child when the rig goes away, even by
/// SIGKILL.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec and only calls prctl,
    // which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn install_signal_handler() -> Result<(), RunError> {
    HANDLER
        .get_or_init(|| {
            use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
            let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
                .map_err(|e| e.to_string())?;
            std::thread::Builder::new()
                .name("vlx-rig-signals".into())
                .spawn(move || {
                    if let Some(sig) = signals.forever().next() {
                        on_signal(sig);
                    }
                })
                .map_err(|e| e.to_string())?;
            Ok(())
        })
        .clone()
        .map_err(|e| RunError::Signals(std::io::Error::other(e)))
}

/// Ctrl-C or SIGTERM: kill every run's processes at once (their consoles
/// close, so the rig's waits end), give the runs a moment to write their
/// reports, then remove what is left and exit.
fn on_signal(sig: i32) -> ! {
    INTERRUPTED.store(true, Ordering::SeqCst);
    SIGNAL.store(sig, Ordering::SeqCst);
    let runs = lock_active().clone();
    eprintln!(
        "vlx-rig: interrupted by signal {sig}; stopping {} run(s)",
        runs.len()
    );
    for a in &runs {
        kill_group(a.pgid, libc::SIGKILL);
    }
    let deadline = Instant::now() + UNWIND_GRACE;
    while !lock_active().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for a in lock_active().iter() {
        kill_group(a.pgid, libc::SIGKILL);
        if !a.keep {
            remove_tree(&a.dir);
        }
    }
    std::process::exit(128 + sig);
}

/// Processes whose command line mentions `needle` (a run's scratch
/// directory): what a run left behind, if anything. For tests and for the
/// rig's own check after cleanup.
pub fn processes_mentioning(needle: &OsStr) -> Vec<(u32, String)> {
    let needle = needle.as_encoded_bytes();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if cmdline.windows(needle.len()).any(|w| w == needle) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            found.push((pid, text.trim_end().to_string()));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_a_run_kills_its_processes_and_removes_its_directory() {
        let run = Run::start(false).unwrap();
        let dir = run.dir().to_owned();
        let marker = dir.join("marker");
        std::fs::write(&marker, "x").unwrap();
        // A child that would outlive the test if the run did not kill it;
        // its command line names the run's directory.
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 600; : "])
            .arg(&marker)
            .stdout(Stdio::null());
        let child = run.spawn(&mut cmd, "a sleeper").unwrap();
        let pid = child.id();
        assert!(!processes_mentioning(dir.as_os_str()).is_empty());
        drop(child);
        drop(run);
        assert!(!dir.exists(), "{} was not removed", dir.display());
        assert_eq!(processes_mentioning(dir.as_os_str()), []);
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "{pid} lives");
    }

    #[test]
    fn a_kept_run_leaves_its_directory() {
        let run = Run::start(true).unwrap();
        let dir = run.dir().to_owned();
        drop(run);
        assert!(dir.is_dir());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
