//! `vlx-vcd`, the agent on every blade: registers the blade under a lease,
//! takes part in the election of the placer, and reconciles the VMs of its
//! own blade with what etcd says they should do.
//!
//! What to do is planned from a snapshot and what runs here ([`plan`],
//! pure); [`Agent::tick`] observes, plans and executes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use cluster::NodeName;

use crate::etcd::{Compare, Etcd, Op};
use crate::model::{VcName, VcSpec, VmIndex};
use crate::place::place;
use crate::state::{
    self, BladeRecord, Desired, Snapshot, VmRecord, VmStatus, blade_key, state_key, status_key,
};
use crate::vm::Host;
use vc_net::NetInput;
use vc_net::NetPlan;
use vc_net::apply::{self, Netns};

/// Where the rendered VC dnsmasq config keeps its pid file
/// (`vc_net::render::dnsmasq`).
const DNSMASQ_RUN: &str = "/run/vlx";

/// The key of the placer's election: held under its lease by one agent.
pub const PLACER_KEY: &str = "/vlx/placer";

/// What runs here, as observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// QEMU answers on its monitor; `true` when its CPUs run.
    Up(bool),
    /// No QEMU here.
    Down,
}

/// One step for this blade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Boot the VM (from its saved state when `incoming`).
    Start {
        vc: VcName,
        vm: VmIndex,
        incoming: bool,
    },
    /// Resume a paused VM.
    Resume {
        vc: VcName,
        vm: VmIndex,
    },
    Stop {
        vc: VcName,
        vm: VmIndex,
    },
    Save {
        vc: VcName,
        vm: VmIndex,
    },
    /// End it and delete its files (its VC is gone).
    Remove {
        vc: VcName,
        vm: VmIndex,
    },
    /// End it here (it moved to another blade).
    Release {
        vc: VcName,
        vm: VmIndex,
    },
    /// Report the VM's state.
    Report {
        vc: VcName,
        vm: VmIndex,
        state: &'static str,
    },
}

/// Plans this blade's steps. `seen`: every VM with a run folder here;
/// `saved`: whether a VM has a saved state on the shared volume.
pub fn plan(
    me: &NodeName,
    snap: &Snapshot,
    seen: &BTreeMap<(VcName, VmIndex), Seen>,
    saved: &dyn Fn(&VcName, VmIndex) -> bool,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut mine: BTreeSet<(VcName, VmIndex)> = BTreeSet::new();
    for r in snap.vcs.values() {
        let vc = &r.spec.name;
        for v in r.vms.iter().filter(|v| &v.blade == me) {
            mine.insert((vc.clone(), v.vm));
            let now = seen.get(&(vc.clone(), v.vm)).copied().unwrap_or(Seen::Down);
            let reported = r.status.get(&v.vm).filter(|s| &s.blade == me);
            let report = |state: &'static str, steps: &mut Vec<Step>| {
                if reported.map(|s| s.state.as_str()) != Some(state) {
                    steps.push(Step::Report {
                        vc: vc.clone(),
                        vm: v.vm,
                        state,
                    });
                }
            };
            match (r.desired, now) {
                (Desired::Running, Seen::Up(true)) => report("running", &mut steps),
                (Desired::Running, Seen::Up(false)) => {
                    steps.push(Step::Resume {
                        vc: vc.clone(),
                        vm: v.vm,
                    });
                    report("running", &mut steps);
                }
                (Desired::Running, Seen::Down) => {
                    steps.push(Step::Start {
                        vc: vc.clone(),
                        vm: v.vm,
                        incoming: saved(vc, v.vm),
                    });
                    report("running", &mut steps);
                }
                (Desired::Stopped, Seen::Up(_)) => {
                    steps.push(Step::Stop {
                        vc: vc.clone(),
                        vm: v.vm,
                    });
                    report("stopped", &mut steps);
                }
                (Desired::Stopped, Seen::Down) => report("stopped", &mut steps),
                (Desired::Saved, Seen::Up(_)) => {
                    steps.push(Step::Save {
                        vc: vc.clone(),
                        vm: v.vm,
                    });
                    report("saved", &mut steps);
                }
                (Desired::Saved, Seen::Down) => report(
                    if saved(vc, v.vm) { "saved" } else { "stopped" },
                    &mut steps,
                ),
            }
        }
    }
    for (vc, vm) in seen.keys() {
        if mine.contains(&(vc.clone(), *vm)) {
            continue;
        }
        let step = if snap.vcs.contains_key(vc) {
            Step::Release {
                vc: vc.clone(),
                vm: *vm,
            }
        } else {
            Step::Remove {
                vc: vc.clone(),
                vm: *vm,
            }
        };
        steps.push(step);
    }
    steps
}

/// VMs to place again (with their VC), and VMs to report lost (with the
/// blade they were on).
pub type LostPlan = (
    Vec<(VcSpec, Vec<VmRecord>)>,
    Vec<(VcName, VmIndex, NodeName)>,
);

/// The placer's plan for VMs on blades that are gone: with `restart =
/// "auto"` (and the VC running) they are placed again on the survivors by
/// the VC's policy, keeping their index and MAC; otherwise they are
/// reported lost. Returns the VMs to move and the VMs to mark lost.
pub fn plan_lost(snap: &Snapshot) -> LostPlan {
    let alive: BTreeSet<&NodeName> = snap.blades.iter().map(|b| &b.name).collect();
    let mut moves = Vec::new();
    let mut lost = Vec::new();
    for r in snap.vcs.values() {
        let gone: Vec<&VmRecord> = r.vms.iter().filter(|v| !alive.contains(&v.blade)).collect();
        if gone.is_empty() {
            continue;
        }
        let auto = r.spec.restart == crate::Restart::Auto && r.desired == Desired::Running;
        let replaced = auto
            .then(|| {
                let sub = VcSpec {
                    vms: u32::try_from(gone.len()).unwrap_or(u32::MAX),
                    ..r.spec.clone()
                };
                // Capacity without the gone VMs: they run nowhere now.
                let mut s = snap.clone();
                if let Some(me) = s.vcs.get_mut(&r.spec.name) {
                    me.vms.retain(|v| alive.contains(&v.blade));
                }
                place(&sub, &s.free(None)).ok()
            })
            .flatten();
        match replaced {
            Some(p) => moves.push((
                r.spec.clone(),
                gone.iter()
                    .zip(p.vms)
                    .map(|(old, new)| VmRecord {
                        vm: old.vm,
                        blade: new.blade,
                        mac: old.mac,
                    })
                    .collect(),
            )),
            None => {
                for v in gone {
                    if r.status.get(&v.vm).map(|s| s.state.as_str()) != Some("lost") {
                        lost.push((r.spec.name.clone(), v.vm, v.blade.clone()));
                    }
                }
            }
        }
    }
    (moves, lost)
}

/// One blade's agent.
#[derive(Debug)]
pub struct Agent {
    pub me: NodeName,
    pub capacity: BladeRecord,
    pub etcd: Etcd,
    pub host: Host,
    /// Seconds the blade's lease lives without renewal.
    pub ttl: i64,
    /// Where the blade's VC network files go (`vc_net::apply::write_files`):
    /// `/` on a blade, a folder per blade in the rig.
    pub net_root: PathBuf,
    /// The cluster dnsmasq's pid files, the first that exists wins: it is
    /// sent SIGHUP when the VC names change.
    pub cluster_dnsmasq_pid: Vec<PathBuf>,
    /// The server of the VC shares when this blade holds the storage
    /// address.
    pub nfs_server: crate::netreload::NfsServer,
    lease: Option<i64>,
    /// When the lease was last renewed.
    renewed: Option<Instant>,
    /// The network input last applied in full on this blade.
    net_applied: Option<NetInput>,
    /// The VC dnsmasq this agent runs.
    dnsmasq: Option<Child>,
}

impl Agent {
    pub fn new(me: NodeName, capacity: BladeRecord, etcd: Etcd, host: Host, ttl: i64) -> Agent {
        Agent {
            me,
            capacity,
            etcd,
            host,
            ttl,
            net_root: PathBuf::from("/"),
            cluster_dnsmasq_pid: crate::netreload::CLUSTER_DNSMASQ_PIDS
                .iter()
                .map(PathBuf::from)
                .collect(),
            nfs_server: crate::netreload::NfsServer::detect(),
            lease: None,
            renewed: None,
            net_applied: None,
            dnsmasq: None,
        }
    }

    /// Where the VC dnsmasq's pid is kept, so that an agent restarted
    /// after a kill ends the one its predecessor left.
    fn dnsmasq_pidfile(&self) -> PathBuf {
        self.host.run.join("vc-dnsmasq.pid")
    }

    /// Puts this blade's part of the VC networks in place (taps, gateway
    /// addresses, proxy ARP, /32 routes, nftables, the VC dnsmasq) when the
    /// network input changed since the last full apply, or the dnsmasq
    /// died. Nothing when no network is set up (`/vlx/net` absent).
    fn sync_net(&mut self, snap: &Snapshot) -> anyhow::Result<()> {
        let Some(input) = state::net_input(snap) else {
            return Ok(());
        };
        let alive = match self.dnsmasq.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(st))) => {
                eprintln!("vlx-vcd: the VC dnsmasq ended ({st}); starting it again");
                false
            }
            Some(Err(_)) | None => false,
        };
        if alive && self.net_applied.as_ref() == Some(&input) {
            return Ok(());
        }
        let plan = NetPlan::new(&input).context("planning the VC networks from /vlx/")?;
        let part = plan
            .blade(self.me.as_str())
            .with_context(|| format!("blade {} in /vlx/net", self.me))?;
        let report = apply::apply(&Netns::Current, &plan, &part)
            .with_context(|| format!("applying the VC networks of blade {}", self.me))?;
        let changed = apply::write_files(&self.net_root, &plan, &part)
            .context("writing the VC network files")?;
        let conf = self.net_root.join(apply::DNSMASQ_CONF);
        if !alive || changed.contains(&conf) {
            self.restart_dnsmasq(&conf)?;
        }
        if changed.contains(&self.net_root.join(apply::HOSTS)) {
            match crate::netreload::hup_cluster_dnsmasq(&self.cluster_dnsmasq_pid)
                .context("reloading the cluster dnsmasq")?
            {
                Some(pid) => eprintln!("vlx-vcd: VC names: cluster dnsmasq {pid} reloaded"),
                None => eprintln!("vlx-vcd: VC names: no cluster dnsmasq runs here"),
            }
        }
        let exports = self.net_root.join(self.nfs_server.exports_file());
        if changed.contains(&exports)
            && let Some(said) = crate::netreload::reexport(&plan, &self.nfs_server, &exports)
                .context("exporting VC shares")?
        {
            eprintln!("vlx-vcd: VC shares: {said}");
        }
        if !report.taps_added.is_empty()
            || !report.taps_removed.is_empty()
            || !report.routes_removed.is_empty()
        {
            eprintln!(
                "vlx-vcd: VC networks: taps +{:?} -{:?}, routes removed {:?}, {} routes",
                report.taps_added, report.taps_removed, report.routes_removed, report.routes
            );
        }
        self.net_applied = Some(input);
        Ok(())
    }

    /// Ends the VC dnsmasq (this agent's, or the one a killed predecessor
    /// left, by its pid file) and starts it on the new config. It runs in
    /// the foreground as this agent's child (no pid file of its own) and
    /// keeps no lease file: every address it gives is fixed.
    fn restart_dnsmasq(&mut self, conf: &Path) -> anyhow::Result<()> {
        if let Some(mut c) = self.dnsmasq.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let pidfile = self.dnsmasq_pidfile();
        if let Ok(text) = std::fs::read_to_string(&pidfile) {
            let pid = text.trim();
            let is_dnsmasq = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "dnsmasq");
            if is_dnsmasq {
                let _ = std::process::Command::new("kill")
                    .args(["-9", pid])
                    .status();
            }
        }
        // The rendered config's pid file lives there (dnsmasq writes it even
        // in the foreground).
        for d in [self.host.run.as_path(), Path::new(DNSMASQ_RUN)] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let log = self.host.run.join("vc-dnsmasq.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let err = out
            .try_clone()
            .with_context(|| format!("opening {}", log.display()))?;
        let child = std::process::Command::new("dnsmasq")
            .arg("--keep-in-foreground")
            .arg("--leasefile-ro")
            .arg(format!("--conf-file={}", conf.display()))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("starting dnsmasq (Debian dnsmasq-base)")?;
        std::fs::write(&pidfile, format!("{}\n", child.id()))
            .with_context(|| format!("writing {}", pidfile.display()))?;
        self.dnsmasq = Some(child);
        Ok(())
    }

    /// Keeps the blade registered: renews its lease, or takes a new one and
    /// registers again when it expired.
    fn register(&mut self) -> anyhow::Result<i64> {
        if let Some(l) = self.lease
            && self.etcd.lease_keepalive(l)? > 0
        {
            self.renewed = Some(Instant::now());
            return Ok(l);
        }
        let l = self.etcd.lease_grant(self.ttl)?;
        let value = serde_json::to_vec(&self.capacity).context("encoding the blade record")?;
        self.etcd.put(&blade_key(&self.me), &value, Some(l))?;
        self.lease = Some(l);
        self.renewed = Some(Instant::now());
        Ok(l)
    }

    /// Whether this agent is the placer: it holds [`PLACER_KEY`], or takes
    /// it when nobody does (the key lives under the holder's lease, so it
    /// goes with a dead blade).
    fn campaign(&self, lease: i64) -> anyhow::Result<bool> {
        let me = self.me.as_str().as_bytes().to_vec();
        self.etcd.txn(
            &[Compare::Absent(PLACER_KEY.into())],
            &[Op::Put {
                key: PLACER_KEY.into(),
                value: me.clone(),
                lease: Some(lease),
            }],
        )?;
        Ok(self
            .etcd
            .get(PLACER_KEY)?
            .is_some_and(|kv| kv.value == me && kv.lease == lease))
    }

    /// One round: register, place if placer, reconcile this blade.
    /// Returns the errors of single steps (the round goes on after them).
    pub fn tick(&mut self) -> anyhow::Result<Vec<String>> {
        let lease = self.register()?;
        let mut errors = Vec::new();
        if self.campaign(lease)? {
            let snap = Snapshot::read(&self.etcd)?;
            if let Err(e) = self.place_lost(&snap) {
                errors.push(format!("placing VMs of lost blades: {e:#}"));
            }
        }
        let snap = Snapshot::read(&self.etcd)?;
        // Taps before QEMU: a VM starts on the tap its blade made.
        if let Err(e) = self.sync_net(&snap) {
            errors.push(format!("VC networks: {e:#}"));
        }
        let mut seen = BTreeMap::new();
        for (vc, vm) in self.host.local_vms() {
            let s = match self.host.adopt(&vc, vm) {
                Some(mut q) => Seen::Up(q.status().is_ok_and(|s| s == "running")),
                None => Seen::Down,
            };
            seen.insert((vc, vm), s);
        }
        let host = self.host.clone();
        let saved = move |vc: &VcName, vm: VmIndex| host.save_file(vc, vm).exists();
        // A VM whose step failed gets no further step this round (its
        // `failed` report must not be overwritten by a planned `running`).
        let mut failed: BTreeSet<(VcName, VmIndex)> = BTreeSet::new();
        for step in plan(&self.me, &snap, &seen, &saved) {
            let vm = step_vm(&step).map(|(vc, vm)| (vc.clone(), vm));
            if vm.as_ref().is_some_and(|v| failed.contains(v)) {
                continue;
            }
            if let Err(e) = self.run(&snap, &step) {
                errors.push(format!("{step:?}: {e:#}"));
                if let Some((vc, vm)) = vm {
                    if let Err(r) = self.report(&vc, vm, "failed", Some(format!("{e:#}"))) {
                        errors.push(format!("reporting {vc}/{vm} failed: {r:#}"));
                    }
                    failed.insert((vc, vm));
                }
            }
        }
        Ok(errors)
    }

    fn place_lost(&self, snap: &Snapshot) -> anyhow::Result<()> {
        let (moves, lost) = plan_lost(snap);
        for (spec, vms) in moves {
            let r = &snap.vcs[&spec.name];
            let mut all = r.vms.clone();
            for v in &vms {
                if let Some(old) = all.iter_mut().find(|o| o.vm == v.vm) {
                    *old = v.clone();
                }
            }
            let value = serde_json::to_vec(&all).context("encoding a placement")?;
            let mut ops = vec![Op::put(state::vms_key(&spec.name), value)];
            ops.extend(vms.iter().map(|v| Op::Delete(status_key(&spec.name, v.vm))));
            let compare = vec![
                Compare::PrefixUnchangedSince(state::VCS.into(), snap.revision),
                Compare::ModIs(state_key(&spec.name), r.state_rev),
            ];
            self.etcd.txn(&compare, &ops)?;
        }
        for (vc, vm, blade) in lost {
            self.write_status(&vc, vm, &blade, "lost", None)?;
        }
        Ok(())
    }

    fn run(&self, snap: &Snapshot, step: &Step) -> anyhow::Result<()> {
        match step {
            Step::Start { vc, vm, incoming } => {
                let r = &snap.vcs[vc];
                let rec = r
                    .vms
                    .iter()
                    .find(|v| v.vm == *vm)
                    .context("the VM vanished from the snapshot")?;
                self.report(vc, *vm, "starting", None)?;
                // A VC with a network mounts its share from the storage
                // address (the tiny guest by `vlx.share=`).
                let share = match (&r.net, &snap.net) {
                    (Some(_), Some(n)) => Some(vc_net::render::share_source(
                        n.storage,
                        &n.shared_dir,
                        vc.as_str(),
                    )),
                    _ => None,
                };
                self.host
                    .start_net(&r.spec, rec, r.net.as_ref(), share.as_deref(), *incoming)
            }
            Step::Resume { vc, vm } => match self.host.adopt(vc, *vm) {
                Some(mut q) => q.execute("cont", serde_json::json!({})).map(|_| ()),
                None => Ok(()),
            },
            Step::Stop { vc, vm } => self.host.stop(vc, *vm),
            Step::Release { vc, vm } => {
                self.host.stop(vc, *vm)?;
                self.host.forget(vc, *vm)
            }
            Step::Save { vc, vm } => {
                self.report(vc, *vm, "saving", None)?;
                self.host.save(vc, *vm)
            }
            Step::Remove { vc, vm } => {
                self.host.stop(vc, *vm)?;
                self.host.remove(vc, *vm)
            }
            Step::Report { vc, vm, state } => self.report(vc, *vm, state, None),
        }
    }

    fn report(
        &self,
        vc: &VcName,
        vm: VmIndex,
        state: &str,
        detail: Option<String>,
    ) -> anyhow::Result<()> {
        self.write_status(vc, vm, &self.me, state, detail)
    }

    /// Writes a VM's status only while its VC exists (a destroyed VC gets
    /// no status key back).
    fn write_status(
        &self,
        vc: &VcName,
        vm: VmIndex,
        blade: &NodeName,
        state: &str,
        detail: Option<String>,
    ) -> anyhow::Result<()> {
        let st = VmStatus {
            blade: blade.clone(),
            state: state.to_owned(),
            detail,
        };
        let value = serde_json::to_vec(&st).context("encoding a VM status")?;
        self.etcd.txn(
            &[Compare::Exists(state::spec_key(vc))],
            &[Op::put(status_key(vc, vm), value)],
        )?;
        Ok(())
    }
}

impl Agent {
    /// Self-fencing of a blade cut off from etcd: once its lease has not
    /// been renewed for half its TTL, the placer may soon count its VMs lost
    /// and start them elsewhere, so every VM here is killed (SIGKILL, no
    /// monitor needed) before that can happen. Returns what was killed.
    pub fn fence_if_cut_off(&mut self) -> Vec<String> {
        let half = Duration::from_secs(u64::try_from(self.ttl).unwrap_or(0) / 2);
        if self.renewed.is_none_or(|t| t.elapsed() <= half) {
            return Vec::new();
        }
        let mut killed = Vec::new();
        for (vc, vm) in self.host.local_vms() {
            let pidfile = self.host.run_dir(&vc, vm).join("qemu.pid");
            let Ok(text) = std::fs::read_to_string(&pidfile) else {
                continue;
            };
            let pid = text.trim();
            let ok = std::process::Command::new("kill")
                .args(["-9", pid])
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                killed.push(format!("{vc}/{vm} (pid {pid})"));
            }
        }
        killed
    }
}

fn step_vm(s: &Step) -> Option<(&VcName, VmIndex)> {
    match s {
        Step::Start { vc, vm, .. }
        | Step::Resume { vc, vm }
        | Step::Stop { vc, vm }
        | Step::Save { vc, vm }
        | Step::Release { vc, vm }
        | Step::Report { vc, vm, .. } => Some((vc, *vm)),
        Step::Remove { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Restart;
    use crate::etcd::Kv;

    fn kv(key: &str, value: &str, rev: i64) -> Kv {
        Kv {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            create_revision: rev,
            mod_revision: rev,
            lease: 0,
        }
    }

    /// Blades b1, b2 (b2 only when `b2_alive`), VC `t` with vm1 on b1 and
    /// vm2 on b2, desired `desired`.
    fn snap(desired: &str, restart: Restart, b2_alive: bool) -> Snapshot {
        let name: VcName = "t".parse().unwrap();
        let spec = VcSpec {
            id: crate::VcId::from_name(&name),
            name,
            guest: "tiny".into(),
            vms: 2,
            vcpus: 1,
            memory: cluster::Bytes::mib(128),
            placement: crate::Policy::Block,
            mode: crate::Fit::Strict,
            restart,
        };
        let spec = serde_json::to_string(&spec).unwrap();
        let mut kvs = vec![kv(
            "/vlx/blades/b1",
            r#"{"cores":4,"memory":1073741824}"#,
            1,
        )];
        if b2_alive {
            kvs.push(kv(
                "/vlx/blades/b2",
                r#"{"cores":4,"memory":1073741824}"#,
                1,
            ));
        }
        kvs.extend([
            kv("/vlx/vc/t/spec", &spec, 2),
            kv(
                "/vlx/vc/t/state",
                &format!(r#"{{"desired":"{desired}"}}"#),
                3,
            ),
            kv(
                "/vlx/vc/t/vms",
                r#"[{"vm":1,"blade":"b1","mac":"06:00:00:01:00:01"},
                    {"vm":2,"blade":"b2","mac":"06:00:00:01:00:02"}]"#,
                2,
            ),
        ]);
        Snapshot::from_kvs(&kvs, 3).unwrap()
    }

    fn b1() -> NodeName {
        "b1".parse().unwrap()
    }

    fn t() -> VcName {
        "t".parse().unwrap()
    }

    #[test]
    fn a_blade_starts_only_its_own_vms() {
        let s = snap("running", Restart::Manual, true);
        let steps = plan(&b1(), &s, &BTreeMap::new(), &|_, _| false);
        assert_eq!(
            steps,
            [
                Step::Start {
                    vc: t(),
                    vm: VmIndex(1),
                    incoming: false
                },
                Step::Report {
                    vc: t(),
                    vm: VmIndex(1),
                    state: "running"
                },
            ]
        );
    }

    #[test]
    fn a_saved_vm_resumes_from_its_state_and_a_running_one_is_saved() {
        let s = snap("running", Restart::Manual, true);
        let steps = plan(&b1(), &s, &BTreeMap::new(), &|_, _| true);
        assert!(matches!(steps[0], Step::Start { incoming: true, .. }));
        let s = snap("saved", Restart::Manual, true);
        let seen = BTreeMap::from([((t(), VmIndex(1)), Seen::Up(true))]);
        let steps = plan(&b1(), &s, &seen, &|_, _| false);
        assert_eq!(
            steps[0],
            Step::Save {
                vc: t(),
                vm: VmIndex(1)
            }
        );
    }

    #[test]
    fn vms_of_a_gone_vc_are_removed_and_moved_ones_released() {
        let s = snap("running", Restart::Manual, true);
        let seen = BTreeMap::from([
            ((t(), VmIndex(2)), Seen::Up(true)),
            (("gone".parse().unwrap(), VmIndex(1)), Seen::Down),
        ]);
        let steps = plan(&b1(), &s, &seen, &|_, _| false);
        assert!(steps.contains(&Step::Release {
            vc: t(),
            vm: VmIndex(2)
        }));
        assert!(steps.contains(&Step::Remove {
            vc: "gone".parse().unwrap(),
            vm: VmIndex(1)
        }));
    }

    #[test]
    fn lost_vms_move_with_auto_and_are_marked_lost_without() {
        let (moves, lost) = plan_lost(&snap("running", Restart::Auto, false));
        assert!(lost.is_empty());
        assert_eq!(moves.len(), 1);
        assert_eq!(moves[0].1.len(), 1);
        assert_eq!(moves[0].1[0].vm, VmIndex(2));
        assert_eq!(moves[0].1[0].blade, b1());
        assert_eq!(moves[0].1[0].mac.to_string(), "06:00:00:01:00:02");

        let (moves, lost) = plan_lost(&snap("running", Restart::Manual, false));
        assert!(moves.is_empty());
        assert_eq!(lost, [(t(), VmIndex(2), "b2".parse().unwrap())]);

        let (moves, lost) = plan_lost(&snap("running", Restart::Auto, true));
        assert!(moves.is_empty() && lost.is_empty());
    }
}
