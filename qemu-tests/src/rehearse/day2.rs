//! The day-2 steps (`--day2`, steps 9 to 12; 13 is in `nfs`) on the running cluster: the
//! executor of [`crate::plan::day2`]. Every change is `vlx-install` run on
//! the SAN file while QEMU blades have it open, as the installer on a
//! blade writes a shared LUN; the blades are asked what an admin would ask
//! them (`nslookup`, a file, `test -e`), and the installer's `status`
//! what the SAN records.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cluster::{Bytes, MacAddr};

use super::{Exec, Fail, fail};
use crate::checks;
use crate::plan::day2::{self, Entry, UPGRADE_MARKER};
use crate::plan::{Part, Step};
use crate::qemu::{BootFrom, Machine};
use crate::tools;

/// How long the rig waits for every running blade to serve a change. A
/// blade reads the meta volume's generation every 10 s and reloads within
/// 30 s (`follow`); this is the host's own deadline, generous for a
/// loaded machine. The time each blade took is reported, not judged.
const FOLLOW_WATCH: Duration = Duration::from_secs(180);
/// How often a running blade's DNS is asked while it follows.
const FOLLOW_POLL: Duration = Duration::from_secs(2);
/// Prints the generation a blade serves and the seconds since `follow`
/// wrote it, on the blade's clock.
const SERVES: &str = "f=/run/vlx/meta-generation; g=$(cat $f) && \
     echo \"$g $(( $(date +%s) - $(stat -c %Y $f) ))\"";
/// How long a blade's keepalived is given after `follow` reloaded it
/// before a step takes a VIP holder away: three VRRP adverts (1 s apart)
/// and the skew, the time a reloaded backup needs to hear the master
/// again. Without it, the backup whose reload met the holder's end may
/// come late to take the VIP, and a shared volume's VIP (`nopreempt`)
/// stays with whichever backup took it.
const VRRP_SETTLE: Duration = Duration::from_secs(4);

impl Exec<'_> {
    /// `name`'s machine as it is now: with the new board's MAC once a
    /// day-2 step replaced it.
    fn machine_now(&self, name: &str, boot: BootFrom) -> Result<Machine, Fail> {
        let mut m = self.blade(name)?.machine(boot);
        if let Some((_, mac)) = self.facts.boards.iter().find(|(n, _)| n == name) {
            m.mac = *mac;
        }
        Ok(m)
    }

    fn running(&self) -> Vec<String> {
        self.nodes().iter().map(|n| n.name.to_string()).collect()
    }

    /// Writes the installed profile with `nodes` to `path` and applies it
    /// onto the running cluster's SAN.
    fn apply_change(
        &mut self,
        step: u8,
        path: &Path,
        nodes: &[Entry],
        what: &str,
    ) -> Result<(), Fail> {
        self.write_profile(step, path, nodes)?;
        self.apply_profile(step, path, what)
    }

    /// Writes the installed profile with `nodes` to `path`.
    fn write_profile(&self, step: u8, path: &Path, nodes: &[Entry]) -> Result<(), Fail> {
        let check = format!("day-2 profile of step {step} written");
        let installed = &self.r.profile;
        let text = std::fs::read_to_string(installed)
            .map_err(|e| fail(check.clone(), format!("{}: {e}", installed.display())))?;
        let t: toml::Table = toml::from_str(&text)
            .map_err(|e| fail(check.clone(), format!("{}: {e}", installed.display())))?;
        let changed = day2::with_nodes(&t, nodes)
            .map_err(|e| fail(check.clone(), format!("{}: {e}", installed.display())))?;
        let out = toml::to_string(&changed)
            .map_err(|e| fail(check.clone(), format!("{}: {e}", path.display())))?;
        std::fs::write(
            path,
            format!(
                "# Written by vlx-rig: {} changed on day 2.\n{out}",
                installed.display()
            ),
        )
        .map_err(|e| fail(check.clone(), format!("{}: {e}", path.display())))
    }

    /// `vlx-install apply` of the profile at `path` onto the running
    /// cluster's SAN.
    fn apply_profile(&mut self, step: u8, path: &Path, what: &str) -> Result<(), Fail> {
        let check = format!("vlx-install apply {what}");
        let log = self
            .logs
            .dir
            .join(format!("vlx-install-day2-step{step}.log"));
        let said = tools::apply(path, self.r.image.dir(), &self.r.san, &log)
            .map_err(|e| fail(check.clone(), e))?;
        self.checks.pass(
            step,
            check,
            said.lines().last().unwrap_or("done").trim().to_string(),
        );
        Ok(())
    }

    /// Asks the DNS server of each blade of `names` for `fqdn` until each
    /// answers as `want` says: with `ip` (`Some`), or that the name does
    /// not exist (`None`; the same server must answer for the blade's own
    /// name then, so a server that is down or restarting does not pass).
    /// One check row per blade, with how long it took after `since`.
    fn await_dns(
        &mut self,
        step: u8,
        names: &[String],
        fqdn: &str,
        want: Option<Ipv4Addr>,
        since: Instant,
    ) {
        let limit = self.r.timeouts.command;
        let mut rows = Vec::new();
        for name in names {
            let check = match want {
                Some(_) => format!("{name} resolves {fqdn}"),
                None => format!("{name} no longer resolves {fqdn}"),
            };
            let deadline = since + FOLLOW_WATCH;
            let mut last = String::new();
            let result = loop {
                let nodes = self.nodes();
                let Some(n) = nodes.iter().find(|n| n.name == name) else {
                    break Err("it has no power".to_string());
                };
                let asked = checks::sh(n, &format!("nslookup {fqdn} {}", n.ip), limit)
                    .map_err(|e| e.to_string());
                let done = match (&asked, want) {
                    (Ok(o), Some(ip)) => o.success() && o.lines.iter().any(|l| has_ip(l, ip)),
                    (Ok(o), None) => {
                        let nx = o
                            .lines
                            .iter()
                            .any(|l| l.contains("NXDOMAIN") || l.contains("can't find"));
                        nx && checks::sh(n, &format!("nslookup {} {}", n.fqdn, n.ip), limit)
                            .is_ok_and(|s| s.success() && s.lines.iter().any(|l| has_ip(l, n.ip)))
                    }
                    (Err(_), _) => false,
                };
                last = match &asked {
                    Ok(o) => o.lines.join(" | "),
                    Err(e) => e.clone(),
                };
                if done {
                    break Ok(since.elapsed());
                }
                if Instant::now() >= deadline {
                    break Err(format!(
                        "not within {} s of the apply; its last answer: {last}",
                        FOLLOW_WATCH.as_secs()
                    ));
                }
                std::thread::sleep(FOLLOW_POLL);
            };
            rows.push((check, result, last));
        }
        for (check, result, last) in rows {
            match result {
                Ok(took) => self.checks.pass(
                    step,
                    check,
                    format!(
                        "{:.0} s after the apply (on the rig's clock): {last}",
                        took.as_secs_f64()
                    ),
                ),
                Err(e) => self.checks.fail(step, check, e),
            }
        }
    }

    /// Waits until every running blade serves the meta volume's generation
    /// on the SAN (`/run/vlx/meta-generation`, written by `follow` once
    /// its services run on it), so that a step that takes a blade away
    /// meets a settled cluster, not one still reloading the last change.
    /// One check row; then [`VRRP_SETTLE`] from the last blade's reload.
    pub(super) fn await_followers(&mut self, step: u8) {
        let check = "running blades serve the SAN's meta generation";
        let limit = self.r.timeouts.command;
        let since = Instant::now();
        let deadline = since + FOLLOW_WATCH;
        // The least time since a blade wrote its generation, on its own
        // clock (whole seconds).
        let mut youngest = u64::MAX;
        let result = loop {
            let want = match crate::san::meta_generation(&self.r.san, &self.cluster.disk) {
                Ok(Some(g)) => g,
                Ok(None) => String::new(),
                Err(e) => break Err(e.to_string()),
            };
            let mut behind = Vec::new();
            youngest = u64::MAX;
            for n in self.nodes() {
                let said = checks::sh(&n, SERVES, limit)
                    .map(|o| o.text().trim().to_string())
                    .unwrap_or_default();
                let (serves, age) = said.split_once(' ').unwrap_or((&said, ""));
                if want.is_empty() || serves != want {
                    behind.push(format!("{} ({})", n.name, or_none(serves)));
                }
                youngest = youngest.min(age.parse().unwrap_or(0));
            }
            if behind.is_empty() {
                break Ok(want);
            }
            if Instant::now() >= deadline {
                break Err(format!(
                    "the SAN's is {}; not within {} s: {}",
                    or_none(&want),
                    FOLLOW_WATCH.as_secs(),
                    behind.join(", ")
                ));
            }
            std::thread::sleep(FOLLOW_POLL);
        };
        match result {
            Ok(g) => {
                std::thread::sleep(VRRP_SETTLE.saturating_sub(Duration::from_secs(youngest)));
                self.checks.pass(
                    step,
                    check,
                    format!(
                        "{g}, {:.0} s after the step began",
                        since.elapsed().as_secs_f64()
                    ),
                );
            }
            Err(e) => self.checks.fail(step, check, e),
        }
    }

    /// Nodes that steps 10 and 12 need running and that step 6 lost: the
    /// node whose board is replaced, and a cold-start node besides it
    /// (step 12 keeps one blade on the old slot while two reboot).
    fn needed_later(&self) -> Vec<String> {
        let running = self.running();
        let swapped = self.r.steps.iter().find_map(|s| match s {
            Step::ReplaceBoard { node, .. } => Some(node.clone()),
            _ => None,
        });
        let mut wake = Vec::new();
        if let Some(s) = &swapped
            && !running.contains(s)
        {
            wake.push(s.clone());
        }
        let cold: Vec<&str> = self
            .r
            .nodes()
            .filter(|b| b.part == Part::ColdStart && Some(&b.name) != swapped.as_ref())
            .map(|b| b.name.as_str())
            .collect();
        if !cold.iter().any(|c| running.iter().any(|r| r == c))
            && let Some(c) = cold.first()
        {
            wake.push(c.to_string());
        }
        wake
    }

    /// Powers on `names` from the SAN, all at once, and waits for each.
    fn boot_from_san(&mut self, step: u8, names: &[String]) -> Result<(), Fail> {
        for name in names {
            let m = self.machine_now(name, BootFrom::Disk)?;
            self.power_on(name, &m)?;
        }
        for name in names {
            self.await_ready(step, name)?;
        }
        Ok(())
    }

    /// Syncs each blade's root and takes its power; then [`boot_from_san`].
    fn reboot(&mut self, step: u8, names: &[String]) -> Result<(), Fail> {
        let limit = self.r.timeouts.command;
        for name in names {
            if let Some(b) = self.live(name) {
                // The root alone (see `factory_reset`).
                b.shell()
                    .run("sync -f /", limit)
                    .map_err(|e| fail(format!("{name} synced"), e))?;
            }
            self.power_off(name);
        }
        self.boot_from_san(step, names)
    }

    /// Step 9: a blade added to the running cluster.
    pub(super) fn add_blade(
        &mut self,
        blade: &str,
        profile: &Path,
        nodes: &[Entry],
        grow_to: Bytes,
    ) -> Result<(), Fail> {
        let san = &self.r.san;
        std::fs::OpenOptions::new()
            .write(true)
            .open(san)
            .and_then(|f| f.set_len(grow_to.get()))
            .map_err(|e| fail("SAN grown", format!("{}: {e}", san.display())))?;
        self.checks.pass(
            9,
            "SAN grown",
            format!("{} is {grow_to} now", san.display()),
        );
        self.write_profile(9, profile, nodes)?;
        // What apply will change, first: the new node's store and the
        // kept nodes' tables, nothing else.
        let check = format!("vlx-install plan --diff shows {blade} and nothing else");
        let log = self.logs.dir.join("vlx-install-diff-step9.log");
        let kept: Vec<String> = self
            .cluster
            .nodes
            .iter()
            .map(|n| n.name.to_string())
            .collect();
        match tools::plan_diff(profile, &self.r.san, true, &log)
            .map_err(|e| e.to_string())
            .and_then(|out| adds_only(&out, blade, &kept))
        {
            Ok(said) => self.checks.pass(9, check, said),
            Err(e) => self.checks.fail(9, check, e),
        }
        self.apply_profile(9, profile, &format!("adds {blade}"))?;
        let check = "vlx-install plan --diff after the apply shows nothing";
        let log = self.logs.dir.join("vlx-install-diff-step9-after.log");
        match tools::plan_diff(profile, &self.r.san, false, &log) {
            Ok(out) => {
                self.checks.expect(
                    9,
                    check,
                    out.trim().is_empty(),
                    if out.trim().is_empty() {
                        "nothing".to_string()
                    } else {
                        out.lines().collect::<Vec<_>>().join(" | ")
                    },
                );
            }
            Err(e) => self.checks.fail(9, check, e.to_string()),
        }
        let since = Instant::now();
        let b = self.blade(blade)?.clone();
        let (fqdn, ip) = match (&b.fqdn, b.ip) {
            (Some(f), Some(i)) => (f.clone(), i),
            _ => return Err(fail(format!("{blade} in the plan"), "no name or address")),
        };
        // The nodes later steps need that step 6 lost boot from the SAN
        // meanwhile (they need no running blade).
        let running = self.running();
        let wake = self.needed_later();
        for name in &wake {
            let m = self.machine_now(name, BootFrom::Disk)?;
            self.power_on(name, &m)?;
        }
        self.await_dns(9, &running, &fqdn, Some(ip), since);
        self.power_on(blade, &b.machine)?;
        self.await_ready(9, blade)?;
        for name in &wake {
            self.await_ready(9, name)?;
        }
        let limit = self.r.timeouts.command;
        let prefix = self.cluster.network.cidr.prefix();
        let mut checks = std::mem::take(&mut self.checks);
        let survivors: Vec<Ipv4Addr> = self
            .nodes()
            .iter()
            .filter(|n| n.name != blade)
            .map(|n| n.ip)
            .collect();
        if let Some(n) = self.nodes().iter().find(|n| n.name == blade) {
            checks::identity(&mut checks, 9, n, prefix, limit);
            let lines: Vec<String> = n
                .blade
                .console()
                .lines()
                .into_iter()
                .map(|l| l.text)
                .collect();
            let servers = checks::boot_servers(&lines);
            checks.expect(
                9,
                format!("{blade} network-booted from running blades"),
                !servers.is_empty() && servers.iter().all(|s| survivors.contains(s)),
                format!(
                    "fetched from {}",
                    servers
                        .iter()
                        .map(Ipv4Addr::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        self.checks = checks;
        Ok(())
    }

    /// Step 10: a new board for `node`, booting as `node` with its store.
    pub(super) fn replace_board(
        &mut self,
        node: &str,
        mac: MacAddr,
        profile: &Path,
        nodes: &[Entry],
    ) -> Result<(), Fail> {
        let limit = self.r.timeouts.command;
        if !self.running().iter().any(|n| n == node) {
            self.boot_from_san(10, &[node.to_string()])?;
        }
        let file = checks::marker_file(node);
        {
            let all = self.nodes();
            let n = all
                .iter()
                .find(|n| n.name == node)
                .ok_or_else(|| fail(format!("{node} wrote its file"), "it has no power"))?;
            checks::write_marker(n, limit)
                .map_err(|e| fail(format!("{node} wrote its file"), e))?;
            checks::sh(n, "sync -f /", limit).map_err(|e| fail(format!("{node} synced"), e))?;
        }
        self.checks
            .pass(10, format!("{node} wrote its file"), file.clone());
        self.power_off(node);
        self.apply_change(10, profile, nodes, &format!("gives {node} the board {mac}"))?;
        self.facts.boards.push((node.to_string(), mac));
        self.boot_from_san(10, &[node.to_string()])?;
        let prefix = self.cluster.network.cidr.prefix();
        let mut checks = std::mem::take(&mut self.checks);
        if let Some(n) = self.nodes().iter().find(|n| n.name == node) {
            checks::identity(&mut checks, 10, n, prefix, limit);
            let check = format!("{node} runs on the board {mac}");
            match checks::sh(n, "cat /sys/class/net/*/address", limit) {
                Ok(o) => {
                    checks.expect(
                        10,
                        check,
                        o.lines.iter().any(|l| l.trim() == mac.to_string()),
                        format!("its NICs: {}", o.lines.join(", ")),
                    );
                }
                Err(e) => checks.fail(10, check, e.to_string()),
            }
            let check = format!("{node}'s file survived the board swap");
            match checks::sh(n, &format!("cat {file}"), limit) {
                Ok(o) => {
                    checks.expect(
                        10,
                        check,
                        o.success() && o.text() == node,
                        format!("{file}: {}", o.text()),
                    );
                }
                Err(e) => checks.fail(10, check, e.to_string()),
            }
        }
        self.checks = checks;
        Ok(())
    }

    /// Step 11: `node` retired.
    pub(super) fn remove_blade(
        &mut self,
        node: &str,
        profile: &Path,
        nodes: &[Entry],
    ) -> Result<(), Fail> {
        self.power_off(node);
        self.apply_change(11, profile, nodes, &format!("removes {node}"))?;
        let since = Instant::now();
        let fqdn = self
            .blade(node)?
            .fqdn
            .clone()
            .ok_or_else(|| fail(format!("{node} in the plan"), "no name"))?;
        let running = self.running();
        self.await_dns(11, &running, &fqdn, None, since);
        let check = format!("vlx-install status no longer lists {node}");
        let st = self.status(11).map_err(|e| fail(check.clone(), e))?;
        let listed = status_nodes(&st);
        self.checks.expect(
            11,
            check,
            !listed.iter().any(|(n, _, _)| n == node),
            format!(
                "it lists {}",
                listed
                    .iter()
                    .map(|(n, _, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        Ok(())
    }

    /// `vlx-install status --json`, parsed.
    fn status(&self, step: u8) -> Result<serde_json::Value, String> {
        let log = self
            .logs
            .dir
            .join(format!("vlx-install-status-step{step}.log"));
        let out = tools::status_json(&self.r.san, &log).map_err(|e| e.to_string())?;
        serde_json::from_str(&out).map_err(|e| format!("status --json: {e}: {out}"))
    }

    /// Whether each of `names` has [`UPGRADE_MARKER`] on its root.
    fn upgraded(&self, names: &[String]) -> Vec<(String, Result<bool, String>)> {
        let limit = self.r.timeouts.command;
        let nodes = self.nodes();
        names
            .iter()
            .map(|name| {
                let r = match nodes.iter().find(|n| n.name == name) {
                    Some(n) => checks::sh(n, &format!("test -e {UPGRADE_MARKER}"), limit)
                        .map(|o| o.success())
                        .map_err(|e| e.to_string()),
                    None => Err("it has no power".into()),
                };
                (name.clone(), r)
            })
            .collect()
    }

    /// One row per node of `expect` (node, slot, moves at its reboot):
    /// what its root holds and what `status` records.
    fn check_slots(&mut self, step: u8, expect: &[(String, &str, bool)], when: &str) {
        let roots = self.upgraded(&expect.iter().map(|e| e.0.clone()).collect::<Vec<_>>());
        let st = self.status(step);
        for ((name, slot, moves), (_, root)) in expect.iter().zip(roots) {
            let check = format!("{name} on slot {slot} {when}");
            let want_marker = *slot == "b";
            let recorded = match &st {
                Ok(st) => status_nodes(st)
                    .into_iter()
                    .find(|(n, _, _)| n == name)
                    .map(|(_, s, m)| (s, m)),
                Err(e) => {
                    self.checks.fail(step, check, e.clone());
                    continue;
                }
            };
            match (root, recorded) {
                (Ok(marked), Some((s, m))) => {
                    let ok = marked == want_marker && s.as_deref() == Some(*slot) && m == *moves;
                    self.checks.expect(
                        step,
                        check,
                        ok,
                        format!(
                            "its root {} {UPGRADE_MARKER}; status: slot {}, {}",
                            if marked { "has" } else { "lacks" },
                            s.as_deref().unwrap_or("none"),
                            if m {
                                "MOVES at its next reboot"
                            } else {
                                "stays at its next reboot"
                            }
                        ),
                    );
                }
                (Err(e), _) => self.checks.fail(step, check, e),
                (_, None) => self.checks.fail(step, check, "status does not list it"),
            }
        }
    }

    /// Step 12: the image upgraded onto the second slot, two blades moved
    /// to it by a reboot while a third stays; rolled back, and one back.
    pub(super) fn upgrade(&mut self, image: &Path) -> Result<(), Fail> {
        let version = upgraded_image(self.r.image.dir(), image)
            .map_err(|e| fail("upgraded image made", e))?;
        self.checks.pass(
            12,
            "upgraded image made",
            format!(
                "{} (version {version}, its origin has {UPGRADE_MARKER})",
                image.display()
            ),
        );
        let log = self.logs.dir.join("vlx-install-upgrade.log");
        let said =
            tools::upgrade(image, &self.r.san, &log).map_err(|e| fail("vlx-install upgrade", e))?;
        self.checks.pass(
            12,
            "vlx-install upgrade",
            said.lines()
                .find(|l| l.contains("RESET"))
                .or(said.lines().last())
                .unwrap_or("done")
                .trim()
                .to_string(),
        );
        // Two reboot (the added blade and the new board, when they run),
        // the others stay.
        let running = self.running();
        let mut order: Vec<String> = running.clone();
        order.sort_by_key(|n| {
            !self.r.blade(n).is_some_and(|b| {
                b.part == Part::Added || self.facts.boards.iter().any(|(x, _)| x == n)
            })
        });
        if order.len() < 3 {
            return Err(fail(
                "two blades reboot, one stays",
                format!("only {} run", running.join(", ")),
            ));
        }
        let (moved, stay) = order.split_at(2);
        let moved = moved.to_vec();
        let stay = stay.to_vec();
        self.reboot(12, &moved)?;
        let mut expect: Vec<(String, &str, bool)> =
            moved.iter().map(|n| (n.clone(), "b", false)).collect();
        expect.extend(stay.iter().map(|n| (n.clone(), "a", true)));
        self.check_slots(12, &expect, "after the upgrade and its reboot");

        let log = self.logs.dir.join("vlx-install-rollback.log");
        let said =
            tools::rollback(&self.r.san, &log).map_err(|e| fail("vlx-install rollback", e))?;
        self.checks.pass(
            12,
            "vlx-install rollback",
            said.lines().last().unwrap_or("done").trim().to_string(),
        );
        let back = moved[..1].to_vec();
        self.reboot(12, &back)?;
        let mut expect: Vec<(String, &str, bool)> =
            back.iter().map(|n| (n.clone(), "a", false)).collect();
        expect.extend(moved[1..].iter().map(|n| (n.clone(), "b", true)));
        expect.extend(stay.iter().map(|n| (n.clone(), "a", false)));
        self.check_slots(12, &expect, "after the rollback");
        Ok(())
    }
}

/// Judges `plan --diff --json` of a profile that adds `added` to the
/// nodes `kept`: that node added and no other, only its volumes added,
/// no cluster-wide setting changed (etcd's voters included: a change
/// keeps the installed voters), and only kept nodes' files changed.
fn adds_only(json: &str, added: &str, kept: &[String]) -> Result<String, String> {
    let d: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("plan --diff --json: {e}: {json}"))?;
    let list = |key: &str| d[key].as_array().cloned().unwrap_or_default();
    let nodes = list("nodes");
    let parts = list("partitions");
    let settings = list("settings");
    let configs = list("configs");
    let node_ok = nodes.len() == 1 && nodes[0]["change"] == "added" && nodes[0]["name"] == added;
    let suffix = format!("-{added}");
    let parts_ok = !parts.is_empty()
        && parts.iter().all(|p| {
            p["change"] == "added" && p["label"].as_str().is_some_and(|l| l.ends_with(&suffix))
        });
    let settings_ok = settings.is_empty();
    let configs_ok = configs.iter().all(|c| {
        c["node"]
            .as_str()
            .is_some_and(|n| kept.iter().any(|k| k == n))
    });
    let names = |v: &[serde_json::Value], key: &str| {
        v.iter()
            .map(|x| {
                format!(
                    "{} {}",
                    x["change"].as_str().unwrap_or("?"),
                    x[key].as_str().unwrap_or("?")
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let said = format!(
        "nodes: {}; partitions: {}; settings: {}; files changed on {}",
        names(&nodes, "name"),
        names(&parts, "label"),
        match settings.is_empty() {
            true => "none changed".to_string(),
            false => settings
                .iter()
                .map(|c| {
                    let text = |k: &str| {
                        c[k].as_str()
                            .map_or_else(|| c[k].to_string(), str::to_string)
                    };
                    format!("{} {} -> {}", text("key"), text("from"), text("to"))
                })
                .collect::<Vec<_>>()
                .join(", "),
        },
        configs
            .iter()
            .map(|c| c["node"].as_str().unwrap_or("?").to_string())
            .collect::<Vec<_>>()
            .join(", "),
    );
    match node_ok && parts_ok && settings_ok && configs_ok {
        true => Ok(said),
        false => Err(said),
    }
}

/// Each node `status --json` lists: its name, slot and whether it moves
/// at its next reboot.
fn status_nodes(st: &serde_json::Value) -> Vec<(String, Option<String>, bool)> {
    st["nodes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|n| {
                    (
                        n["name"].as_str().unwrap_or_default().to_string(),
                        n["slot"]["slot"].as_str().map(str::to_string),
                        n["slot"]["moves_at_reboot"].as_bool().unwrap_or(false),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `line` holds `ip` as a whole address.
fn has_ip(line: &str, ip: Ipv4Addr) -> bool {
    line.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .any(|w| w == ip.to_string())
}

/// A newer build of the host image in `from`, made into `out` the way the
/// slot rig test makes one (`agent/tests/rig_slots.rs`): the same files,
/// [`UPGRADE_MARKER`] written into its origin with debugfs, its version
/// counted on and its manifest's hashes made again. Returns the version.
fn upgraded_image(from: &Path, out: &Path) -> Result<String, String> {
    let at = |p: &Path| {
        let p = p.to_owned();
        move |e: std::io::Error| format!("{}: {e}", p.display())
    };
    std::fs::create_dir_all(out).map_err(at(out))?;
    let m =
        contracts::image::Manifest::read(from).map_err(|e| format!("{}: {e}", from.display()))?;
    let files: Vec<String> = m.artifacts.iter().map(|a| a.file.clone()).collect();
    for f in files
        .iter()
        .map(String::as_str)
        .chain([contracts::image::FILE])
    {
        std::fs::copy(from.join(f), out.join(f)).map_err(at(&from.join(f)))?;
    }
    let note = out.join("upgraded.txt");
    std::fs::write(&note, "written by vlx-rig's day-2 upgrade\n").map_err(at(&note))?;
    let origin = out.join(contracts::image::ORIGIN);
    let o = Command::new("debugfs")
        .arg("-w")
        .arg("-R")
        .arg(format!("write {} {UPGRADE_MARKER}", note.display()))
        .arg(&origin)
        .output()
        .map_err(|e| format!("debugfs: {e}"))?;
    // debugfs exits 0 on most failures; its stderr says them.
    let err = String::from_utf8_lossy(&o.stderr);
    if !o.status.success() || err.lines().any(|l| !l.starts_with("debugfs ")) {
        return Err(format!("debugfs write into {}: {err}", origin.display()));
    }
    std::fs::remove_file(&note).map_err(at(&note))?;
    let mut m2 = m.clone();
    m2.version = format!("{}+day2", m.version);
    let names: Vec<&str> = files.iter().map(String::as_str).collect();
    m2.artifacts =
        contracts::image::describe(out, &names).map_err(|e| format!("{}: {e}", out.display()))?;
    let path = out.join(contracts::image::FILE);
    std::fs::write(&path, m2.to_json()).map_err(at(&path))?;
    Ok(m2.version)
}

/// `s`, or "none" when it is empty.
fn or_none(s: &str) -> &str {
    if s.is_empty() { "none" } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_that_adds_one_node_and_its_volumes_passes_and_others_do_not() {
        let kept = vec!["blade01".to_string(), "blade02".to_string()];
        let good = r#"{"nodes":[{"change":"added","name":"blade05"}],
            "partitions":[{"change":"added","label":"vlx-cow-blade05"},{"change":"added","label":"vlx-swap-blade05"}],
            "settings":[],"configs":[{"node":"blade01","files":["etc/hosts"]}]}"#;
        assert!(adds_only(good, "blade05", &kept).is_ok());
        for bad in [
            good.replace(
                r#""settings":[]"#,
                r#""settings":[{"key":"etcd.voters","from":["blade03"],"to":["blade04"]}]"#,
            ),
            good.replace(
                r#""label":"vlx-swap-blade05""#,
                r#""label":"vlx-swap-blade02""#,
            ),
            good.replace(r#""settings":[]"#, r#""settings":[{"key":"network.vips"}]"#),
            good.replace(r#"{"node":"blade01""#, r#"{"node":"blade09""#),
            good.replace(r#""change":"added","name""#, r#""change":"changed","name""#),
        ] {
            assert!(adds_only(&bad, "blade05", &kept).is_err(), "{bad}");
        }
    }
}
