//! The commands that work on the cluster's etcd.

use std::fmt::Write as _;

use anyhow::anyhow;
use cluster::Bytes;
use serde::Serialize;
use serde_json::json;

use super::{
    ConsoleArgs, CreateArgs, DestroyArgs, Failure, ImportArgs, NameArgs, RestoreArgs, SetNetArgs,
    read_vc, read_vc_net,
};
use crate::cli::Common;
use crate::etcd::{self, Compare, Etcd, Op};
use crate::model::{Fit, MAX_VC_ID, MAX_VMS, VcId, VcName, VcSpec, VmIndex};
use crate::state::{
    Action, Change, NET, NetRequest, NetSettings, Snapshot, VcNetRecord, VcRecord, VmRecord, apply,
    plan_action, plan_create_net, plan_destroy, plan_restore,
};

fn connect(c: &Common) -> Result<Etcd, Failure> {
    let eps = etcd::endpoints(c.etcd.as_deref()).map_err(Failure::BadInput)?;
    Etcd::new(&eps).map_err(Failure::BadInput)
}

fn name(s: &str) -> Result<VcName, Failure> {
    s.parse().map_err(|e| Failure::BadInput(anyhow!("{e}")))
}

fn bad(msg: String) -> Failure {
    Failure::BadInput(anyhow!(msg))
}

/// The spec from `--vc` and flags over it; flags are checked against the
/// same ranges as the profile's keys.
fn spec_of(a: &CreateArgs) -> Result<VcSpec, Failure> {
    let base = match &a.vc {
        Some(p) => Some(read_vc(p)?),
        None => None,
    };
    let need = |what: &str| bad(format!("--{what} is needed when no --vc profile is given"));
    let name: VcName = match (&a.name, &base) {
        (Some(n), _) => name(n)?,
        (None, Some(b)) => b.name.clone(),
        (None, None) => return Err(need("name")),
    };
    let id = match (a.id, &base) {
        (Some(id), _) => {
            VcId::new(id).ok_or_else(|| bad(format!("--id {id} is not in 1..={MAX_VC_ID}")))?
        }
        // A profile's derived id follows a name given by flag.
        (None, Some(b)) if b.id != VcId::from_name(&b.name) => b.id,
        _ => VcId::from_name(&name),
    };
    let guest = match (&a.guest, &base) {
        (Some(g), _) => {
            cluster::name::check_label(g, 63).map_err(|e| bad(format!("--guest `{g}`: {e}")))?;
            g.clone()
        }
        (None, Some(b)) => b.guest.clone(),
        (None, None) => return Err(need("guest")),
    };
    let vms = match (a.vms, &base) {
        (Some(n), _) if (1..=MAX_VMS).contains(&n) => n,
        (Some(n), _) => return Err(bad(format!("--vms {n} is not in 1..={MAX_VMS}"))),
        (None, Some(b)) => b.vms,
        (None, None) => return Err(need("vms")),
    };
    let vcpus = match (a.vcpus, &base) {
        (Some(n), _) if (1..=1024).contains(&n) => n,
        (Some(n), _) => return Err(bad(format!("--vcpus {n} is not in 1..=1024"))),
        (None, Some(b)) => b.vcpus,
        (None, None) => 1,
    };
    let memory = match (&a.memory, &base) {
        (Some(m), _) => {
            let m: Bytes = m.parse().map_err(|e| bad(format!("--memory: {e}")))?;
            if m < Bytes::mib(16) || m > Bytes(1 << 40) {
                return Err(bad(format!("--memory {m} is not in 16MiB..=1TiB")));
            }
            m
        }
        (None, Some(b)) => b.memory,
        (None, None) => return Err(need("memory")),
    };
    let d = base.as_ref();
    Ok(VcSpec {
        name,
        id,
        guest,
        vms,
        vcpus,
        memory,
        placement: a
            .placement
            .or(d.map(|b| b.placement))
            .unwrap_or(crate::Policy::Block),
        mode: mode(a.strict, a.free)
            .or(d.map(|b| b.mode))
            .unwrap_or(Fit::Strict),
        restart: a
            .restart
            .or(d.map(|b| b.restart))
            .unwrap_or(crate::Restart::Manual),
    })
}

fn mode(strict: bool, free: bool) -> Option<Fit> {
    match (strict, free) {
        (true, _) => Some(Fit::Strict),
        (_, true) => Some(Fit::Free),
        _ => None,
    }
}

fn print<T: Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) -> String {
    if json {
        let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
        s.push('\n');
        s
    } else {
        text()
    }
}

/// The network asked for: the profile's keys, flags over them.
fn net_of(a: &CreateArgs) -> Result<NetRequest, Failure> {
    let base = match &a.vc {
        Some(p) => read_vc_net(p)?,
        None => NetRequest::default(),
    };
    Ok(NetRequest {
        subnet: a.subnet.or(base.subnet),
        outside: a.outside || base.outside,
    })
}

fn addr_of(net: Option<&VcNetRecord>, vm: VmIndex) -> Option<String> {
    net.and_then(|n| n.addr(vm)).map(|a| a.to_string())
}

fn vm_table(vms: &[VmRecord], rec: Option<&VcRecord>, net: Option<&VcNetRecord>) -> String {
    let mut s = format!(
        "{:<8} {:<16} {:<18} {:<10} ADDRESS\n",
        "VM", "BLADE", "MAC", "STATE"
    );
    for v in vms {
        let state = rec
            .and_then(|r| r.status.get(&v.vm))
            .map_or("-", |st| st.state.as_str());
        let _ = writeln!(
            s,
            "{:<8} {:<16} {:<18} {:<10} {}",
            v.vm.to_string(),
            v.blade.to_string(),
            v.mac.to_string(),
            state,
            addr_of(net, v.vm).as_deref().unwrap_or("-")
        );
    }
    s
}

pub(super) fn create(a: &CreateArgs) -> Result<String, Failure> {
    let spec = spec_of(a)?;
    let req = net_of(a)?;
    let etcd = connect(&a.common)?;
    let (vms, net) = apply(&etcd, |snap| {
        let (change, vms, net) = plan_create_net(snap, &spec, &req)?;
        Ok((Some(change), (vms, net)))
    })?;
    Ok(print(
        a.common.json,
        &json!({ "created": spec.name, "id": spec.id, "net": net, "vms": vms }),
        || {
            let subnet = net.map_or_else(|| "no network".to_owned(), |n| n.subnet.to_string());
            format!(
                "created VC {} (id {}): {} VMs, {}/{}, {subnet}\n\n{}",
                spec.name,
                spec.id,
                spec.vms,
                spec.placement,
                spec.mode,
                vm_table(&vms, None, net.as_ref())
            )
        },
    ))
}

/// One line of `list`.
#[derive(Debug, Serialize)]
struct ListEntry<'a> {
    name: &'a VcName,
    id: VcId,
    guest: &'a str,
    vms: u32,
    desired: &'static str,
    running: usize,
    placement: crate::Policy,
    mode: Fit,
}

pub(super) fn list(c: &Common) -> Result<String, Failure> {
    let etcd = connect(c)?;
    let snap = Snapshot::read(&etcd)?;
    let entries: Vec<ListEntry<'_>> = snap
        .vcs
        .values()
        .map(|r| ListEntry {
            name: &r.spec.name,
            id: r.spec.id,
            guest: &r.spec.guest,
            vms: r.spec.vms,
            desired: r.desired.as_str(),
            running: r.status.values().filter(|s| s.state == "running").count(),
            placement: r.spec.placement,
            mode: r.spec.mode,
        })
        .collect();
    Ok(print(c.json, &entries, || {
        let mut s = format!(
            "{:<20} {:<6} {:<12} {:>5} {:>8} {:<8} POLICY\n",
            "VC", "ID", "GUEST", "VMS", "RUNNING", "STATE"
        );
        for e in &entries {
            let _ = writeln!(
                s,
                "{:<20} {:<6} {:<12} {:>5} {:>8} {:<8} {}/{}",
                e.name.to_string(),
                e.id.to_string(),
                e.guest,
                e.vms,
                e.running,
                e.desired,
                e.placement,
                e.mode
            );
        }
        s
    }))
}

/// `show --json`: one VM.
#[derive(Debug, Serialize)]
struct VmView<'a> {
    vm: crate::VmIndex,
    name: String,
    blade: &'a cluster::NodeName,
    mac: cluster::MacAddr,
    state: Option<&'a str>,
    /// Why the VM is in its state, as its blade reported it (a failure's
    /// reason); absent when there is nothing to say.
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    /// Filled by the VC network (vc-net) once it assigns addresses.
    address: Option<String>,
}

pub(super) fn show(a: &NameArgs) -> Result<String, Failure> {
    let vc = name(&a.name)?;
    let etcd = connect(&a.common)?;
    let snap = Snapshot::read(&etcd)?;
    let r = snap.vc(&vc)?;
    let vms: Vec<VmView<'_>> = r
        .vms
        .iter()
        .map(|v| VmView {
            vm: v.vm,
            name: v.vm.name(),
            blade: &v.blade,
            mac: v.mac,
            state: r.status.get(&v.vm).map(|s| s.state.as_str()),
            detail: r.status.get(&v.vm).and_then(|s| s.detail.as_deref()),
            address: addr_of(r.net.as_ref(), v.vm),
        })
        .collect();
    let view = json!({ "vc": r.spec, "desired": r.desired, "net": r.net, "vms": vms });
    Ok(print(a.common.json, &view, || {
        let sp = &r.spec;
        format!(
            "VC {} (id {}): {} VMs of {} vCPU and {}, guest {}, {}/{}; {}; {}\n\n{}",
            sp.name,
            sp.id,
            sp.vms,
            sp.vcpus,
            sp.memory,
            sp.guest,
            sp.placement,
            sp.mode,
            r.desired.as_str(),
            r.net.map_or_else(
                || "no network".to_owned(),
                |n| format!(
                    "subnet {}{}",
                    n.subnet,
                    if n.outside { ", outside allowed" } else { "" }
                )
            ),
            vm_table(&r.vms, Some(r), r.net.as_ref())
        )
    }))
}

pub(super) fn action(a: &NameArgs, what: Action) -> Result<String, Failure> {
    let vc = name(&a.name)?;
    let etcd = connect(&a.common)?;
    let changed = apply(&etcd, |snap| {
        let c = plan_action(snap, &vc, what)?;
        let changed = c.is_some();
        Ok((c, changed))
    })?;
    let verb = match what {
        Action::Start => "started",
        Action::Stop => "stopped",
        Action::Save => "saved",
    };
    Ok(print(
        a.common.json,
        &json!({ "vc": vc, "action": verb, "changed": changed }),
        || {
            if changed {
                format!("VC {vc}: {verb}\n")
            } else {
                format!("VC {vc}: {verb} already\n")
            }
        },
    ))
}

pub(super) fn restore(a: &RestoreArgs) -> Result<String, Failure> {
    let vc = name(&a.name)?;
    let etcd = connect(&a.common)?;
    let m = mode(a.strict, a.free);
    let (vms, net) = apply(&etcd, |snap| {
        let (c, vms) = plan_restore(snap, &vc, a.placement, m)?;
        // The subnet was chosen at creation and stays.
        let net = snap.vcs.get(&vc).and_then(|r| r.net);
        Ok((Some(c), (vms, net)))
    })?;
    Ok(print(
        a.common.json,
        &json!({ "restored": vc, "vms": vms }),
        || format!("restored VC {vc}\n\n{}", vm_table(&vms, None, net.as_ref())),
    ))
}

pub(super) fn destroy(a: &DestroyArgs) -> Result<String, Failure> {
    let vc = name(&a.name)?;
    let etcd = connect(&a.common)?;
    apply(&etcd, |snap| {
        Ok((Some(plan_destroy(snap, &vc, a.force)?), ()))
    })?;
    Ok(print(a.common.json, &json!({ "destroyed": vc }), || {
        format!("destroyed VC {vc}\n")
    }))
}

pub(super) fn import_guest(a: &ImportArgs) -> Result<String, Failure> {
    cluster::name::check_label(&a.name, 63)
        .map_err(|e| bad(format!("`{}` is not a guest name: {e}", a.name)))?;
    for f in [&a.tarball, &a.kernel, &a.initrd] {
        if !f.is_file() {
            return Err(bad(format!("{} is not a file", f.display())));
        }
    }
    let etcd = connect(&a.common)?;
    let key = crate::state::guest_key(&a.name);
    if etcd.get(&key)?.is_some() {
        return Err(Failure::Refused(anyhow!(
            "guest {} is imported already",
            a.name
        )));
    }
    crate::vm::import_guest(&a.shared, &a.name, &a.tarball, &a.kernel, &a.initrd, a.size)?;
    let rec = crate::state::GuestRecord {
        base: format!("guests/{}/base.raw", a.name),
    };
    let value = serde_json::to_vec(&rec).map_err(|e| Failure::Failed(e.into()))?;
    if !etcd.txn(&[Compare::Absent(key.clone())], &[Op::put(key, value)])? {
        return Err(Failure::Refused(anyhow!(
            "guest {} was imported meanwhile by another blade",
            a.name
        )));
    }
    Ok(print(
        a.common.json,
        &json!({ "imported": a.name, "base": rec.base }),
        || format!("imported guest {} as {}\n", a.name, rec.base),
    ))
}

pub(super) fn console(a: &ConsoleArgs) -> Result<String, Failure> {
    let (vc, vm) =
        a.vm.split_once('/')
            .ok_or_else(|| bad(format!("`{}` is not VC/VM (e.g. demo/vm1)", a.vm)))?;
    let vc = name(vc)?;
    let vm: crate::VmIndex = vm.parse().map_err(bad)?;
    let etcd = connect(&a.common)?;
    let snap = Snapshot::read(&etcd)?;
    let r = snap.vc(&vc)?;
    let rec = r.vms.iter().find(|v| v.vm == vm).ok_or_else(|| {
        bad(format!(
            "VC {vc} has no {vm} (it has vm1 to vm{})",
            r.spec.vms
        ))
    })?;
    let host = crate::vm::Host {
        shared: a.shared.clone(),
        run: std::path::PathBuf::new(),
        accel: crate::vm::Accel::Tcg,
    };
    let log = host.console_log(&vc, vm);
    let text = match std::fs::read_to_string(&log) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(Failure::Failed(
                anyhow::Error::new(e).context(format!("reading {}", log.display())),
            ));
        }
    };
    Ok(print(
        a.common.json,
        &json!({ "vm": format!("{vc}/{vm}"), "blade": rec.blade, "console": text }),
        || text.clone(),
    ))
}

/// Records `/vlx/net`. Bad input (exit 2): a file that does not parse, a
/// pool that is not private or whose prefix does not fit, a cluster network
/// that overlaps the subnet of a VC that exists (named).
pub(super) fn set_net(a: &SetNetArgs) -> Result<String, Failure> {
    let file = a.file.display().to_string();
    let settings = NetSettings::read(&a.file).map_err(bad)?;
    let value = serde_json::to_vec(&settings).map_err(|e| Failure::Failed(e.into()))?;
    let etcd = connect(&a.common)?;
    apply(&etcd, |snap| {
        crate::state::check_settings(snap, &settings, &file).map_err(bad)?;
        let change = Change {
            compare: vec![Compare::PrefixUnchangedSince(
                crate::state::VCS.into(),
                snap.revision,
            )],
            ops: vec![Op::put(NET, value.clone())],
        };
        Ok((Some(change), ()))
    })?;
    Ok(print(a.common.json, &settings, || {
        format!(
            "recorded the VC network settings of {}{}\n",
            settings.domain,
            settings
                .pool
                .map(|p| format!(", VC subnets from {} (/{})", p.subnet_pool, p.prefix))
                .unwrap_or_default()
        )
    }))
}
