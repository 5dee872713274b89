//! The steps of the iSCSI rehearsal beyond the disk rehearsal's: the
//! storage network with its target up before any blade, the target
//! restarted while the blades run, and the rig's copy of the profile
//! fitted to QEMU's hardware.

use std::time::{Duration, Instant};

use super::{Exec, Fail, fail};
use crate::checks;
use crate::storage::Storage;

/// How long the blades get to log in again after the target restarts:
/// open-iscsi's iscsid retries a lost connection every few seconds, and
/// TCG on a loaded host is slow.
const RELOGIN_LIMIT: Duration = Duration::from_secs(120);

/// The file each blade writes to its root after the target restarted.
const AFTER_RESTART: &str = "/vlx-rig-after-target-restart";

/// Fits the rig's copy of an iSCSI cluster profile to QEMU's blades: their
/// storage NIC is virtio-net, whose driver every initramfs has, so the
/// profile's storage NIC modules (the seed's InfiniBand drivers) go.
pub(super) fn adapt_profile(t: &mut toml::Table) {
    if let Some(i) = t
        .get_mut("san")
        .and_then(|s| s.as_table_mut())
        .and_then(|s| s.get_mut("iscsi"))
        .and_then(|i| i.as_table_mut())
    {
        i.insert("sifm".into(), toml::Value::Array(Vec::new()));
    }
}

impl Exec<'_> {
    /// Starts the storage network and the target serving the SAN, for an
    /// iSCSI rehearsal (once; nothing for a shared disk).
    pub(super) fn storage_up(&mut self) -> Result<(), Fail> {
        let Some(rig) = &self.r.iscsi else {
            return Ok(());
        };
        if self.storage.is_some() {
            return Ok(());
        }
        let s = Storage::start(
            self.run,
            rig,
            &self.r.san,
            self.r.blades.len(),
            &self.logs.dir,
        )
        .map_err(|e| fail("iSCSI target up", e))?;
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

    /// Kills tgtd and starts it again while the blades run; every blade
    /// must log in again, keep its root (write and sync a file on it) and
    /// answer on the cluster network.
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
        let mut checks = std::mem::take(&mut self.checks);
        let nodes = self.nodes();
        for (k, n) in nodes.iter().enumerate() {
            let name = format!("{} kept its root", n.name);
            let cmd = format!(
                "echo {0} > {AFTER_RESTART} && sync -f / && cat {AFTER_RESTART} && \
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
