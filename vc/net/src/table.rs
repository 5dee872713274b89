//! The VC's table for templates: a role per VM from the VC profile's groups,
//! and per VM a context (its own name, address and role, every VM of the VC,
//! the frontend, the shared key, the shared directory) that overlay
//! templates (`*.hbs`, crate `templating`) are rendered with. Enough to start a
//! batch scheduler across the VC (`profiles/vcs/slurm.toml`).
//!
//! Only two keys of a VC profile are read here, `overlays` and `[[groups]]`;
//! the rest (name, guest, placement, sizes) is the VC core's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::NetError;
use crate::model::{NetPlan, VmNet, is_label};
use crate::render::{GUEST_SHARED_MOUNT, fqdn, vc_dir};

/// A group of VMs with one role, e.g. one `frontend` and three `compute`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// A DNS-label-like name: `frontend`, `compute`.
    pub role: String,
    /// How many VMs of the VC, in index order after the groups before it.
    pub vms: u32,
    /// Overlay folders (relative to the profile) rendered on this group's
    /// VMs, after the profile's `overlays`.
    #[serde(default)]
    pub overlays: Vec<String>,
}

/// The template part of a VC profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Templates {
    /// Overlay folders rendered on every VM.
    #[serde(default)]
    pub overlays: Vec<String>,
    #[serde(default)]
    pub groups: Vec<Group>,
}

impl Templates {
    /// Reads `overlays` and `[[groups]]` of a VC profile's text; other keys
    /// are the VC core's and ignored here.
    pub fn from_profile(file: &str, text: &str) -> Result<Templates, NetError> {
        let t: Templates = toml::from_str(text).map_err(|e| NetError::Profile {
            file: file.to_owned(),
            detail: e.to_string(),
        })?;
        for g in &t.groups {
            if !is_label(&g.role) {
                return Err(NetError::BadName {
                    what: "role",
                    name: format!("{file}: {}", g.role),
                });
            }
        }
        Ok(t)
    }

    /// The role of each VM in index order; a VC without groups has none.
    pub fn roles(&self) -> Vec<String> {
        self.groups
            .iter()
            .flat_map(|g| std::iter::repeat_n(g.role.clone(), g.vms as usize))
            .collect()
    }

    /// How many VMs the groups make.
    pub fn vm_count(&self) -> u64 {
        self.groups.iter().map(|g| u64::from(g.vms)).sum()
    }

    /// The overlay folders of a VM of `role`, resolved against the profile's
    /// folder: the profile's, then its group's.
    pub fn overlays_for(&self, profile_dir: &Path, role: Option<&str>) -> Vec<PathBuf> {
        let group = self
            .groups
            .iter()
            .filter(|g| Some(g.role.as_str()) == role)
            .flat_map(|g| g.overlays.iter());
        self.overlays
            .iter()
            .chain(group)
            .map(|o| profile_dir.join(o))
            .collect()
    }
}

fn vm_value(plan: &NetPlan, vc: &str, vm: &VmNet, role: Option<&str>) -> Value {
    json!({
        "name": vm.name,
        "fqdn": fqdn(plan, vc, &vm.name),
        "addr": vm.addr.to_string(),
        "mac": vm.mac.to_string(),
        "index": vm.index,
        "role": role,
    })
}

/// The context every template of VM `vm` (of VC `vc`) is rendered with:
///
/// - `vc`: `name`, `domain` (`VC.DOMAIN`), `subnet`, `prefix`, `gateway`,
///   `storage` (NFS server), `shared_dir` (the VC's export), `shared_mount`
///   (where VMs mount it);
/// - `vm`: this VM's `name`, `fqdn`, `addr`, `mac`, `index`, `role`;
/// - `vms`: every VM of the VC, the same fields, in index order;
/// - `roles`: the VMs of each role, e.g. `roles.compute`;
/// - `frontend`: the first VM of role `frontend`, when there is one;
/// - `key`: the VC's shared secret, as the VC state keeps it.
///
/// `roles` gives each VM's role in index order: as many as the VC has VMs,
/// or none.
pub fn context(
    plan: &NetPlan,
    vc: &str,
    vm: &str,
    roles: &[String],
    key: &str,
) -> Result<Value, NetError> {
    let v = plan
        .vcs
        .iter()
        .find(|v| v.name == vc)
        .ok_or_else(|| NetError::NoSuchVc(vc.to_owned()))?;
    if !roles.is_empty() && roles.len() != v.vms.len() {
        return Err(NetError::RoleCount {
            vc: vc.to_owned(),
            vms: v.vms.len(),
            roles: roles.len(),
        });
    }
    let role = |i: usize| roles.get(i).map(String::as_str);
    let me = v
        .vms
        .iter()
        .find(|m| m.name == vm)
        .ok_or_else(|| NetError::NoSuchVm(format!("{vc}/{vm}")))?;
    let vms: Vec<Value> = v
        .vms
        .iter()
        .map(|m| vm_value(plan, vc, m, role(m.index)))
        .collect();
    let mut by_role: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for m in &v.vms {
        if let Some(r) = role(m.index) {
            by_role
                .entry(r)
                .or_default()
                .push(vm_value(plan, vc, m, Some(r)));
        }
    }
    let mut ctx = json!({
        "vc": {
            "name": v.name,
            "domain": format!("{}.{}", v.name, plan.domain),
            "subnet": v.subnet.to_string(),
            "prefix": v.subnet.prefix(),
            "gateway": v.gateway.to_string(),
            "storage": plan.storage.to_string(),
            "shared_dir": vc_dir(plan, vc),
            "shared_mount": GUEST_SHARED_MOUNT,
        },
        "vm": vm_value(plan, vc, me, role(me.index)),
        "vms": vms,
        "roles": by_role,
        "key": key,
    });
    if let (Some(front), Some(obj)) = (
        v.vms.iter().find(|m| role(m.index) == Some("frontend")),
        ctx.as_object_mut(),
    ) {
        obj.insert(
            "frontend".into(),
            vm_value(plan, vc, front, Some("frontend")),
        );
    }
    Ok(ctx)
}

/// Why a VM's overlays could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Overlay(#[from] templating::OverlayError),
}

/// Renders the overlays of VM `vc/vm` (the profile's, then its role's) with
/// its [`context`]. A path of a later overlay replaces the same path of an
/// earlier one. Entries in path order.
pub fn render_vm(
    profile_dir: &Path,
    templates: &Templates,
    plan: &NetPlan,
    vc: &str,
    vm: &str,
    key: &str,
) -> Result<Vec<templating::Entry>, TemplateError> {
    let roles = templates.roles();
    let ctx = context(plan, vc, vm, &roles, key)?;
    let role = ctx["vm"]["role"].as_str().map(str::to_owned);
    let mut out: BTreeMap<PathBuf, templating::Entry> = BTreeMap::new();
    for dir in templates.overlays_for(profile_dir, role.as_deref()) {
        for e in templating::Overlay::load(&dir)?.render(&ctx)? {
            out.insert(e.path.clone(), e);
        }
    }
    Ok(out.into_values().collect())
}
