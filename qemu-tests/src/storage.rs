//! The storage network of an iSCSI rehearsal, as a SAN vendor's box sits
//! on its own network: a `vde_switch` the blades' storage NICs plug into,
//! and a network namespace of its own plugged into it (`vde_plug2tap`)
//! with the portal's address, where tgt (user space: the host kernel has
//! no configfs for LIO) serves the SAN image as a LUN. Nothing of the
//! host's own network is touched.
//!
//! tgt keeps no configuration of its own here: [`Storage::restart`] kills
//! tgtd and starts it again with the same target, as a SAN controller's
//! failover or a reboot of the target looks to its initiators.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::iscsi::{IscsiRig, SecondPath};
use crate::run::Run;
use crate::switch::Switch;

/// The portal's interface in the target's namespace.
const TAP: &str = "san0";

/// How long the namespace's tap and tgtd may take to come up.
const UP_LIMIT: Duration = Duration::from_secs(20);

/// A running storage network with its target.
#[derive(Debug)]
pub struct Storage {
    /// The target's namespace: its plug into the switch, which goes last.
    side: Child,
    tgtd: Option<Child>,
    netns: PathBuf,
    /// tgtd's management socket is `/var/run/tgtd/socket.<control>`.
    control: String,
    san: PathBuf,
    target: String,
    lun: u16,
    /// The CHAP the target asks every initiator for.
    chap: Option<crate::iscsi::RigChap>,
    log: PathBuf,
    /// The second path's plug into its own switch ([`Storage::add_path`]),
    /// and that switch.
    second: Option<(Child, Switch)>,
    _switch: Switch,
}

/// The second portal's interface in the target's namespace.
const TAP2: &str = "san1";

impl Storage {
    /// Starts the switch, the target's namespace and tgtd serving `san`.
    /// `ports` is the count of storage NICs.
    pub fn start(
        run: &Run,
        rig: &IscsiRig,
        san: &Path,
        ports: usize,
        logs: &Path,
    ) -> Result<Storage, String> {
        let switch = Switch::start(run, &rig.switch, ports + 2).map_err(|e| e.to_string())?;
        let side_log = logs.join("storage-side.log");
        let err =
            std::fs::File::create(&side_log).map_err(|e| format!("{}: {e}", side_log.display()))?;
        let script = format!(
            "set -e; ip link set lo up; ip tuntap add dev {TAP} mode tap; \
             ip link set {TAP} up; ip addr add {}/{} dev {TAP}; \
             exec vde_plug2tap -s '{}' {TAP}",
            rig.portal,
            rig.prefix,
            rig.switch.display()
        );
        let mut cmd = Command::new("unshare");
        cmd.args(["--net", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err);
        let side = run
            .spawn(&mut cmd, "the iSCSI target's namespace")
            .map_err(|e| e.to_string())?;
        let netns = PathBuf::from(format!("/proc/{}/ns/net", side.id()));
        let mut s = Storage {
            side,
            tgtd: None,
            netns,
            control: std::process::id().to_string(),
            san: san.to_owned(),
            target: rig.target.clone(),
            lun: rig.lun,
            chap: rig.chap.clone(),
            log: logs.join("tgtd.log"),
            second: None,
            _switch: switch,
        };
        s.await_portal(rig, &side_log)?;
        s.start_tgtd(run)?;
        Ok(s)
    }

    /// A second storage network (its own switch, `ports` blades) with a
    /// second portal of the same target on it, in the target's namespace:
    /// another path to the LUN. tgtd listens on every address of its
    /// namespace, so it answers there as it is.
    pub fn add_path(
        &mut self,
        run: &Run,
        path: &SecondPath,
        ports: usize,
        logs: &Path,
    ) -> Result<(), String> {
        let switch = Switch::start(run, &path.switch, ports + 2).map_err(|e| e.to_string())?;
        let log = logs.join("storage-side2.log");
        let err = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let script = format!(
            "set -e; ip tuntap add dev {TAP2} mode tap; ip link set {TAP2} up; \
             ip addr add {}/{} dev {TAP2}; exec vde_plug2tap -s '{}' {TAP2}",
            path.portal,
            path.prefix,
            path.switch.display()
        );
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.netns.display()))
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err);
        let plug = run
            .spawn(&mut cmd, "the target's second portal")
            .map_err(|e| e.to_string())?;
        self.second = Some((plug, switch));
        let deadline = Instant::now() + UP_LIMIT;
        loop {
            let o = self.in_ns(&["ip", "-o", "-4", "addr", "show", "dev", TAP2])?;
            if o.contains(&format!("inet {}/", path.portal)) {
                return Ok(());
            }
            if let Some((c, _)) = self.second.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                return Err(format!(
                    "the second portal's plug exited at start ({st}; log {})",
                    log.display()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the target's {TAP2} had no address {} within {} s (log {})",
                    path.portal,
                    UP_LIMIT.as_secs(),
                    log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn await_portal(&mut self, rig: &IscsiRig, log: &Path) -> Result<(), String> {
        let deadline = Instant::now() + UP_LIMIT;
        loop {
            if let Ok(Some(st)) = self.side.try_wait() {
                return Err(format!(
                    "the target's namespace exited at start ({st}; log {})",
                    log.display()
                ));
            }
            let o = self.in_ns(&["ip", "-o", "-4", "addr", "show", "dev", TAP])?;
            if o.contains(&format!("inet {}/", rig.portal)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the target's {TAP} had no address {} within {} s (log {})",
                    rig.portal,
                    UP_LIMIT.as_secs(),
                    log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn in_ns(&self, args: &[&str]) -> Result<String, String> {
        let o = Command::new("nsenter")
            .arg(format!("--net={}", self.netns.display()))
            .args(args)
            .output()
            .map_err(|e| format!("nsenter {}: {e}", args.join(" ")))?;
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// `tgtadm` on the target's management socket.
    pub fn tgtadm(&self, args: &[&str]) -> Result<String, String> {
        let o = Command::new("tgtadm")
            .args(["-C", &self.control, "--lld", "iscsi"])
            .args(args)
            .output()
            .map_err(|e| format!("tgtadm: {e}"))?;
        if !o.status.success() {
            return Err(format!(
                "tgtadm {} failed ({}): {}",
                args.join(" "),
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// Starts tgtd in the namespace and gives it the target and its LUN,
    /// open to every initiator that logs in with the rig's CHAP when it
    /// has one (tgt then refuses a login without it): the blades' account
    /// (incoming) and the target's own (outgoing, for mutual CHAP).
    fn start_tgtd(&mut self, run: &Run) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("{}: {e}", self.log.display()))?;
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.netns.display()))
            .args(["tgtd", "-f", "-C", &self.control])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        self.tgtd = Some(
            run.spawn(&mut cmd, "the iSCSI target (tgtd)")
                .map_err(|e| e.to_string())?,
        );
        let deadline = Instant::now() + UP_LIMIT;
        while self.tgtadm(&["--op", "show", "--mode", "target"]).is_err() {
            if let Some(Ok(Some(st))) = self.tgtd.as_mut().map(Child::try_wait) {
                return Err(format!(
                    "tgtd exited at start ({st}; log {})",
                    self.log.display()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "tgtd did not answer within {} s (log {})",
                    UP_LIMIT.as_secs(),
                    self.log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let san = self.san.display().to_string();
        let lun = self.lun.to_string();
        self.tgtadm(&[
            "--op",
            "new",
            "--mode",
            "target",
            "--tid",
            "1",
            "-T",
            &self.target,
        ])?;
        self.tgtadm(&[
            "--op",
            "new",
            "--mode",
            "logicalunit",
            "--tid",
            "1",
            "--lun",
            &lun,
            "-b",
            &san,
        ])?;
        self.tgtadm(&[
            "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL",
        ])?;
        if let Some(c) = self.chap.clone() {
            for (user, secret, way) in [
                (&c.username, &c.password, None),
                (&c.reverse_username, &c.reverse_password, Some("--outgoing")),
            ] {
                self.tgtadm(&[
                    "--op",
                    "new",
                    "--mode",
                    "account",
                    "--user",
                    user,
                    "--password",
                    secret,
                ])
                .map_err(|e| {
                    format!(
                        "CHAP account {user}: {}",
                        e.replace(secret.as_str(), "(secret)")
                    )
                })?;
                let mut bind = vec![
                    "--op", "bind", "--mode", "account", "--tid", "1", "--user", user,
                ];
                bind.extend(way);
                self.tgtadm(&bind)
                    .map_err(|e| format!("binding CHAP account {user}: {e}"))?;
            }
        }
        Ok(())
    }

    fn stop_tgtd(&mut self) {
        if let Some(mut c) = self.tgtd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for suffix in ["", ".lock"] {
            let _ = std::fs::remove_file(format!("/var/run/tgtd/socket.{}{suffix}", self.control));
        }
    }

    /// Kills tgtd (as a crash or power loss of the target would stop it)
    /// and starts it again with the same target; returns how long the
    /// target was away.
    pub fn restart(&mut self, run: &Run) -> Result<Duration, String> {
        let start = Instant::now();
        self.stop_tgtd();
        self.start_tgtd(run)?;
        Ok(start.elapsed())
    }

    /// Cuts the storage path for `outage`: the portal's link in the
    /// target's namespace goes down and comes back up, as a pulled cable
    /// or a switch port's failure would; tgtd runs on. With a second path
    /// ([`Storage::add_path`]) only the first portal's link goes down.
    pub fn cut(&self, outage: Duration) -> Result<(), String> {
        self.link(false)?;
        std::thread::sleep(outage);
        self.link(true)
    }

    /// The first portal's link down (`up` false) or up again.
    pub fn link(&self, up: bool) -> Result<(), String> {
        let state = if up { "up" } else { "down" };
        let link = |state: &str| -> Result<(), String> {
            let o = Command::new("nsenter")
                .arg(format!("--net={}", self.netns.display()))
                .args(["ip", "link", "set", TAP, state])
                .output()
                .map_err(|e| format!("nsenter ip link set {TAP} {state}: {e}"))?;
            if o.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "ip link set {TAP} {state} in the target's namespace failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ))
            }
        };
        link(state)
    }

    /// The initiators logged in now, by name (tgtadm's `Initiator:` lines).
    pub fn initiators(&self) -> Result<Vec<String>, String> {
        let show = self.tgtadm(&["--op", "show", "--mode", "target"])?;
        let mut v: Vec<String> = show
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Initiator: "))
            .map(|l| l.split_whitespace().next().unwrap_or_default().to_owned())
            .collect();
        v.sort();
        v.dedup();
        Ok(v)
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        self.stop_tgtd();
        if let Some((mut plug, _switch)) = self.second.take() {
            let _ = plug.kill();
            let _ = plug.wait();
        }
        let _ = self.side.kill();
        let _ = self.side.wait();
    }
}
