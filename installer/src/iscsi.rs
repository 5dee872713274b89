//! The SAN as an iSCSI LUN: `--san iscsi://PORTAL[:PORT]/IQN[/LUN]`.
//!
//! [`open`] logs in with open-iscsi (`iscsiadm`, with `iscsid` running),
//! finds the LUN's block device and hands its path to the same code a local
//! disk goes through (`prepare`, the device checks, `apply`, `status`,
//! `verify`, `reset-node`); the [`Session`] it returns logs out and removes
//! the node record it made when dropped, and also when the process gets
//! SIGINT or SIGTERM, so that no session is left behind by an install
//! that failed or was interrupted.
//!
//! Choices:
//! - The portal is an IP address (IPv6 in brackets), as on the blades'
//!   command line; the port is 3260 without one.
//! - The LUN is decimal, as `iscsiadm` and `/dev/disk/by-path` write it.
//!   Without one the target must offer exactly one disk LUN (tgt's LUN 0 is
//!   its controller, the disk LUN 1; LIO's disk is LUN 0). The LUNs are
//!   scanned synchronously after the login (`--rescan`) and their disks
//!   found in sysfs (`/sys/class/iscsi_session/`), which needs no udev.
//! - Only the one node record `IQN` at `PORTAL` is made (`-o new`, no
//!   discovery that would store every target of the portal), and it is
//!   removed again with the session.
//! - A session to the same target that exists before is refused (exit 3):
//!   the installer logs out what it logged in, and nothing else.
//! - Logins give up after [`LOGIN_TIMEOUT_S`] s and [`LOGIN_RETRIES`]
//!   tries, not open-iscsi's two minutes: a portal that does not answer is
//!   named quickly.
//! - CHAP for the installer's own login is read from a file only root can
//!   read (`--chap FILE`: lines `username=`, `password=`, and for mutual
//!   CHAP `username_in=`, `password_in=`), stored by `iscsiadm -o update`
//!   into the node record (root-only, removed at logout); it is never
//!   written to the SAN, and so never reaches the blades' boot tree.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use contracts::cmdline::san_url::{IscsiUrl, SCHEME};

/// What `--san` names: a block device or image file, or an iSCSI LUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum San {
    Path(PathBuf),
    Iscsi(IscsiUrl),
}

impl FromStr for San {
    type Err = String;
    fn from_str(s: &str) -> Result<San, String> {
        if s.starts_with(SCHEME.trim_end_matches("//")) {
            return s.parse().map(San::Iscsi);
        }
        if s.is_empty() {
            return Err("give a block device, an image file or iscsi://PORTAL/IQN".into());
        }
        Ok(San::Path(PathBuf::from(s)))
    }
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Path(p) => write!(f, "{}", p.display()),
            San::Iscsi(u) => write!(f, "{u}"),
        }
    }
}

/// Seconds a login may take before open-iscsi gives up on a try.
pub const LOGIN_TIMEOUT_S: u32 = 5;
/// Tries of the first login.
pub const LOGIN_RETRIES: u32 = 1;
/// How long the LUN's block device may take to appear after the login
/// (the kernel scans the target's LUNs asynchronously).
const DEVICE_WAIT: Duration = Duration::from_secs(30);

/// Where the kernel lists iSCSI sessions.
pub const SESSIONS: &str = "/sys/class/iscsi_session";

#[derive(Debug, thiserror::Error)]
pub enum IscsiError {
    #[error(
        "{url}: this kernel is no iSCSI initiator ({SESSIONS} is missing: load iscsi_tcp, and \
         run iscsid)"
    )]
    NoInitiator { url: IscsiUrl },
    #[error("{url}: {detail}")]
    Login { url: IscsiUrl, detail: String },
    #[error("{url}: {detail}")]
    Lun { url: IscsiUrl, detail: String },
    #[error("reading CHAP file {path}: {detail}")]
    Chap { path: PathBuf, detail: String },
    #[error("{url}: logging out: {detail}")]
    Logout { url: IscsiUrl, detail: String },
    #[error("--chap {0} is for an iscsi:// SAN")]
    ChapWithoutIscsi(PathBuf),
}

impl IscsiError {
    /// 2 for bad input (the CHAP file), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            IscsiError::Chap { .. } | IscsiError::ChapWithoutIscsi(_) => 2,
            _ => 1,
        }
    }
}

/// A session to the target that was there before the installer: refused,
/// as the installer logs out what it logged in and nothing else.
#[derive(Debug, thiserror::Error)]
#[error(
    "{url}: a session to {target} is logged in already ({session}); log it out first \
     (iscsiadm -m node -T {target} --logout): the installer logs out only what it logged in"
)]
pub struct Busy {
    pub url: IscsiUrl,
    pub target: String,
    pub session: String,
}

/// CHAP credentials for the installer's login.
#[derive(Clone, PartialEq, Eq)]
pub struct Chap {
    pub username: String,
    pub password: String,
    /// Mutual CHAP: the target's name and secret.
    pub reverse: Option<(String, String)>,
}

impl fmt::Debug for Chap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chap")
            .field("username", &self.username)
            .field("mutual", &self.reverse.is_some())
            .finish_non_exhaustive()
    }
}

impl Chap {
    /// Reads `--chap FILE`: `key=value` lines (`#` comments), refused when
    /// the file is readable by anyone but its owner.
    pub fn read(path: &Path) -> Result<Chap, IscsiError> {
        use std::os::unix::fs::PermissionsExt;
        let err = |detail: String| IscsiError::Chap {
            path: path.to_owned(),
            detail,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(err(format!(
                "mode {:o} lets others read it: chmod 600",
                meta.permissions().mode() & 0o777
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Chap::parse(&text).map_err(err)
    }

    /// The text of a CHAP file; errors name the line, never a secret.
    pub fn parse(text: &str) -> Result<Chap, String> {
        let (mut user, mut pass, mut user_in, mut pass_in) = (None, None, None, None);
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(format!("line {}: write key=value", n + 1));
            };
            let slot = match k.trim() {
                "username" => &mut user,
                "password" => &mut pass,
                "username_in" => &mut user_in,
                "password_in" => &mut pass_in,
                other => {
                    return Err(format!(
                        "line {}: {other} is not a key (username, password, username_in, \
                         password_in)",
                        n + 1
                    ));
                }
            };
            *slot = Some(v.trim().to_owned());
        }
        let (Some(username), Some(password)) = (user, pass) else {
            return Err("needs username= and password=".into());
        };
        let reverse = match (user_in, pass_in) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            _ => return Err("mutual CHAP needs both username_in= and password_in=".into()),
        };
        Ok(Chap {
            username,
            password,
            reverse,
        })
    }
}

/// `-T IQN -p PORTAL` of `iscsiadm -m node`.
fn node_args(url: &IscsiUrl) -> Vec<String> {
    vec![
        "-m".into(),
        "node".into(),
        "-T".into(),
        url.target.clone(),
        "-p".into(),
        url.portal.to_string(),
    ]
}

fn update(url: &IscsiUrl, name: &str, value: &str) -> Vec<String> {
    let mut a = node_args(url);
    a.extend(["-o", "update", "-n", name, "-v", value].map(String::from));
    a
}

/// The `iscsiadm` runs of a login, in order: the node record, its
/// timeouts, CHAP, the login.
pub fn login_commands(url: &IscsiUrl, chap: Option<&Chap>) -> Vec<Vec<String>> {
    let mut new = node_args(url);
    new.extend(["-o".into(), "new".into()]);
    let mut runs = vec![
        new,
        update(
            url,
            "node.conn[0].timeo.login_timeout",
            &LOGIN_TIMEOUT_S.to_string(),
        ),
        update(
            url,
            "node.session.initial_login_retry_max",
            &LOGIN_RETRIES.to_string(),
        ),
    ];
    if let Some(c) = chap {
        runs.push(update(url, "node.session.auth.authmethod", "CHAP"));
        runs.push(update(url, "node.session.auth.username", &c.username));
        runs.push(update(url, "node.session.auth.password", &c.password));
        if let Some((u, p)) = &c.reverse {
            runs.push(update(url, "node.session.auth.username_in", u));
            runs.push(update(url, "node.session.auth.password_in", p));
        }
    }
    let mut login = node_args(url);
    login.push("--login".into());
    runs.push(login);
    runs
}

/// The `iscsiadm` runs that undo a login: log out, remove the record.
pub fn logout_commands(url: &IscsiUrl) -> Vec<Vec<String>> {
    let mut out = node_args(url);
    out.push("--logout".into());
    let mut del = node_args(url);
    del.extend(["-o".into(), "delete".into()]);
    vec![out, del]
}

/// `iscsiadm`'s exit code for "no such session or record"
/// (`ISCSI_ERR_NO_OBJS_FOUND`): what undoing a login that never came up
/// meets, and fine there.
const NO_OBJS_FOUND: i32 = 21;

/// Runs `iscsiadm` with `args`; what it said on failure. Arguments that
/// carry a CHAP secret are never repeated.
fn iscsiadm(args: &[String]) -> Result<(), String> {
    run_iscsiadm(args, false)
}

/// Runs `iscsiadm` to undo part of a login: nothing left to undo is fine.
fn iscsiadm_undo(args: &[String]) -> Result<(), String> {
    run_iscsiadm(args, true)
}

fn run_iscsiadm(args: &[String], undo: bool) -> Result<(), String> {
    let out = Command::new("iscsiadm")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run iscsiadm: {e}"))?;
    if out.status.success() || (undo && out.status.code() == Some(NO_OBJS_FOUND)) {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    Err(format!("iscsiadm failed ({}): {}", out.status, said.trim()))
}

/// The sessions the kernel has: (session directory name, target name).
pub fn sessions(root: &Path) -> Vec<(String, String)> {
    let Ok(dir) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut v: Vec<(String, String)> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let t = std::fs::read_to_string(e.path().join("targetname")).ok()?;
            Some((name, t.trim().to_owned()))
        })
        .collect();
    v.sort();
    v
}

/// SCSI peripheral device types of disks: direct access (0) and
/// simplified direct access (0xe).
const DISK_TYPES: &[&str] = &["0", "14"];

/// The disk LUNs of a session: (LUN, block device name), from
/// `SESSION/device/targetH:C:T/H:C:T:L/{type,block/NAME}`; `None` while a
/// disk LUN the kernel has found has no block device yet (`sd` probes
/// asynchronously). Other units (tgt's controller at LUN 0) are left out.
pub fn session_luns(session: &Path) -> Option<Vec<(u32, String)>> {
    let mut out = Vec::new();
    let Ok(targets) = std::fs::read_dir(session.join("device")) else {
        return None;
    };
    for t in targets.filter_map(|e| e.ok()) {
        if !t.file_name().to_string_lossy().starts_with("target") {
            continue;
        }
        let Ok(units) = std::fs::read_dir(t.path()) else {
            continue;
        };
        for u in units.filter_map(|e| e.ok()) {
            let name = u.file_name().to_string_lossy().into_owned();
            let Some(lun) = name
                .rsplit(':')
                .next()
                .filter(|_| name.matches(':').count() == 3)
                .and_then(|l| l.parse::<u32>().ok())
            else {
                continue;
            };
            let kind = std::fs::read_to_string(u.path().join("type")).unwrap_or_default();
            if !DISK_TYPES.contains(&kind.trim()) {
                continue;
            }
            let block = std::fs::read_dir(u.path().join("block"))
                .ok()
                .and_then(|mut b| b.next())
                .and_then(|b| b.ok());
            match block {
                Some(b) => out.push((lun, b.file_name().to_string_lossy().into_owned())),
                None => return None,
            }
        }
    }
    out.sort();
    Some(out)
}

/// Scans the session's LUNs now (`iscsiadm -m session -r N --rescan`
/// writes the host's `scan`, which the kernel does synchronously), so that
/// the list of LUNs is whole before one is picked.
fn rescan(session: &str) -> Result<(), String> {
    let n = session.trim_start_matches("session");
    iscsiadm(&["-m", "session", "-r", n, "--rescan"].map(String::from))
}

/// Which of a session's disk LUNs the URL names.
pub fn pick_lun(url: &IscsiUrl, luns: &[(u32, String)]) -> Result<Option<String>, String> {
    let list = || {
        luns.iter()
            .map(|(l, d)| format!("{l} ({d})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match url.lun {
        Some(want) => Ok(luns
            .iter()
            .find(|(l, _)| *l == want)
            .map(|(_, d)| d.clone())),
        None => match luns {
            [] => Ok(None),
            [(_, d)] => Ok(Some(d.clone())),
            _ => Err(format!(
                "the target has several disk LUNs: {}; name one as iscsi://PORTAL/IQN/LUN",
                list()
            )),
        },
    }
}

/// Sessions to log out if the process is interrupted.
static LIVE: Mutex<Vec<IscsiUrl>> = Mutex::new(Vec::new());

fn watch_signals() {
    use std::sync::Once;
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
            eprintln!("vlx-install: warning: cannot watch SIGINT/SIGTERM; an interrupted install may leave its iSCSI session");
            return;
        };
        std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                // The list stays locked from here to the exit: the main
                // thread, whose reads fail once the session is gone, blocks
                // in its own logout (`forget`) instead of logging out a
                // second time and exiting first with its read error.
                let live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
                for url in live.iter() {
                    eprintln!("vlx-install: interrupted: logging out of {url}");
                    for c in logout_commands(url) {
                        if let Err(e) = iscsiadm_undo(&c) {
                            eprintln!("vlx-install: {url}: {e}");
                        }
                    }
                }
                std::process::exit(128 + sig);
            }
        });
    });
}

/// A logged-in session; logs out (and removes its node record) when
/// dropped or on SIGINT/SIGTERM.
#[derive(Debug)]
pub struct Session {
    url: IscsiUrl,
    device: PathBuf,
    open: bool,
}

impl Session {
    pub fn url(&self) -> &IscsiUrl {
        &self.url
    }

    /// The LUN's block device.
    pub fn device(&self) -> &Path {
        &self.device
    }

    /// Logs out now, saying what failed.
    pub fn logout(mut self) -> Result<(), IscsiError> {
        self.open = false;
        forget(&self.url);
        end(&self.url)
    }
}

/// Takes `url` off the sessions to log out on a signal. Blocks while the
/// signal's thread logs them out, which then ends the process.
fn forget(url: &IscsiUrl) {
    let mut l = LIVE.lock().unwrap_or_else(|p| p.into_inner());
    l.retain(|u| u != url);
}

fn end(url: &IscsiUrl) -> Result<(), IscsiError> {
    let mut first = None;
    for c in logout_commands(url) {
        if let Err(detail) = iscsiadm_undo(&c) {
            first.get_or_insert(IscsiError::Logout {
                url: url.clone(),
                detail,
            });
        }
    }
    first.map_or(Ok(()), Err)
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.open {
            forget(&self.url);
            if let Err(e) = end(&self.url) {
                eprintln!("vlx-install: {e}");
            }
        }
    }
}

/// Why [`login`] did not give a session.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(transparent)]
    Iscsi(#[from] IscsiError),
    #[error(transparent)]
    Busy(#[from] Busy),
}

/// Logs in to `url`'s target and finds its LUN. On any error after the
/// node record is made, the record (and a session, if one came up) is
/// removed again.
pub fn login(url: &IscsiUrl, chap: Option<&Chap>) -> Result<Session, LoginError> {
    let root = Path::new(SESSIONS);
    if !root.is_dir() && !Path::new("/sys/module/iscsi_tcp").exists() {
        return Err(IscsiError::NoInitiator { url: url.clone() }.into());
    }
    if let Some((s, t)) = sessions(root).into_iter().find(|(_, t)| *t == url.target) {
        return Err(Busy {
            url: url.clone(),
            target: t,
            session: s,
        }
        .into());
    }
    watch_signals();
    if let Ok(mut l) = LIVE.lock() {
        l.push(url.clone());
    }
    // From here on the guard undoes whatever part of the login happened.
    let mut session = Session {
        url: url.clone(),
        device: PathBuf::new(),
        open: true,
    };
    for c in login_commands(url, chap) {
        if let Err(detail) = iscsiadm(&c) {
            let what = if c.last().map(String::as_str) == Some("--login") {
                format!(
                    "logging in to target {} at portal {} failed (a portal that does not \
                     answer, a target name it does not have, an initiator it does not accept, \
                     or wrong CHAP): {detail}",
                    url.target, url.portal
                )
            } else {
                detail
            };
            return Err(IscsiError::Login {
                url: url.clone(),
                detail: what,
            }
            .into());
        }
    }
    let lun_err = |detail: String| IscsiError::Lun {
        url: url.clone(),
        detail,
    };
    let Some((sid, _)) = sessions(root).into_iter().find(|(_, t)| *t == url.target) else {
        return Err(lun_err(format!(
            "the login to {} at {} left no session in {SESSIONS}",
            url.target, url.portal
        ))
        .into());
    };
    rescan(&sid).map_err(lun_err)?;
    let start = Instant::now();
    loop {
        if let Some(luns) = session_luns(&root.join(&sid)) {
            match pick_lun(url, &luns).map_err(lun_err)? {
                Some(dev) => {
                    session.device = Path::new("/dev").join(dev);
                    if session.device.exists() {
                        return Ok(session);
                    }
                }
                None => {
                    let has = match luns.as_slice() {
                        [] => "none".to_owned(),
                        l => l
                            .iter()
                            .map(|(l, d)| format!("{l} ({d})"))
                            .collect::<Vec<_>>()
                            .join(", "),
                    };
                    let what = url
                        .lun
                        .map_or("disk LUN".to_owned(), |l| format!("disk LUN {l}"));
                    return Err(lun_err(format!(
                        "target {} at portal {} has no {what} (it has {has})",
                        url.target, url.portal
                    ))
                    .into());
                }
            }
        }
        if start.elapsed() > DEVICE_WAIT {
            return Err(lun_err(format!(
                "the disks of target {} at portal {} did not appear within {} s",
                url.target,
                url.portal,
                DEVICE_WAIT.as_secs()
            ))
            .into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The SAN opened for a command: its path, and the session that must live
/// as long as the path is used.
#[derive(Debug)]
pub struct Opened {
    path: PathBuf,
    session: Option<Session>,
}

impl Opened {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the SAN is an iSCSI LUN this process logged in to.
    pub fn is_iscsi(&self) -> bool {
        self.session.is_some()
    }

    /// The SAN as messages name it: the path, or the URL and its device.
    pub fn name(&self) -> String {
        match &self.session {
            Some(s) => format!("{} ({})", s.url(), s.device().display()),
            None => self.path.display().to_string(),
        }
    }

    /// Logs out, when the SAN is an iSCSI LUN.
    pub fn close(self) -> Result<(), IscsiError> {
        match self.session {
            Some(s) => s.logout(),
            None => Ok(()),
        }
    }
}

/// `--san` and `--chap` of every command that works on the SAN.
#[derive(Debug, Clone, clap::Args)]
pub struct SanOpt {
    /// The SAN: a block device, an image file, a disk by a stable name
    /// (serial:SERIAL, wwn:WWN, by-id:ID), or an iSCSI LUN as
    /// iscsi://PORTAL[:PORT]/IQN[/LUN] (logged in with iscsiadm for the
    /// command and out again, also on failure or interruption).
    #[arg(long, value_name = "PATH|URL")]
    pub san: San,
    /// CHAP credentials for an iSCSI login: a file only root may read, with
    /// username=, password= (and username_in=, password_in= for mutual CHAP).
    #[arg(long, value_name = "FILE")]
    pub chap: Option<PathBuf>,
}

impl SanOpt {
    /// Opens the SAN ([`open`]); a session that was there before is a
    /// [`Busy`] refusal.
    pub fn open(&self) -> anyhow::Result<Opened> {
        let chap = match (&self.chap, &self.san) {
            (Some(p), San::Iscsi(_)) => Some(Chap::read(p)?),
            (Some(p), San::Path(_)) => return Err(IscsiError::ChapWithoutIscsi(p.clone()).into()),
            (None, _) => None,
        };
        match open(&self.san, chap.as_ref()) {
            Ok(o) => Ok(o),
            Err(LoginError::Busy(b)) => Err(b.into()),
            Err(LoginError::Iscsi(e)) => Err(e.into()),
        }
    }
}

/// Opens `san`: a path as it is; an iSCSI URL by logging in.
pub fn open(san: &San, chap: Option<&Chap>) -> Result<Opened, LoginError> {
    match san {
        San::Path(p) => Ok(Opened {
            path: p.clone(),
            session: None,
        }),
        San::Iscsi(url) => {
            let s = login(url, chap)?;
            Ok(Opened {
                path: s.device().to_owned(),
                session: Some(s),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::cmdline::iscsi::Portal;
    use std::net::IpAddr;

    const IQN: &str = "iqn.2026-01.org.vlx.test:san";

    #[test]
    fn san_arguments_in_their_forms() {
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let cases: Vec<(&str, San)> = vec![
            ("/dev/sdb", San::Path("/dev/sdb".into())),
            ("san.img", San::Path("san.img".into())),
            (
                "iscsi://10.0.0.1/iqn.2026-01.org.vlx.test:san",
                San::Iscsi(IscsiUrl {
                    portal: Portal {
                        addr: v4,
                        port: 3260,
                    },
                    target: IQN.into(),
                    lun: None,
                }),
            ),
            (
                "iscsi://10.0.0.1:3261/iqn.2026-01.org.vlx.test:san/1",
                San::Iscsi(IscsiUrl {
                    portal: Portal {
                        addr: v4,
                        port: 3261,
                    },
                    target: IQN.into(),
                    lun: Some(1),
                }),
            ),
            (
                "iscsi://[fd00::1]:3260/iqn.2026-01.org.vlx.test:san/0",
                San::Iscsi(IscsiUrl {
                    portal: Portal {
                        addr: "fd00::1".parse().unwrap(),
                        port: 3260,
                    },
                    target: IQN.into(),
                    lun: Some(0),
                }),
            ),
        ];
        for (text, want) in cases {
            let got: San = text.parse().unwrap();
            assert_eq!(got, want, "{text}");
            if let San::Iscsi(u) = &got {
                assert_eq!(u.to_string().parse::<IscsiUrl>().as_ref(), Ok(u));
            }
        }
        // The URL's own errors are the contracts parser's (tested there);
        // `--san` passes them on.
        for (text, want) in [
            ("iscsi://10.0.0.1", "no target name"),
            ("iscsi:10.0.0.1/iqn.x", "write iscsi://"),
            ("", "give a block device"),
        ] {
            let err = text.parse::<San>().expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    fn url() -> IscsiUrl {
        "iscsi://10.0.0.1/iqn.2026-01.org.vlx.test:san/1"
            .parse()
            .unwrap()
    }

    #[test]
    fn logs_in_with_one_node_record_and_removes_it() {
        let chap = Chap::parse("username=blade\npassword=pw1\nusername_in=san\npassword_in=pw2\n")
            .unwrap();
        let runs: Vec<String> = login_commands(&url(), Some(&chap))
            .iter()
            .map(|c| c.join(" "))
            .collect();
        let node = format!("-m node -T {IQN} -p 10.0.0.1:3260");
        assert_eq!(
            runs,
            [
                format!("{node} -o new"),
                format!("{node} -o update -n node.conn[0].timeo.login_timeout -v 5"),
                format!("{node} -o update -n node.session.initial_login_retry_max -v 1"),
                format!("{node} -o update -n node.session.auth.authmethod -v CHAP"),
                format!("{node} -o update -n node.session.auth.username -v blade"),
                format!("{node} -o update -n node.session.auth.password -v pw1"),
                format!("{node} -o update -n node.session.auth.username_in -v san"),
                format!("{node} -o update -n node.session.auth.password_in -v pw2"),
                format!("{node} --login"),
            ]
        );
        let out: Vec<String> = logout_commands(&url())
            .iter()
            .map(|c| c.join(" "))
            .collect();
        assert_eq!(
            out,
            [format!("{node} --logout"), format!("{node} -o delete")]
        );
        assert!(!format!("{chap:?}").contains("pw"));
    }

    #[test]
    fn chap_files_say_what_is_wrong_without_secrets() {
        for (text, want) in [
            ("username=a\n", "needs username= and password="),
            ("username=a\npassword=b\nusername_in=c\n", "needs both"),
            ("user=a\n", "line 1: user is not a key"),
            ("# c\npassword\n", "line 2: write key=value"),
        ] {
            let err = Chap::parse(text).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("chap");
        std::fs::write(&p, "username=a\npassword=topsecret\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Chap::read(&p).unwrap_err().to_string();
        assert!(
            err.contains("chmod 600") && !err.contains("topsecret"),
            "{err}"
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Chap::read(&p).unwrap().username, "a");
    }

    /// A session's sysfs as the kernel lays it out for tgt: LUN 0 the
    /// controller (no block device), LUN 1 the disk.
    #[test]
    fn finds_the_luns_disk_in_sysfs() {
        let t = tempfile::tempdir().unwrap();
        let s = t.path().join("session3");
        let unit = |hctl: &str, kind: &str| {
            let d = s.join("device/target2:0:0").join(hctl);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("type"), format!("{kind}\n")).unwrap();
            d
        };
        unit("2:0:0:0", "12");
        let lun1 = unit("2:0:0:1", "0");
        std::fs::create_dir_all(s.join("device/power")).unwrap();
        // Found, not yet probed by sd: not whole yet.
        assert_eq!(session_luns(&s), None);
        std::fs::create_dir_all(lun1.join("block/sdb")).unwrap();
        std::fs::write(s.join("targetname"), format!("{IQN}\n")).unwrap();
        assert_eq!(
            sessions(t.path()),
            [("session3".to_owned(), IQN.to_owned())]
        );
        let luns = session_luns(&s).unwrap();
        assert_eq!(luns, [(1, "sdb".to_owned())]);
        let mut u = url();
        assert_eq!(pick_lun(&u, &luns), Ok(Some("sdb".into())));
        u.lun = None;
        assert_eq!(pick_lun(&u, &luns), Ok(Some("sdb".into())));
        u.lun = Some(0);
        assert_eq!(pick_lun(&u, &luns), Ok(None));
        std::fs::create_dir_all(unit("2:0:0:2", "0").join("block/sdc")).unwrap();
        u.lun = None;
        let err = pick_lun(&u, &session_luns(&s).unwrap()).unwrap_err();
        assert!(err.contains("several disk LUNs: 1 (sdb), 2 (sdc)"), "{err}");
    }
}
