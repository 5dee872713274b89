//! Printed forms of a placement: a table for people and JSON for tools.
//! Both are functions of their inputs only, so the same inputs give the
//! same bytes.

use std::fmt::Write as _;

use cluster::Bytes;
use serde::Serialize;

use crate::model::{Blade, VcSpec};
use crate::place::{Placement, VmPlace};

/// What one blade carries after a placement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BladeUse {
    pub blade: String,
    pub vms: u32,
    pub vcpus: u64,
    pub cores: u32,
    pub memory_used: Bytes,
    pub memory: Bytes,
}

/// `vlx-vc plan --json`: the VC, its VMs and the load on every blade.
#[derive(Debug, Clone, Serialize)]
pub struct PlanView<'a> {
    pub vc: &'a VcSpec,
    pub vms: &'a [VmPlace],
    pub blades: Vec<BladeUse>,
}

impl<'a> PlanView<'a> {
    pub fn new(spec: &'a VcSpec, placement: &'a Placement, blades: &[Blade]) -> PlanView<'a> {
        let counts = placement.per_blade(blades);
        let blades = blades
            .iter()
            .zip(counts)
            .map(|(b, n)| BladeUse {
                blade: b.name.to_string(),
                vms: n,
                vcpus: u64::from(n) * u64::from(spec.vcpus),
                cores: b.cores,
                memory_used: Bytes(u64::from(n).saturating_mul(spec.memory.get())),
                memory: b.memory,
            })
            .collect();
        PlanView {
            vc: spec,
            vms: &placement.vms,
            blades,
        }
    }

    pub fn json(&self) -> String {
        let mut s =
            serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
        s.push('\n');
        s
    }

    pub fn text(&self) -> String {
        let v = self.vc;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "VC {} (id {}): {} VM{} of {} vCPU{} and {}, guest {}, {}/{}, restart {}",
            v.name,
            v.id,
            v.vms,
            if v.vms == 1 { "" } else { "s" },
            v.vcpus,
            if v.vcpus == 1 { "" } else { "s" },
            v.memory,
            v.guest,
            v.placement,
            v.mode,
            match v.restart {
                crate::Restart::Auto => "auto",
                crate::Restart::Manual => "manual",
            }
        );
        let _ = writeln!(s, "\n{:<8} {:<16} MAC", "VM", "BLADE");
        for vm in self.vms {
            let _ = writeln!(s, "{:<8} {:<16} {}", vm.name, vm.blade.to_string(), vm.mac);
        }
        let _ = writeln!(
            s,
            "\n{:<16} {:>4} {:>11} {:>21}",
            "BLADE", "VMS", "VCPUS/CORES", "MEMORY"
        );
        for b in &self.blades {
            let _ = writeln!(
                s,
                "{:<16} {:>4} {:>11} {:>21}",
                b.blade,
                b.vms,
                format!("{}/{}", b.vcpus, b.cores),
                format!("{}/{}", b.memory_used, b.memory)
            );
        }
        s
    }
}
