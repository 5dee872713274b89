//! VC state in etcd: the key layout, the records, and every change as a
//! pure plan over a snapshot (compares + operations of one transaction).
//! The executor ([`apply`]) only runs the transaction, so a change is whole
//! or absent, and two blades changing the same thing cannot both win.
//!
//! Keys (values are JSON):
//!
//! | key | value | written by |
//! |---|---|---|
//! | `/vlx/blades/<blade>` | [`BladeRecord`], under the agent's lease | `vlx-vcd` |
//! | `/vlx/guests/<guest>` | [`GuestRecord`] | guest import |
//! | `/vlx/vcid/<id>` | the VC's name (ids are unique) | `vlx-vc create` |
//! | `/vlx/vc/<vc>/spec` | [`VcSpec`] | `vlx-vc create`, `restore` (new policy) |
//! | `/vlx/vc/<vc>/state` | [`StateRecord`]: what the VC should be doing | `vlx-vc` |
//! | `/vlx/vc/<vc>/vms` | every [`VmRecord`] of the VC: where its VMs run | `vlx-vc`, the placer |
//! | `/vlx/vc/<vc>/net` | [`VcNetRecord`]: its subnet, chosen once at creation | `vlx-vc create` |
//! | `/vlx/net` | [`NetSettings`]: the cluster's networks, domain and VC subnet pool | `vlx-vc set-net` |
//!
//! The placement is one key, not one per VM, so that every change is a
//! transaction of a few operations whatever the VC's size (etcd refuses
//! transactions of more than 128 operations by default).
//! | `/vlx/status/<vc>/<vm>` | [`VmStatus`]: what the VM is doing | the agent that runs it |

use std::collections::BTreeMap;

use anyhow::{Context, anyhow};
use std::net::Ipv4Addr;

use cluster::{Bytes, Ipv4Net, MacAddr, NodeName};
use serde::{Deserialize, Serialize};
use vc_net::{NamedNet, NetInput, SubnetPool, VcInput, VmInput};

use crate::etcd::{Compare, Etcd, Kv, Op};
use crate::failure::Failure;
use crate::model::{Blade, Fit, Policy, VcName, VcSpec, VmIndex};
use crate::place::{free_capacity, place};

pub const ROOT: &str = "/vlx/";
pub const BLADES: &str = "/vlx/blades/";
pub const GUESTS: &str = "/vlx/guests/";
pub const VCIDS: &str = "/vlx/vcid/";
pub const VCS: &str = "/vlx/vc/";
pub const STATUS: &str = "/vlx/status/";
pub const NET: &str = "/vlx/net";

pub fn blade_key(b: &NodeName) -> String {
    format!("{BLADES}{b}")
}
pub fn guest_key(g: &str) -> String {
    format!("{GUESTS}{g}")
}
pub fn vcid_key(spec: &VcSpec) -> String {
    format!("{VCIDS}{}", spec.id)
}
pub fn vc_prefix(vc: &VcName) -> String {
    format!("{VCS}{vc}/")
}
pub fn spec_key(vc: &VcName) -> String {
    format!("{VCS}{vc}/spec")
}
pub fn state_key(vc: &VcName) -> String {
    format!("{VCS}{vc}/state")
}
pub fn vms_key(vc: &VcName) -> String {
    format!("{VCS}{vc}/vms")
}
pub fn net_key(vc: &VcName) -> String {
    format!("{VCS}{vc}/net")
}
pub fn status_prefix(vc: &VcName) -> String {
    format!("{STATUS}{vc}/")
}
pub fn status_key(vc: &VcName, vm: VmIndex) -> String {
    format!("{STATUS}{vc}/{vm}")
}

/// A blade's capacity for VMs, as its agent registers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BladeRecord {
    pub cores: u32,
    pub memory: Bytes,
}

/// A guest image imported onto the shared volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestRecord {
    /// The read-only base image, relative to the shared volume.
    pub base: String,
}

/// What the VC should be doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Desired {
    Running,
    Stopped,
    /// Its VMs' state is saved to the shared volume and they are not running.
    Saved,
}

impl Desired {
    pub fn as_str(self) -> &'static str {
        match self {
            Desired::Running => "running",
            Desired::Stopped => "stopped",
            Desired::Saved => "saved",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateRecord {
    pub desired: Desired,
}

/// Where one VM runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmRecord {
    pub vm: VmIndex,
    pub blade: NodeName,
    pub mac: MacAddr,
}

/// A VC's network as recorded at its creation: the subnet never moves
/// afterwards (restore and remaps keep it), so VM addresses stay put.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VcNetRecord {
    pub subnet: Ipv4Net,
    /// Whether its VMs may reach the outside through their blade.
    #[serde(default)]
    pub outside: bool,
}

impl VcNetRecord {
    /// The address of a VM (1-based index), in index order after the
    /// gateway; `None` past the subnet's end.
    pub fn addr(&self, vm: VmIndex) -> Option<Ipv4Addr> {
        let i = usize::try_from(vm.0).ok()?.checked_sub(1)?;
        vc_net::model::vm_addr(self.subnet, i)
    }
}

/// The cluster's facts the VC networks are planned from, one key for the
/// whole cluster (`/vlx/net`): `vc_net::NetInput` less the blades and VCs,
/// plus the pool new VC subnets are taken from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetSettings {
    pub domain: String,
    #[serde(default)]
    pub cluster_nets: Vec<NamedNet>,
    pub storage: Ipv4Addr,
    pub shared_dir: String,
    #[serde(default)]
    pub upstream_dns: Vec<Ipv4Addr>,
    /// The profile's `[vc]` table; none: every VC names its subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<SubnetPool>,
    /// Every blade and its address on the cluster network (the next hop of
    /// its VMs), from the cluster's plan: static facts, not under a lease,
    /// so the routes of a lost blade's VMs can still be planned.
    #[serde(default)]
    pub blades: Vec<vc_net::Blade>,
}

/// Where the installer renders [`NetSettings`] on every blade, from the
/// cluster plan (`overlays/node/etc/vlx/vc-net.toml.hbs`): the default of
/// `vlx-vc set-net` and of `vlx-vcd --net-settings`.
pub const NET_SETTINGS_FILE: &str = contracts::names::vc::NET_SETTINGS;

impl NetSettings {
    /// Reads and checks a settings file: the TOML parses (unknown keys are
    /// errors), the domain is a domain, the pool is private and its prefix
    /// fits. Every error is bad input and names the file.
    pub fn read(path: &std::path::Path) -> Result<NetSettings, String> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {file}: {e}"))?;
        let settings: NetSettings = toml::from_str(&text).map_err(|e| format!("{file}: {e}"))?;
        cluster::name::check_domain(&settings.domain)
            .map_err(|e| format!("{file}: domain `{}`: {e}", settings.domain))?;
        if let Some(p) = settings.pool {
            p.check(&file).map_err(|e| e.to_string())?;
        }
        Ok(settings)
    }
}

/// What `/vlx/net` may not become with the VCs of `snap`: a cluster
/// network over a VC's subnet. The error names both (bad input).
pub fn check_settings(snap: &Snapshot, settings: &NetSettings, file: &str) -> Result<(), String> {
    for (name, r) in &snap.vcs {
        let Some(net) = r.net else { continue };
        for n in &settings.cluster_nets {
            if vc_net::model::overlaps(n.cidr, net.subnet) {
                return Err(format!(
                    "{file}: cluster network {} ({}) overlaps the subnet {} of VC {name}",
                    n.name, n.cidr, net.subnet
                ));
            }
        }
    }
    Ok(())
}

/// The input of the VC networks from a snapshot: the cluster's facts of
/// `/vlx/net` and every VC that has a network, its VMs in index order on
/// the blades the placement names. `None` when no network is set up.
pub fn net_input(snap: &Snapshot) -> Option<NetInput> {
    let n = snap.net.as_ref()?;
    let vcs = snap
        .vcs
        .values()
        .filter_map(|r| {
            let net = r.net?;
            Some(VcInput {
                name: r.spec.name.to_string(),
                subnet: net.subnet,
                outside: net.outside,
                vms: r
                    .vms
                    .iter()
                    .map(|v| VmInput {
                        name: v.vm.name(),
                        mac: v.mac,
                        blade: v.blade.to_string(),
                    })
                    .collect(),
            })
        })
        .collect();
    Some(NetInput {
        domain: n.domain.clone(),
        cluster_nets: n.cluster_nets.clone(),
        storage: n.storage,
        shared_dir: n.shared_dir.clone(),
        upstream_dns: n.upstream_dns.clone(),
        blades: n.blades.clone(),
        vcs,
    })
}

/// What `create` asks of the network: a subnet (else one from the pool)
/// and whether the VMs may reach the outside.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetRequest {
    pub subnet: Option<Ipv4Net>,
    pub outside: bool,
}

/// What a VM is doing, as the agent of its blade reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmStatus {
    pub blade: NodeName,
    /// `starting`, `running`, `stopped`, `saving`, `saved`, `lost` or `failed`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One VC as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VcRecord {
    pub spec: VcSpec,
    pub desired: Desired,
    #[serde(skip)]
    pub state_rev: i64,
    pub vms: Vec<VmRecord>,
    pub status: BTreeMap<VmIndex, VmStatus>,
    /// Its network; none for a VC made where no network is set up
    /// (no `/vlx/net` key and no subnet given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net: Option<VcNetRecord>,
}

impl VcRecord {
    /// Whether any VM of it runs or should run.
    pub fn is_running(&self) -> bool {
        self.desired == Desired::Running
            || self
                .status
                .values()
                .any(|s| matches!(s.state.as_str(), "running" | "starting" | "saving"))
    }
}

/// Everything under `/vlx/` at one revision.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub revision: i64,
    /// Registered blades in name order (the order placement sees).
    pub blades: Vec<Blade>,
    pub guests: BTreeMap<String, GuestRecord>,
    pub vcids: BTreeMap<String, String>,
    pub vcs: BTreeMap<VcName, VcRecord>,
    pub net: Option<NetSettings>,
}

fn json<T: for<'de> Deserialize<'de>>(kv: &Kv) -> anyhow::Result<T> {
    serde_json::from_slice(&kv.value).with_context(|| format!("etcd key {}", kv.key))
}

impl Snapshot {
    pub fn read(etcd: &Etcd) -> anyhow::Result<Snapshot> {
        let (kvs, rev) = etcd.list(ROOT)?;
        Snapshot::from_kvs(&kvs, rev)
    }

    /// Builds the snapshot from the keys; a key that does not parse is an
    /// error naming it (the store is written only by vlx).
    pub fn from_kvs(kvs: &[Kv], revision: i64) -> anyhow::Result<Snapshot> {
        let mut s = Snapshot {
            revision,
            ..Snapshot::default()
        };
        let mut specs: BTreeMap<VcName, VcSpec> = BTreeMap::new();
        let mut states: BTreeMap<VcName, (Desired, i64)> = BTreeMap::new();
        let mut vms: BTreeMap<VcName, Vec<VmRecord>> = BTreeMap::new();
        let mut status: BTreeMap<VcName, BTreeMap<VmIndex, VmStatus>> = BTreeMap::new();
        let mut nets: BTreeMap<VcName, VcNetRecord> = BTreeMap::new();
        let vc_of = |rest: &str, kv: &Kv| -> anyhow::Result<VcName> {
            rest.parse()
                .with_context(|| format!("etcd key {}: bad VC name", kv.key))
        };
        for kv in kvs {
            if kv.key == NET {
                s.net = Some(json(kv)?);
            } else if let Some(name) = kv.key.strip_prefix(BLADES) {
                let name: NodeName = name
                    .parse()
                    .with_context(|| format!("etcd key {}", kv.key))?;
                let r: BladeRecord = json(kv)?;
                s.blades.push(Blade {
                    name,
                    cores: r.cores,
                    memory: r.memory,
                });
            } else if let Some(g) = kv.key.strip_prefix(GUESTS) {
                s.guests.insert(g.to_owned(), json(kv)?);
            } else if let Some(id) = kv.key.strip_prefix(VCIDS) {
                let name = String::from_utf8_lossy(&kv.value).into_owned();
                s.vcids.insert(id.to_owned(), name);
            } else if let Some(rest) = kv.key.strip_prefix(VCS) {
                let (vc, what) = rest
                    .split_once('/')
                    .ok_or_else(|| anyhow!("etcd key {} is not a VC key", kv.key))?;
                let vc = vc_of(vc, kv)?;
                match what {
                    "spec" => {
                        specs.insert(vc, json(kv)?);
                    }
                    "state" => {
                        let st: StateRecord = json(kv)?;
                        states.insert(vc, (st.desired, kv.mod_revision));
                    }
                    "vms" => {
                        vms.insert(vc, json(kv)?);
                    }
                    "net" => {
                        nets.insert(vc, json(kv)?);
                    }
                    _ => return Err(anyhow!("etcd key {} is not a VC key", kv.key)),
                }
            } else if let Some(rest) = kv.key.strip_prefix(STATUS) {
                let (vc, vm) = rest
                    .split_once('/')
                    .ok_or_else(|| anyhow!("etcd key {} is not a status key", kv.key))?;
                let vm: VmIndex = vm
                    .parse()
                    .map_err(|e: String| anyhow!("etcd key {}: {e}", kv.key))?;
                status
                    .entry(vc_of(vc, kv)?)
                    .or_default()
                    .insert(vm, json(kv)?);
            }
        }
        for (name, spec) in specs {
            let (desired, state_rev) = states
                .get(&name)
                .copied()
                .ok_or_else(|| anyhow!("VC {name} has a spec but no state key"))?;
            let mut v = vms.remove(&name).unwrap_or_default();
            v.sort_by_key(|r| r.vm);
            let st = status.remove(&name).unwrap_or_default();
            let net = nets.remove(&name);
            s.vcs.insert(
                name,
                VcRecord {
                    spec,
                    desired,
                    state_rev,
                    vms: v,
                    status: st,
                    net,
                },
            );
        }
        Ok(s)
    }

    /// Free capacity of the registered blades, without the VMs of `except`.
    pub fn free(&self, except: Option<&VcName>) -> Vec<Blade> {
        let used = self
            .vcs
            .values()
            .filter(|r| Some(&r.spec.name) != except)
            .flat_map(|r| {
                r.vms
                    .iter()
                    .map(move |vm| (&vm.blade, r.spec.vcpus, r.spec.memory))
            });
        free_capacity(&self.blades, used)
    }

    pub fn vc(&self, name: &VcName) -> Result<&VcRecord, Failure> {
        self.vcs
            .get(name)
            .ok_or_else(|| Failure::BadInput(anyhow!("there is no VC named {name}")))
    }
}

/// One transaction: the conditions it was planned under and its writes.
#[derive(Debug, Clone)]
pub struct Change {
    pub compare: Vec<Compare>,
    pub ops: Vec<Op>,
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing these plain records cannot fail (no maps with non-string
    // keys, no custom serializers that error).
    serde_json::to_vec(v).unwrap_or_default()
}

fn placement_ops(spec: &VcSpec, vms: &[VmRecord]) -> Vec<Op> {
    vec![Op::put(vms_key(&spec.name), to_json(&vms))]
}

/// Places `spec` on the free blades of `snap`, or refuses it.
fn placed(snap: &Snapshot, spec: &VcSpec) -> Result<Vec<VmRecord>, Failure> {
    let free = snap.free(Some(&spec.name));
    if free.is_empty() {
        return Err(Failure::Refused(anyhow!(
            "no blade is registered: start vlx-vcd on the blades first"
        )));
    }
    let p = place(spec, &free).map_err(|r| Failure::Refused(r.into()))?;
    Ok(p.vms
        .into_iter()
        .map(|v| VmRecord {
            vm: v.vm,
            blade: v.blade,
            mac: v.mac,
        })
        .collect())
}

/// Conditions every placement-changing transaction carries: no VC and no
/// blade changed since the snapshot (so capacity seen is capacity left).
fn capacity_unchanged(snap: &Snapshot) -> Vec<Compare> {
    vec![
        Compare::PrefixUnchangedSince(VCS.into(), snap.revision),
        Compare::PrefixUnchangedSince(BLADES.into(), snap.revision),
    ]
}

/// The networks a VC subnet must not overlap: the cluster's own, and the
/// storage address.
fn cluster_nets(snap: &Snapshot) -> Vec<NamedNet> {
    let Some(n) = &snap.net else {
        return Vec::new();
    };
    let mut nets = n.cluster_nets.clone();
    if let Some(cidr) = Ipv4Net::new(n.storage, 32) {
        nets.push(NamedNet {
            name: "storage".into(),
            cidr,
        });
    }
    nets
}

/// A new VC's network: the subnet asked for, checked against the cluster's
/// networks and every VC's; else the first free block of the pool; else
/// (no pool and none asked for) no network. Bad input (exit 2) names the
/// subnet and what it overlaps, an exhausted pool, or a subnet too small.
pub fn choose_net(
    snap: &Snapshot,
    spec: &VcSpec,
    req: &NetRequest,
) -> Result<Option<VcNetRecord>, Failure> {
    let bad = |e: vc_net::NetError| Failure::BadInput(anyhow!("{e}"));
    let nets = cluster_nets(snap);
    let taken: Vec<(String, Ipv4Net)> = snap
        .vcs
        .iter()
        .filter_map(|(n, r)| r.net.map(|net| (n.to_string(), net.subnet)))
        .collect();
    let subnet = match (req.subnet, snap.net.as_ref().and_then(|n| n.pool)) {
        (Some(s), _) => {
            vc_net::model::check_subnet(spec.name.as_str(), s, &nets, &taken).map_err(bad)?;
            s
        }
        (None, Some(pool)) => {
            let subnets: Vec<Ipv4Net> = taken.iter().map(|(_, s)| *s).collect();
            pool.allocate(&nets, &subnets).map_err(bad)?
        }
        (None, None) if req.outside => {
            return Err(Failure::BadInput(anyhow!(
                "VC {}: outside access needs a network: give --subnet (no VC subnet pool is set in {NET})",
                spec.name
            )));
        }
        (None, None) => return Ok(None),
    };
    let room = vc_net::model::vm_capacity(subnet);
    if u64::from(spec.vms) > room {
        return Err(bad(vc_net::NetError::TooManyVms {
            vc: spec.name.to_string(),
            subnet,
            asked: u64::from(spec.vms),
            holds: room,
        }));
    }
    Ok(Some(VcNetRecord {
        subnet,
        outside: req.outside,
    }))
}

/// Creating a VC: the whole VC placed and running, or nothing; with no
/// network asked for (a subnet from the pool, if one is set).
pub fn plan_create(snap: &Snapshot, spec: &VcSpec) -> Result<(Change, Vec<VmRecord>), Failure> {
    plan_create_net(snap, spec, &NetRequest::default()).map(|(c, vms, _)| (c, vms))
}

/// Creating a VC with its network: the placement, the state and the subnet
/// in one transaction, so the subnet is chosen once and never moves.
pub fn plan_create_net(
    snap: &Snapshot,
    spec: &VcSpec,
    req: &NetRequest,
) -> Result<(Change, Vec<VmRecord>, Option<VcNetRecord>), Failure> {
    if snap.vcs.contains_key(&spec.name) {
        return Err(Failure::BadInput(anyhow!(
            "a VC named {} exists already",
            spec.name
        )));
    }
    if !snap.guests.contains_key(&spec.guest) {
        let known: Vec<&str> = snap.guests.keys().map(String::as_str).collect();
        return Err(Failure::BadInput(anyhow!(
            "unknown guest `{}` (imported guests: {})",
            spec.guest,
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )));
    }
    if let Some(other) = snap.vcids.get(&spec.id.to_string()) {
        return Err(Failure::Refused(anyhow!(
            "VC id {} of {} is taken by VC {other}: set another `id` in the profile",
            spec.id,
            spec.name
        )));
    }
    let net = choose_net(snap, spec, req)?;
    let vms = placed(snap, spec)?;
    let mut compare = capacity_unchanged(snap);
    compare.push(Compare::Absent(spec_key(&spec.name)));
    compare.push(Compare::Absent(vcid_key(spec)));
    // The pool and the cluster's networks as they were read.
    compare.push(Compare::PrefixUnchangedSince(NET.into(), snap.revision));
    let mut ops = vec![
        Op::put(spec_key(&spec.name), to_json(spec)),
        Op::put(
            state_key(&spec.name),
            to_json(&StateRecord {
                desired: Desired::Running,
            }),
        ),
        Op::put(vcid_key(spec), spec.name.as_str()),
    ];
    ops.extend(placement_ops(spec, &vms));
    if let Some(n) = &net {
        ops.push(Op::put(net_key(&spec.name), to_json(n)));
    }
    Ok((Change { compare, ops }, vms, net))
}

/// What `start`, `stop` and `save` ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Save,
}

/// Changing what a VC should do. `None`: it does so already.
pub fn plan_action(
    snap: &Snapshot,
    name: &VcName,
    action: Action,
) -> Result<Option<Change>, Failure> {
    let r = snap.vc(name)?;
    let to = match (action, r.desired) {
        (Action::Start, Desired::Running)
        | (Action::Stop, Desired::Stopped)
        | (Action::Save, Desired::Saved) => return Ok(None),
        (Action::Start | Action::Stop, Desired::Saved) => {
            return Err(Failure::Refused(anyhow!(
                "VC {name} is saved: `vlx-vc restore {name}` resumes it, `destroy` drops it"
            )));
        }
        (Action::Save, Desired::Stopped) => {
            return Err(Failure::Refused(anyhow!(
                "VC {name} is stopped: there is nothing to save"
            )));
        }
        (Action::Start, Desired::Stopped) => Desired::Running,
        (Action::Stop, Desired::Running) => Desired::Stopped,
        (Action::Save, Desired::Running) => Desired::Saved,
    };
    Ok(Some(Change {
        compare: vec![Compare::ModIs(state_key(name), r.state_rev)],
        ops: vec![Op::put(
            state_key(name),
            to_json(&StateRecord { desired: to }),
        )],
    }))
}

/// Resuming a saved VC, placed again by `placement`/`mode` when given (the
/// mapping may change only while the VC is saved).
pub fn plan_restore(
    snap: &Snapshot,
    name: &VcName,
    placement: Option<Policy>,
    mode: Option<Fit>,
) -> Result<(Change, Vec<VmRecord>), Failure> {
    let r = snap.vc(name)?;
    if r.desired != Desired::Saved {
        return Err(Failure::Refused(anyhow!(
            "VC {name} is {}, not saved: only a saved VC can be restored",
            r.desired.as_str()
        )));
    }
    let mut spec = r.spec.clone();
    spec.placement = placement.unwrap_or(spec.placement);
    spec.mode = mode.unwrap_or(spec.mode);
    let vms = placed(snap, &spec)?;
    let mut compare = capacity_unchanged(snap);
    compare.push(Compare::ModIs(state_key(name), r.state_rev));
    let mut ops = vec![
        Op::put(spec_key(name), to_json(&spec)),
        Op::put(
            state_key(name),
            to_json(&StateRecord {
                desired: Desired::Running,
            }),
        ),
    ];
    ops.extend(placement_ops(&spec, &vms));
    Ok((Change { compare, ops }, vms))
}

/// Dropping a VC: every key of it. A running VC only with `force`.
pub fn plan_destroy(snap: &Snapshot, name: &VcName, force: bool) -> Result<Change, Failure> {
    let r = snap.vc(name)?;
    if r.is_running() && !force {
        return Err(Failure::Refused(anyhow!(
            "VC {name} is running: stop it first, or destroy it with --force"
        )));
    }
    Ok(Change {
        compare: vec![Compare::ModIs(state_key(name), r.state_rev)],
        ops: vec![
            Op::DeletePrefix(vc_prefix(name)),
            Op::DeletePrefix(status_prefix(name)),
            Op::Delete(vcid_key(&r.spec)),
        ],
    })
}

/// How often a change planned on a snapshot is planned again when another
/// blade changed the store in between.
const ATTEMPTS: u32 = 8;

/// Reads a snapshot, plans with `f`, and runs the transaction; plans again
/// on a fresh snapshot when the store changed meanwhile.
pub fn apply<T>(
    etcd: &Etcd,
    mut f: impl FnMut(&Snapshot) -> Result<(Option<Change>, T), Failure>,
) -> Result<T, Failure> {
    for _ in 0..ATTEMPTS {
        let snap = Snapshot::read(etcd)?;
        let (change, out) = f(&snap)?;
        let Some(change) = change else {
            return Ok(out);
        };
        if etcd.txn(&change.compare, &change.ops)? {
            return Ok(out);
        }
    }
    Err(Failure::Failed(anyhow!(
        "the VC state kept changing under this command ({ATTEMPTS} attempts); try again"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str) -> Kv {
        Kv {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            create_revision: 1,
            mod_revision: 1,
            lease: 0,
        }
    }

    const NET_SETTINGS: &str = r#"{"domain":"cluster.test","cluster_nets":[{"name":"network.cidr","cidr":"10.0.0.0/16"}],"storage":"10.0.0.5","shared_dir":"/srv/shared","blades":[{"name":"blade01","addr":"10.0.1.1"},{"name":"blade02","addr":"10.0.1.2"}]}"#;

    /// A VC `demo` of three VMs on the given blades, with a network when
    /// `subnet` is given.
    fn snap(blades: [&str; 3], subnet: Option<&str>) -> Snapshot {
        let spec = r#"{"name":"demo","id":1,"guest":"tiny","vms":3,"vcpus":1,"memory":134217728,"placement":"block","mode":"strict","restart":"manual"}"#;
        let vms: Vec<String> = blades
            .iter()
            .enumerate()
            .map(|(i, b)| {
                format!(
                    r#"{{"vm":{},"blade":"{b}","mac":"06:00:00:01:00:0{}"}}"#,
                    i + 1,
                    i + 1
                )
            })
            .collect();
        let mut kvs = vec![
            kv(NET, NET_SETTINGS),
            kv("/vlx/vc/demo/spec", spec),
            kv("/vlx/vc/demo/state", r#"{"desired":"running"}"#),
            kv("/vlx/vc/demo/vms", &format!("[{}]", vms.join(","))),
        ];
        if let Some(s) = subnet {
            kvs.push(kv(
                "/vlx/vc/demo/net",
                &format!(r#"{{"subnet":"{s}","outside":true}}"#),
            ));
        }
        Snapshot::from_kvs(&kvs, 7).expect("snapshot")
    }

    #[test]
    fn net_input_gives_the_addresses_show_prints_and_routes_follow_a_remap() {
        let s = snap(["blade01", "blade01", "blade02"], Some("10.200.0.0/24"));
        let input = net_input(&s).expect("a network is set up");
        let plan = vc_net::NetPlan::new(&input).expect("a valid plan");
        let rec = s.vcs.values().next().and_then(|r| r.net).expect("net");
        for (i, vm) in plan.vcs[0].vms.iter().enumerate() {
            let index = VmIndex(u32::try_from(i + 1).expect("index"));
            assert_eq!(vm.name, index.name());
            assert_eq!(Some(vm.addr), rec.addr(index), "{}", vm.name);
        }
        assert!(plan.vcs[0].outside);
        let b1 = plan.blade("blade01").expect("blade01");
        assert_eq!(b1.local.len(), 2);
        assert_eq!(b1.routes.len(), 1);
        assert_eq!(b1.routes[0].dest.to_string(), "10.200.0.4");
        assert_eq!(b1.routes[0].via.to_string(), "10.0.1.2");

        // The same VC remapped: vm1 moves to blade02, its address stays.
        let moved = snap(["blade02", "blade01", "blade02"], Some("10.200.0.0/24"));
        let plan = vc_net::NetPlan::new(&net_input(&moved).expect("net")).expect("plan");
        let b1 = plan.blade("blade01").expect("blade01");
        let dests: Vec<String> = b1.routes.iter().map(|r| r.dest.to_string()).collect();
        assert_eq!(dests, ["10.200.0.2", "10.200.0.4"]);
    }

    #[test]
    fn a_vc_without_a_network_is_left_out_and_no_settings_means_no_input() {
        let s = snap(["blade01", "blade01", "blade02"], None);
        assert!(net_input(&s).expect("settings").vcs.is_empty());
        let mut bare = s.clone();
        bare.net = None;
        assert!(net_input(&bare).is_none());
    }

    #[test]
    fn a_vm_on_a_blade_without_an_address_makes_the_plan_name_it() {
        let s = snap(["blade01", "blade09", "blade02"], Some("10.200.0.0/24"));
        let err = vc_net::NetPlan::new(&net_input(&s).expect("net")).expect_err("blade09");
        assert_eq!(
            err.to_string(),
            "VM demo/vm2 runs on blade `blade09`, which is not in the blade list"
        );
    }
}
