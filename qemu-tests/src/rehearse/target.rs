//! The steps of the iSCSI rehearsal beyond the disk rehearsal's: the
//! storage network with its target up before any blade, the target
//! restarted while the blades run, and the rig's copy of the profile
//! fitted to QEMU's hardware.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Exec, Fail, fail};
use crate::qemu::{BootFrom, Machine};
use crate::storage::Storage;
use crate::switch::Switch;
use crate::{blade, checks, iscsi_install, san};

/// How long the blades get to log in again after the target restarts:
/// open-iscsi's iscsid retries a lost connection every few seconds, and
/// TCG on a loaded host is slow.
const RELOGIN_LIMIT: Duration = Duration::from_secs(120);

/// How long the storage path is cut (the 10 s).
const PATH_CUT: Duration = Duration::from_secs(10);

/// How long a blade's session may take to be logged in again after the
/// path comes back, in seconds (within the check shell's limit).
const RECOVERY_SECS: u32 = 20;

/// The file each blade writes to its root after the target restarted.
const AFTER_RESTART: &str = "/vlx-rig-after-target-restart";

/// iPXE's words when the target refuses its login (the CHAP secret it
/// sent is wrong: the target answers with an authentication failure,
/// which iPXE reports as `EPERM`).
const LOGIN_REFUSED: &str = "Could not open SAN device: Operation not permitted";

/// SeaBIOS's words when no boot device is left: the blade went no further.
const NO_BOOT_DEVICE: &str = "No bootable device";

/// The kernel argument that skips the IO-APIC timer check.
const NO_TIMER_CHECK: &str = "no_timer_check";

/// The origin partition of the rig's copy of an iSCSI profile, at most.
pub(super) const ORIGIN_CAP: &str = "2GiB";

/// Fits the rig's copy of an iSCSI cluster profile to QEMU's blades: their
/// storage NIC is virtio-net, whose driver every initramfs has, so the
/// profile's storage NIC modules (the seed's InfiniBand drivers) go; and an
/// origin partition larger than [`ORIGIN_CAP`] (the seed's 8 GiB) shrinks
/// to it: the rehearsal hashes the whole origin after the install and at
/// the end, which for 8 GiB took minutes on a loaded two-core machine,
/// while the tiny image fills 375 MiB of it. The blades' kernel gets
/// `no_timer_check`, as VM images have it: TCG on a loaded host can miss
/// the IO-APIC timer check, and the kernel then panics ("IO-APIC + timer
/// doesn't work"), as a blade of this rehearsal did.
pub(super) fn adapt_profile(t: &mut toml::Table) {
    if let Some(i) = t
        .get_mut("san")
        .and_then(|s| s.as_table_mut())
        .and_then(|s| s.get_mut("iscsi"))
        .and_then(|i| i.as_table_mut())
    {
        i.insert("sifm".into(), toml::Value::Array(Vec::new()));
    }
    if let Some(boot) = t.get_mut("boot").and_then(|b| b.as_table_mut()) {
        let args = boot
            .entry("kernel_args")
            .or_insert_with(|| toml::Value::Array(Vec::new()));
        if let Some(a) = args.as_array_mut()
            && !a.iter().any(|v| v.as_str() == Some(NO_TIMER_CHECK))
        {
            a.push(toml::Value::String(NO_TIMER_CHECK.into()));
        }
    }
    let cap: Option<cluster::Bytes> = ORIGIN_CAP.parse().ok();
    if let Some(st) = t.get_mut("storage").and_then(|s| s.as_table_mut()) {
        let origin = st
            .get("origin")
            .and_then(|o| o.as_str())
            .and_then(|o| o.parse::<cluster::Bytes>().ok());
        if let (Some(o), Some(c)) = (origin, cap)
            && o.0 > c.0
        {
            st.insert("origin".into(), toml::Value::String(ORIGIN_CAP.into()));
        }
    }
}

impl Exec<'_> {
    /// Step 1 of the iSCSI rehearsal: a sparse SAN file that tgt serves on
    /// the storage network, and the first blade booting an installer
    /// environment that installs the cluster onto it through iSCSI
    /// ([`iscsi_install`]) and powers off; then `vlx-install verify` and
    /// outside tools judge the SAN, and the origin is fingerprinted.
    pub(super) fn install_through_iscsi(
        &mut self,
        san_path: &Path,
        size: cluster::Bytes,
        installer: &Machine,
    ) -> Result<(), Fail> {
        san::create(san_path, size).map_err(|e| fail("SAN created", e))?;
        if self.switch.is_none() {
            let switch = Switch::start(self.run, &self.r.switch, self.r.blades.len() + 4)
                .map_err(|e| fail("private segment up", e))?;
            self.switch = Some(switch);
        }
        self.storage_up()?;
        let check = format!("{} installed through iSCSI", installer.name);
        // What the installer reads, at the paths the rig's profile names.
        let base = self.r.profile.parent().unwrap_or(Path::new("/"));
        let abs = |p: &str| -> PathBuf {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };
        let image = std::path::absolute(self.r.image.dir()).map_err(|e| {
            fail(
                check.clone(),
                format!("{}: {e}", self.r.image.dir().display()),
            )
        })?;
        let profile = std::path::absolute(&self.r.profile)
            .map_err(|e| fail(check.clone(), format!("{}: {e}", self.r.profile.display())))?;
        let mut carry = vec![
            image.clone(),
            profile.clone(),
            abs(&self.cluster.image.host),
        ];
        carry.extend(self.cluster.image.overlays.iter().map(|o| abs(o)));
        let action = iscsi_install::Action::Apply {
            profile: &profile,
            image: &image,
        };
        let lines = self.installer_guest(1, installer, action, carry, &check)?;
        if self.r.iscsi.as_ref().is_some_and(|r| r.chap.is_some()) {
            self.refused_without_chap(&lines);
        }
        match lines
            .iter()
            .rev()
            .find(|l| l.contains("installed on iscsi://"))
        {
            Some(said) => self.checks.pass(1, check, said.trim()),
            None => {
                return Err(fail(
                    check,
                    "vlx-install exited with 0 but said no `installed on`",
                ));
            }
        }
        self.judge_installed_san(san_path)?;
        self.no_secret_on_the_san(san_path);
        Ok(())
    }

    /// Records whether any CHAP secret reached the SAN the installer
    /// wrote: the installer's `--chap` file is its own, and the blades'
    /// secrets live in their boot ROMs, never in the cluster's files.
    pub(super) fn no_secret_on_the_san(&mut self, san_path: &Path) {
        let Some(chap) = self.r.iscsi.as_ref().and_then(|r| r.chap.as_ref()) else {
            return;
        };
        let secrets = [chap.password.as_bytes(), chap.reverse_password.as_bytes()];
        let (ok, detail) = match san::find_any(san_path, &secrets) {
            Ok(None) => (true, format!("neither secret in {}", san_path.display())),
            Ok(Some((i, at))) => (
                false,
                format!(
                    "the {} secret at byte {at} of {}",
                    ["blades'", "target's"][i],
                    san_path.display()
                ),
            ),
            Err(e) => (false, e.to_string()),
        };
        self.checks
            .expect(1, "no CHAP secret on the SAN", ok, detail);
    }

    /// Boots `installer` (the first blade, as an installer environment) to
    /// run `action` through iSCSI with `carry` on its data disk, waits for
    /// it to power off, and returns its console's lines. Fails `check`
    /// unless vlx-install exited with 0; records in `step` whether the
    /// installer left an iSCSI session behind.
    fn installer_guest(
        &mut self,
        step: u8,
        installer: &Machine,
        action: iscsi_install::Action<'_>,
        mut carry: Vec<PathBuf>,
        check: &str,
    ) -> Result<Vec<String>, Fail> {
        let rig = self
            .r
            .iscsi
            .clone()
            .ok_or_else(|| fail(check, "the plan has no iSCSI target"))?;
        let name = installer.name.clone();
        let BootFrom::Kernel { kernel, .. } = &installer.boot else {
            return Err(fail(check, "the installer does not boot a kernel"));
        };
        let dir = kernel
            .parent()
            .map(Path::to_owned)
            .ok_or_else(|| fail(check, "no folder for the installer guest"))?;
        let storage = installer
            .storage
            .as_ref()
            .ok_or_else(|| fail(check, "the installer has no storage NIC"))?;
        let first = self
            .cluster
            .nodes
            .iter()
            .find(|n| n.macs.first() == Some(&installer.mac))
            .ok_or_else(|| fail(check, "the installer is no node's blade"))?;
        let addr =
            crate::iscsi::storage_address(self.cluster, &rig, first).map_err(|e| fail(check, e))?;
        let chap = self.installer_chap().map_err(|e| fail(check, e))?;
        carry.extend(chap.clone());
        let guest = iscsi_install::build(
            &dir,
            &rig,
            (storage.mac, addr),
            action,
            chap.as_deref(),
            &carry,
        )
        .map_err(|e| fail(format!("{name} built"), e))?;
        self.say(&format!(
            "{name} runs vlx-install through {} from {addr} (data disk {})",
            iscsi_install::url(&rig),
            guest.data.display()
        ));
        let mut b = blade::power_on(self.run, installer, &self.logs)
            .map_err(|e| fail(format!("{name} powered on"), e))?;
        let done = b.wait(iscsi_install::SESSIONS_LEFT, self.r.timeouts.install);
        let deadline = Instant::now() + Duration::from_secs(60);
        while done.is_ok() && b.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        let lines: Vec<String> = b.console().lines().into_iter().map(|l| l.text).collect();
        let boot = b.power_off();
        self.timeline.add_boot(&name, boot);
        done.map_err(|e| fail(check, e))?;
        let find = |prefix: &str| {
            lines.iter().find_map(|l| {
                l.find(prefix)
                    .map(|i| l[i + prefix.len()..].trim().to_string())
            })
        };
        let rc = find(iscsi_install::INSTALL_RC).unwrap_or_default();
        if rc != "0" {
            let tail: Vec<&str> = lines.iter().rev().take(15).map(String::as_str).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(fail(
                check,
                format!("vlx-install exited with {rc:?}:\n{}", tail.join("\n")),
            ));
        }
        let left = find(iscsi_install::SESSIONS_LEFT).unwrap_or_default();
        self.checks.expect(
            step,
            "no iSCSI session left by the installer",
            left == "[]",
            format!("iscsiadm -m session after vlx-install: {left}"),
        );
        Ok(lines)
    }

    /// Step 7 of the iSCSI rehearsal: `vlx-install reset-node NODE --san
    /// iscsi://...` run where the rehearsal runs its installer commands
    /// over iSCSI, on the first blade booted as an installer environment
    /// (step 1's machine); the host has no iSCSI initiator. Returns what
    /// the installer said.
    pub(super) fn reset_through_iscsi(&mut self, node: &str) -> Result<String, Fail> {
        let check = format!("vlx-install reset-node {node}");
        let installer = self
            .r
            .iscsi_installer
            .as_deref()
            .cloned()
            .ok_or_else(|| fail(check.clone(), "the plan has no installer environment"))?;
        let lines = self.installer_guest(
            7,
            &installer,
            iscsi_install::Action::ResetNode { node },
            Vec::new(),
            &check,
        )?;
        lines
            .iter()
            .rev()
            .find(|l| l.contains(" is reset: "))
            .map(|l| l.trim().to_string())
            .ok_or_else(|| fail(check, "vlx-install exited with 0 but said no `is reset:`"))
    }

    /// The installer's CHAP file (`--chap`), when the target asks for
    /// CHAP: in the run's folder, readable by its owner only, as the
    /// installer demands; it reaches the installer guest on its data disk
    /// and never the SAN.
    pub(super) fn installer_chap(&self) -> Result<Option<PathBuf>, String> {
        let Some(chap) = self.r.iscsi.as_ref().and_then(|r| r.chap.as_ref()) else {
            return Ok(None);
        };
        let path = self.run.dir().join("installer-chap");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        f.write_all(chap.installer_file().as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Some(path))
    }

    /// Checks that the late blade of step 6 came up the way every blade of
    /// an iSCSI SAN boots: its boot ROM (iPXE with its stored settings)
    /// hooked the target's LUN and published an iBFT, and the node agent
    /// logged in from it.
    ///
    /// Why not from the survivors: on a shared disk a late or replaced
    /// blade PXE-boots because its firmware has no SAN disk to boot, and
    /// the blades already up serve its boot tree. A blade of an iSCSI SAN
    /// carries its boot path in its own boot ROM (an HBA's NVRAM, here
    /// iPXE's stored settings): the target serves its ESP, as it does
    /// for every other blade, so the issue's "late blade from the
    /// survivors" means here that it comes up with two blades dead,
    /// needing none of them (no DHCP, no boot server), and joins the
    /// survivors: its identity, the VIP they moved, its own root are the
    /// checks that follow in step 6. A PXE boot would also lose the iBFT
    /// (only `sanboot` publishes one), and with it the CHAP secrets the
    /// agent logs in with.
    pub(super) fn late_from_target(&mut self, late: &str) {
        let console: Vec<String> = self
            .live(late)
            .map(|b| b.console().lines().into_iter().map(|l| l.text).collect())
            .unwrap_or_default();
        let rig = self.r.iscsi.as_ref();
        let target = rig.map(|r| r.target.as_str()).unwrap_or_default();
        let hooked = console
            .iter()
            .find(|l| l.contains("Registered SAN device 0x80"));
        let ibft = console
            .iter()
            .find(|l| l.contains("vlx-node: the firmware's iBFT names") && l.contains(target));
        let said = |l: Option<&String>, what: &str| {
            l.map(|l| l.trim().to_string())
                .unwrap_or_else(|| format!("no {what} on its console"))
        };
        self.checks.expect(
            6,
            format!("{late} cold-started from the target with two blades lost"),
            hooked.is_some() && ibft.is_some(),
            format!(
                "{}; {}",
                said(hooked, "`Registered SAN device 0x80` (iPXE sanboot)"),
                said(ibft, "iBFT login")
            ),
        );
    }

    /// Step 4 of the iSCSI rehearsal with CHAP: the held-back blade,
    /// its boot ROM's stored secret wrong, is powered on; the target must
    /// refuse its login, iPXE say so on the console, and the blade boot
    /// nothing (SeaBIOS finds no other boot device), so it never gets a
    /// root. It is powered off again before it boots rightly in step 6.
    pub(super) fn wrong_chap(&mut self, machine: &Machine) -> Result<(), Fail> {
        let name = machine.name.clone();
        let check = format!("{name} refused by the target, no root");
        self.storage_up()?;
        let b = blade::power_on(self.run, machine, &self.logs)
            .map_err(|e| fail(format!("{name} powered on"), e))?;
        let refused = b.wait(LOGIN_REFUSED, self.r.timeouts.ready);
        let stopped = match &refused {
            Ok(_) => b.wait(NO_BOOT_DEVICE, self.r.timeouts.command).is_ok(),
            Err(_) => false,
        };
        let lines: Vec<String> = b.console().lines().into_iter().map(|l| l.text).collect();
        let boot = b.power_off();
        self.timeline.add_boot(&name, boot);
        let line = refused.map_err(|e| fail(check.clone(), e))?;
        let rooted = lines.iter().any(|l| l.contains(blade::AGENT_READY));
        self.checks.expect(
            4,
            check,
            stopped && !rooted,
            format!(
                "`{}`, then {}",
                line.text.trim(),
                match (stopped, rooted) {
                    (_, true) => "`vlx-node: ready` on its console",
                    (false, false) => "no `No bootable device` from its firmware",
                    (true, false) => "`No bootable device`: no root",
                }
            ),
        );
        Ok(())
    }

    /// Records whether the target refused the installer guest's login
    /// without CHAP (`vlx-install status` without `--chap`, before the
    /// install): exit 1, a login failure, as the installer reports one.
    fn refused_without_chap(&mut self, lines: &[String]) {
        let rc = lines.iter().find_map(|l| {
            l.find(iscsi_install::WITHOUT_CHAP_RC).map(|i| {
                l[i + iscsi_install::WITHOUT_CHAP_RC.len()..]
                    .trim()
                    .to_string()
            })
        });
        let said = lines
            .iter()
            .find(|l| l.contains("or wrong CHAP"))
            .map(|l| l.trim().to_string());
        self.checks.expect(
            1,
            "the target refuses a login without CHAP",
            rc.as_deref() == Some("1") && said.is_some(),
            format!(
                "vlx-install status without --chap exited with {}: {}",
                rc.as_deref().unwrap_or("(nothing)"),
                said.as_deref().unwrap_or("no login failure on the console")
            ),
        );
    }

    /// Starts the storage network and the target serving the SAN, for an
    /// iSCSI rehearsal (once; nothing for a shared disk).
    pub(super) fn storage_up(&mut self) -> Result<(), Fail> {
        let Some(rig) = &self.r.iscsi else {
            return Ok(());
        };
        if self.storage.is_some() {
            return Ok(());
        }
        if !rig.rom.is_file() {
            return Err(fail(
                "iSCSI target up",
                format!(
                    "the blades' boot ROM {} is missing (Debian package ipxe; cargo xtask deps \
                     installs it)",
                    rig.rom.display()
                ),
            ));
        }
        let mut s = Storage::start(
            self.run,
            rig,
            &self.r.san,
            self.r.blades.len(),
            &self.logs.dir,
        )
        .map_err(|e| fail("iSCSI target up", e))?;
        if let Some(p) = &self.r.iscsi_second {
            s.add_path(self.run, p, self.r.blades.len(), &self.logs.dir)
                .map_err(|e| fail("second portal up", e))?;
            self.checks.pass(
                1,
                "second portal up",
                format!(
                    "the same target at {}:{} on a second storage network",
                    p.portal, rig.port
                ),
            );
        }
        self.checks.pass(
            1,
            "iSCSI target up",
            format!(
                "tgt serves {} LUN {} at {}:{} on the storage network",
                rig.target, rig.lun, rig.portal, rig.port
            ),
        );
        self.storage = Some(s);
        Ok(())
    }

    /// Kills tgtd and starts it again while the blades run, then cuts the
    /// storage path for 10 s; every blade must log in again after each,
    /// keep its root (write and sync a file on it) and answer on the
    /// cluster network.
    pub(super) fn target_restart(&mut self) -> Result<(), Fail> {
        let limit = self.r.timeouts.command;
        let storage = self
            .storage
            .as_mut()
            .ok_or_else(|| fail("tgtd restarted", "the target is not running"))?;
        let before = storage
            .initiators()
            .map_err(|e| fail("tgtd restarted", e))?;
        let away = storage
            .restart(self.run)
            .map_err(|e| fail("tgtd restarted", e))?;
        let restarted = Instant::now();
        self.say(&format!(
            "tgtd killed and started again ({:.1} s); {} initiator(s) were logged in",
            away.as_secs_f64(),
            before.len()
        ));
        self.checks.pass(
            5,
            "tgtd restarted",
            format!(
                "killed and started again in {:.1} s with {} initiator(s) logged in",
                away.as_secs_f64(),
                before.len()
            ),
        );
        let mut now = Vec::new();
        while restarted.elapsed() < RELOGIN_LIMIT {
            now = self
                .storage
                .as_ref()
                .map(|s| s.initiators())
                .transpose()
                .map_err(|e| fail("every blade logged in again", e))?
                .unwrap_or_default();
            if before.iter().all(|i| now.contains(i)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let back = before.iter().all(|i| now.contains(i));
        self.checks.expect(
            5,
            "every blade logged in again",
            back && !before.is_empty(),
            format!(
                "{} of {} initiator(s) back {:.1} s after the restart",
                before.iter().filter(|i| now.contains(i)).count(),
                before.len(),
                restarted.elapsed().as_secs_f64()
            ),
        );
        // Then the path: the portal's link down for 10 s. One path, so it
        // is open-iscsi's own recovery that must carry the blades over
        // (their I/O waits, up to the session's replacement timeout of
        // 120 s, instead of failing). Two paths: the blades' multipath map
        // fails the cut one and goes on over the other (below).
        if self.r.iscsi_second.is_some() {
            self.cut_one_of_two_paths();
        } else if let Some(st) = self.storage.as_ref() {
            match st.cut(PATH_CUT) {
                Ok(()) => self.checks.pass(
                    5,
                    "storage path cut for 10 s",
                    format!(
                        "the portal's link was down {} s, then up",
                        PATH_CUT.as_secs()
                    ),
                ),
                Err(e) => self.checks.fail(5, "storage path cut for 10 s", e),
            }
        }
        let mut checks = std::mem::take(&mut self.checks);
        let nodes = self.nodes();
        for (k, n) in nodes.iter().enumerate() {
            let name = format!("{} kept its root", n.name);
            // The target keeps a dead connection listed for a while, so
            // the blade's own view counts: its sessions LOGGED_IN again
            // (open-iscsi retries every few seconds), then a write that
            // reaches the LUN.
            let cmd = format!(
                "i=0; while grep -qv LOGGED_IN /sys/class/iscsi_session/session*/state && \
                 [ $i -lt {RECOVERY_SECS} ]; do sleep 1; i=$((i+1)); done; \
                 echo {0} > {AFTER_RESTART} && sync -f / && cat {AFTER_RESTART} && \
                 cat /sys/class/iscsi_session/session*/state",
                n.name
            );
            match checks::sh(n, &cmd, limit) {
                Ok(o) => {
                    let ok = o.success()
                        && o.lines.first().is_some_and(|l| l.trim() == n.name)
                        && o.lines.iter().skip(1).all(|l| l.trim() == "LOGGED_IN");
                    checks.expect(5, name, ok, o.lines.join(" | "));
                }
                Err(e) => checks.fail(5, name, e.to_string()),
            }
            if self.r.iscsi_second.is_some() {
                // The node's paths watcher puts the path back once iscsid
                // has logged it in again and a read goes through.
                let name = format!("{} uses both paths again", n.name);
                let cmd = format!(
                    "i=0; while dmsetup status {SAN_MAP} | grep -q ' F ' && [ $i -lt {REINSTATE_SECS} ]; \
                     do sleep 1; i=$((i+1)); done; dmsetup status {SAN_MAP}"
                );
                match checks::sh(n, &cmd, PATHS_LIMIT) {
                    Ok(o) => {
                        let (status, paths) = map_status(&o);
                        let ok = o.success() && paths.len() >= 2 && paths.iter().all(|p| p.active);
                        checks.expect(5, name, ok, format!("dmsetup status {SAN_MAP}: {status}"));
                    }
                    Err(e) => checks.fail(5, name, e.to_string()),
                }
            }
            // Answers on the cluster network: a ping to the next blade.
            if let Some(other) = nodes
                .get((k + 1) % nodes.len())
                .filter(|o| o.name != n.name)
            {
                let name = format!("{} answers {} after the restart", other.name, n.name);
                match checks::sh(n, &format!("ping -c 1 -W 3 {}", other.ip), limit) {
                    Ok(o) => {
                        checks.expect(5, name, o.success(), o.lines.join(" | "));
                    }
                    Err(e) => checks.fail(5, name, e.to_string()),
                }
            }
        }
        drop(nodes);
        self.checks = checks;
        Ok(())
    }
}

impl Exec<'_> {
    /// The first of two paths cut: its portal's link down until every
    /// blade, writing to its root, shows the path failed in its multipath
    /// map and goes on over the other (at least [`PATH_CUT`]); then the
    /// link comes back (the checks after the restart see the path
    /// reinstated).
    fn cut_one_of_two_paths(&mut self) {
        const CHECK: &str = "storage path cut for 10 s";
        let Some(st) = self.storage.as_ref() else {
            self.checks.fail(5, CHECK, "the target is not running");
            return;
        };
        if let Err(e) = st.link(false) {
            self.checks.fail(5, CHECK, e);
            return;
        }
        let down = Instant::now();
        let nodes = self.nodes();
        // Each blade writes and syncs until its map has failed the path:
        // the kernel fails a path only when I/O on it fails (after the
        // session's 5 s recovery timeout the agent set).
        let results = checks::on_each(&nodes, |n| {
            let cmd = format!(
                "echo {0} > {ONE_PATH} && sync -f / && cat {ONE_PATH}; i=0; \
                 while ! dmsetup status {SAN_MAP} | grep -q ' F ' && [ $i -lt {FAIL_SECS} ]; do \
                 echo $i >> {ONE_PATH}; sync -f /; sleep 1; i=$((i+1)); done; \
                 dmsetup status {SAN_MAP}",
                n.name
            );
            checks::sh(n, &cmd, PATHS_LIMIT)
        });
        let names: Vec<String> = nodes.iter().map(|n| n.name.to_string()).collect();
        drop(nodes);
        let left = PATH_CUT.saturating_sub(down.elapsed());
        std::thread::sleep(left);
        let away = down.elapsed();
        let up = self.storage.as_ref().map(|s| s.link(true));
        match up {
            Some(Ok(())) => self.checks.pass(
                5,
                CHECK,
                format!(
                    "the first portal's link was down {:.0} s, then up; the second path stayed",
                    away.as_secs_f64()
                ),
            ),
            Some(Err(e)) => self.checks.fail(5, CHECK, e),
            None => self.checks.fail(5, CHECK, "the target is not running"),
        }
        for (name, r) in names.iter().zip(results) {
            let check = format!("{name} kept its root on the second path");
            match r {
                Ok(o) => {
                    let (status, paths) = map_status(&o);
                    let ok = o.success()
                        && o.lines.first().is_some_and(|l| l.trim() == name)
                        && paths.iter().any(|p| !p.active)
                        && paths.iter().any(|p| p.active);
                    self.checks
                        .expect(5, check, ok, format!("dmsetup status {SAN_MAP}: {status}"));
                }
                Err(e) => self.checks.fail(5, check, e.to_string()),
            }
        }
    }
}

/// The node agent's multipath map of the SAN.
const SAN_MAP: &str = agent::multipath::SAN_DM_NAME;

/// The last line of a command that ends with `dmsetup status` of
/// [`SAN_MAP`], and its paths as the kernel states them (none when the
/// line is not a multipath map's).
fn map_status(o: &crate::answer::Output) -> (String, Vec<agent::multipath::PathState>) {
    let status = o
        .lines
        .last()
        .map(|l| l.trim().to_owned())
        .unwrap_or_default();
    let paths = agent::multipath::parse_status(&status).unwrap_or_default();
    (status, paths)
}

/// The file each blade writes while one of two paths is cut.
const ONE_PATH: &str = "/vlx-rig-one-path";

/// How long a blade's map may take to fail the cut path, in seconds: the
/// I/O in flight on it waits for the connection to be found dead (iSCSI
/// NOP-Out, 5 s + 5 s) and then the session's recovery timeout (5 s).
const FAIL_SECS: u32 = 60;

/// How long the path may take to be reinstated after the link is back,
/// in seconds: iscsid logs in again within a few seconds, the node's
/// paths watcher looks every 5 s.
const REINSTATE_SECS: u32 = 60;

/// The check shell's limit for the commands above.
const PATHS_LIMIT: Duration = Duration::from_secs(90);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_drops_the_nic_modules_and_caps_the_origin() {
        let mut t: toml::Table = toml::from_str(
            "[san.iscsi]\nsifm = [\"mlx4_core\"]\nivid = \"iqn.x:y\"\n[storage]\norigin = \"8GiB\"\ncow = \"16GiB\"\n[boot]\nfirmware = \"bios\"\n",
        )
        .unwrap();
        adapt_profile(&mut t);
        assert_eq!(t["san"]["iscsi"]["sifm"].as_array().map(Vec::len), Some(0));
        assert_eq!(t["san"]["iscsi"]["ivid"].as_str(), Some("iqn.x:y"));
        assert_eq!(t["storage"]["origin"].as_str(), Some(ORIGIN_CAP));
        assert_eq!(t["storage"]["cow"].as_str(), Some("16GiB"));
        assert_eq!(
            t["boot"]["kernel_args"].as_array().cloned(),
            Some(vec![toml::Value::String(NO_TIMER_CHECK.into())])
        );
        let mut small: toml::Table = toml::from_str("[storage]\norigin = \"1GiB\"\n").unwrap();
        adapt_profile(&mut small);
        assert_eq!(small["storage"]["origin"].as_str(), Some("1GiB"));
    }
}
