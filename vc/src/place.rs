//! Placement of a VC's VMs on blades: pure and deterministic.
//!
//! * **Block** "minimizes the spread of VMs on the physical nodes": each
//!   blade takes as many VMs as it allows before the next. Blades are taken
//!   in order of how many VMs of this VC they can hold, most first (ties in
//!   the order of the blade list), so a VC lands on the fewest blades.
//! * **Cyclic** "spreads the VMs across all the cluster's physical nodes":
//!   VM 1 on the first blade of the list, VM 2 on the second, …, wrapping
//!   around and skipping blades that are full.
//! * **Strict** counts one free core per vCPU and the VM's memory;
//!   **Free** counts memory only (vCPUs may overcommit cores).
//!
//! All or nothing: a VC is placed whole or refused with, for every blade,
//! the resource that kept it from taking one more VM.

use std::fmt;

use cluster::{Bytes, MacAddr, NodeName};
use serde::Serialize;

use crate::model::{Blade, Fit, Policy, VcId, VcName, VcSpec, VmIndex, vm_mac};

/// Where one VM runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VmPlace {
    pub vm: VmIndex,
    pub name: String,
    pub blade: NodeName,
    pub mac: MacAddr,
}

/// A whole VC's placement, VMs in index order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Placement {
    pub vc: VcName,
    pub id: VcId,
    pub placement: Policy,
    pub mode: Fit,
    pub vms: Vec<VmPlace>,
}

impl Placement {
    /// How many VMs each blade got, in the order of `blades`.
    pub fn per_blade(&self, blades: &[Blade]) -> Vec<u32> {
        blades
            .iter()
            .map(|b| {
                let n = self.vms.iter().filter(|v| v.blade == b.name).count();
                u32::try_from(n).unwrap_or(u32::MAX)
            })
            .collect()
    }
}

/// A resource a blade can run short of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    Cores,
    Memory,
}

/// Why one blade cannot take one more VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Short {
    pub blade: NodeName,
    pub resource: Resource,
    /// What is left of the resource once the VMs that fit are counted, in
    /// cores or bytes.
    pub free: u64,
    /// What one VM needs of it.
    pub need: u64,
}

impl fmt::Display for Short {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.resource {
            Resource::Cores => write!(
                f,
                "blade {} ran short of cores ({} free, a VM needs {})",
                self.blade, self.free, self.need
            ),
            Resource::Memory => write!(
                f,
                "blade {} ran short of memory ({} free, a VM needs {})",
                self.blade,
                Bytes(self.free),
                Bytes(self.need)
            ),
        }
    }
}

/// A VC that does not fit; nothing of it is placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct Refusal {
    pub vc: VcName,
    pub vms: u32,
    /// How many would have fit.
    pub fit: u32,
    /// For every blade, what ran short (in the order of the blade list).
    pub short: Vec<Short>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "VC {} does not fit: it has {} VMs and the blades hold {}",
            self.vc, self.vms, self.fit
        )?;
        if self.short.is_empty() {
            write!(f, " (no blades)")?;
        }
        for s in &self.short {
            write!(f, "; {s}")?;
        }
        Ok(())
    }
}

/// How many VMs of `spec` fit on `blade`, and the resource that stops one
/// more.
fn capacity(spec: &VcSpec, blade: &Blade) -> (u32, Short) {
    let mem_need = spec.memory.get().max(1);
    let by_mem = blade.memory.get() / mem_need;
    let by_cores = match spec.mode {
        Fit::Strict => u64::from(blade.cores) / u64::from(spec.vcpus.max(1)),
        Fit::Free => u64::MAX,
    };
    let n = by_mem.min(by_cores);
    let short = if by_cores < by_mem {
        Short {
            blade: blade.name.clone(),
            resource: Resource::Cores,
            free: u64::from(blade.cores) - by_cores * u64::from(spec.vcpus),
            need: u64::from(spec.vcpus),
        }
    } else {
        Short {
            blade: blade.name.clone(),
            resource: Resource::Memory,
            free: blade.memory.get() - by_mem * mem_need,
            need: mem_need,
        }
    };
    (u32::try_from(n).unwrap_or(u32::MAX), short)
}

/// Places every VM of `spec` on `blades` (their free capacity, in the order
/// of the blade list), or refuses the whole VC.
pub fn place(spec: &VcSpec, blades: &[Blade]) -> Result<Placement, Refusal> {
    let caps: Vec<(u32, Short)> = blades.iter().map(|b| capacity(spec, b)).collect();
    let total = caps
        .iter()
        .fold(0u64, |acc, (n, _)| acc.saturating_add(u64::from(*n)));
    if total < u64::from(spec.vms) {
        return Err(Refusal {
            vc: spec.name.clone(),
            vms: spec.vms,
            fit: u32::try_from(total).unwrap_or(u32::MAX),
            short: caps.into_iter().map(|(_, s)| s).collect(),
        });
    }
    let order: Vec<usize> = match spec.placement {
        Policy::Block => block_order(spec.vms, &caps),
        Policy::Cyclic => cyclic_order(spec.vms, &caps),
    };
    let vms = spec
        .indices()
        .zip(order)
        .map(|(vm, b)| VmPlace {
            vm,
            name: vm.name(),
            blade: blades[b].name.clone(),
            mac: vm_mac(spec.id, vm),
        })
        .collect();
    Ok(Placement {
        vc: spec.name.clone(),
        id: spec.id,
        placement: spec.placement,
        mode: spec.mode,
        vms,
    })
}

/// The blade of each VM in index order, Block: largest capacity first
/// (stable, so ties keep the list order), each filled before the next.
fn block_order(vms: u32, caps: &[(u32, Short)]) -> Vec<usize> {
    let mut by_size: Vec<usize> = (0..caps.len()).collect();
    by_size.sort_by_key(|&i| std::cmp::Reverse(caps[i].0));
    let mut out = Vec::with_capacity(vms as usize);
    for i in by_size {
        let room = vms as usize - out.len();
        out.extend(std::iter::repeat_n(i, (caps[i].0 as usize).min(room)));
        if out.len() == vms as usize {
            break;
        }
    }
    out
}

/// The blade of each VM in index order, Cyclic: one per blade per round, in
/// list order, skipping full blades. The caller has checked that all fit.
fn cyclic_order(vms: u32, caps: &[(u32, Short)]) -> Vec<usize> {
    let mut left: Vec<u32> = caps.iter().map(|(n, _)| *n).collect();
    let mut out = Vec::with_capacity(vms as usize);
    while out.len() < vms as usize {
        for (i, l) in left.iter_mut().enumerate() {
            if out.len() == vms as usize {
                break;
            }
            if *l > 0 {
                *l -= 1;
                out.push(i);
            }
        }
    }
    out
}

/// What is left of `blades` once `used` (blade name, vCPUs, memory) runs on
/// them. Cores never go below 0: a blade overcommitted by Free VCs has no
/// free core for a Strict one.
pub fn free_capacity<'a>(
    blades: &[Blade],
    used: impl IntoIterator<Item = (&'a NodeName, u32, Bytes)>,
) -> Vec<Blade> {
    let mut out = blades.to_vec();
    for (name, vcpus, memory) in used {
        if let Some(b) = out.iter_mut().find(|b| &b.name == name) {
            b.cores = b.cores.saturating_sub(vcpus);
            b.memory = Bytes(b.memory.get().saturating_sub(memory.get()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Restart;

    fn blade(name: &str, cores: u32, mem_mib: u64) -> Blade {
        Blade {
            name: name.parse().unwrap(),
            cores,
            memory: Bytes::mib(mem_mib),
        }
    }

    fn spec(vms: u32, placement: Policy, mode: Fit) -> VcSpec {
        let name: VcName = "t".parse().unwrap();
        VcSpec {
            id: VcId::from_name(&name),
            name,
            guest: "tiny".into(),
            vms,
            vcpus: 1,
            memory: Bytes::mib(128),
            placement,
            mode,
            restart: Restart::Manual,
        }
    }

    fn blades3() -> Vec<Blade> {
        vec![
            blade("b1", 2, 1024),
            blade("b2", 2, 1024),
            blade("b3", 2, 1024),
        ]
    }

    fn on(p: &Placement) -> Vec<&str> {
        p.vms.iter().map(|v| v.blade.as_str()).collect()
    }

    #[test]
    fn block_fills_a_blade_first() {
        let p = place(&spec(4, Policy::Block, Fit::Strict), &blades3()).unwrap();
        assert_eq!(on(&p), ["b1", "b1", "b2", "b2"]);
    }

    #[test]
    fn cyclic_goes_round() {
        let p = place(&spec(4, Policy::Cyclic, Fit::Strict), &blades3()).unwrap();
        assert_eq!(on(&p), ["b1", "b2", "b3", "b1"]);
    }

    #[test]
    fn block_prefers_the_largest_blade() {
        let b = vec![blade("b1", 1, 1024), blade("b2", 4, 1024)];
        let p = place(&spec(4, Policy::Block, Fit::Strict), &b).unwrap();
        assert_eq!(on(&p), ["b2", "b2", "b2", "b2"]);
    }

    #[test]
    fn free_ignores_cores_but_not_memory() {
        let b = vec![blade("b1", 1, 300)];
        let p = place(&spec(2, Policy::Block, Fit::Free), &b).unwrap();
        assert_eq!(on(&p), ["b1", "b1"]);
        let r = place(&spec(3, Policy::Block, Fit::Free), &b).unwrap_err();
        assert_eq!(r.fit, 2);
        assert_eq!(r.short[0].resource, Resource::Memory);
        assert_eq!(
            r.to_string(),
            "VC t does not fit: it has 3 VMs and the blades hold 2; \
             blade b1 ran short of memory (44MiB free, a VM needs 128MiB)"
        );
    }

    #[test]
    fn strict_refusal_names_blade_and_cores() {
        let r = place(&spec(7, Policy::Cyclic, Fit::Strict), &blades3()).unwrap_err();
        assert_eq!(r.fit, 6);
        assert_eq!(
            r.short.iter().map(|s| s.resource).collect::<Vec<_>>(),
            [Resource::Cores; 3]
        );
        assert!(
            r.to_string()
                .contains("blade b2 ran short of cores (0 free, a VM needs 1)")
        );
    }

    #[test]
    fn used_capacity_is_taken_off() {
        let b = blades3();
        let n: NodeName = "b1".parse().unwrap();
        let free = free_capacity(&b, [(&n, 3, Bytes::mib(128))]);
        assert_eq!(free[0].cores, 0);
        assert_eq!(free[0].memory, Bytes::mib(896));
        let p = place(&spec(2, Policy::Block, Fit::Strict), &free).unwrap();
        assert_eq!(on(&p), ["b2", "b2"]);
    }
}
