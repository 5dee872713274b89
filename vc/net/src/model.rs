//! The pure model: a placement given as plain data, validated into the
//! networks of every VC and each blade's share. No I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use cluster::{Ipv4Net, MacAddr};
use serde::{Deserialize, Serialize};

use crate::error::NetError;
/// The subnet and name rules, here too: the model is where callers look.
pub use crate::subnet::{
    DEFAULT_PREFIX, MAX_PREFIX, PRIVATE, SubnetPool, TAP_PREFIX, check_subnet, gateway, is_label,
    is_private, is_tap_name, overlaps, tap_name, vm_addr, vm_capacity,
};

/// A network of the cluster itself (its `[network] cidr`, an extra network),
/// with the name errors call it by, e.g. `network.cidr`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedNet {
    pub name: String,
    pub cidr: Ipv4Net,
}

/// A blade and its address on the cluster network: the next hop of the VMs
/// it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Blade {
    pub name: String,
    pub addr: Ipv4Addr,
}

/// One VM of a placement, in its VC's index order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmInput {
    /// Its name inside the VC: a DNS label (`VM.VC.DOMAIN`).
    pub name: String,
    pub mac: MacAddr,
    /// The blade that runs it (a name from [`NetInput::blades`]).
    pub blade: String,
}

/// One VC of a placement: its subnet as recorded at creation (see
/// [`SubnetPool::allocate`]), whether it may reach the outside, its VMs in
/// index order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VcInput {
    pub name: String,
    pub subnet: Ipv4Net,
    #[serde(default)]
    pub outside: bool,
    pub vms: Vec<VmInput>,
}

/// Everything the networks are planned from: the cluster's facts and the
/// placement of every VC, as plain data (the VC state in etcd gives it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetInput {
    /// The cluster's domain: VM names are `VM.VC.DOMAIN`.
    pub domain: String,
    /// The cluster's own networks; no VC subnet may overlap them.
    pub cluster_nets: Vec<NamedNet>,
    /// The NFS server of the shared volume (its VIP).
    pub storage: Ipv4Addr,
    /// Where the shared volume is mounted on the blade holding the VIP.
    pub shared_dir: String,
    /// DNS servers the blades' VC dnsmasq asks for names outside the VCs
    /// (the cluster's `network.upstream_dns`); none: VMs resolve VC names
    /// only.
    #[serde(default)]
    pub upstream_dns: Vec<Ipv4Addr>,
    pub blades: Vec<Blade>,
    pub vcs: Vec<VcInput>,
}

/// A VM with its address and tap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmNet {
    pub name: String,
    /// 0-based position in its VC's index order.
    pub index: usize,
    pub mac: MacAddr,
    pub addr: Ipv4Addr,
    pub blade: String,
    pub tap: String,
}

/// A VC's network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VcNet {
    pub name: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub outside: bool,
    pub vms: Vec<VmNet>,
}

/// The validated networks of every VC: what every blade renders its part
/// from. Same input, same plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetPlan {
    pub domain: String,
    pub cluster_nets: Vec<NamedNet>,
    pub storage: Ipv4Addr,
    pub shared_dir: String,
    pub upstream_dns: Vec<Ipv4Addr>,
    pub blades: Vec<Blade>,
    pub vcs: Vec<VcNet>,
}

impl NetPlan {
    /// Validates the input and gives every VM its address. Every error is
    /// bad input (exit 2) and names what is wrong.
    pub fn new(input: &NetInput) -> Result<NetPlan, NetError> {
        let mut blade_names = BTreeSet::new();
        let mut blade_addrs = BTreeMap::new();
        for b in &input.blades {
            if !blade_names.insert(b.name.as_str()) {
                return Err(NetError::Duplicate {
                    what: "blade",
                    name: b.name.clone(),
                });
            }
            if let Some(other) = blade_addrs.insert(b.addr, b.name.as_str()) {
                return Err(NetError::Duplicate {
                    what: "blade address",
                    name: format!("{} (blades {other} and {})", b.addr, b.name),
                });
            }
        }
        let mut taken: Vec<(String, Ipv4Net)> = Vec::new();
        let mut macs: BTreeMap<MacAddr, String> = BTreeMap::new();
        let mut vcs = Vec::with_capacity(input.vcs.len());
        for vc in &input.vcs {
            if !is_label(&vc.name) {
                return Err(NetError::BadName {
                    what: "VC",
                    name: vc.name.clone(),
                });
            }
            if taken.iter().any(|(n, _)| *n == vc.name) {
                return Err(NetError::Duplicate {
                    what: "VC",
                    name: vc.name.clone(),
                });
            }
            check_subnet(&vc.name, vc.subnet, &input.cluster_nets, &taken)?;
            for b in &input.blades {
                if vc.subnet.contains(b.addr) {
                    return Err(NetError::Overlap {
                        vc: vc.name.clone(),
                        subnet: vc.subnet,
                        what: format!("the address {} of blade {}", b.addr, b.name),
                        other: Ipv4Net::new(b.addr, 32).unwrap_or(vc.subnet),
                    });
                }
            }
            if vc.subnet.contains(input.storage) {
                return Err(NetError::Overlap {
                    vc: vc.name.clone(),
                    subnet: vc.subnet,
                    what: format!("the shared storage address {}", input.storage),
                    other: Ipv4Net::new(input.storage, 32).unwrap_or(vc.subnet),
                });
            }
            let asked = vc.vms.len() as u64;
            if asked > vm_capacity(vc.subnet) {
                return Err(NetError::TooManyVms {
                    vc: vc.name.clone(),
                    subnet: vc.subnet,
                    asked,
                    holds: vm_capacity(vc.subnet),
                });
            }
            taken.push((vc.name.clone(), vc.subnet));
            let mut names = BTreeSet::new();
            let mut vms = Vec::with_capacity(vc.vms.len());
            for (index, vm) in vc.vms.iter().enumerate() {
                let full = format!("{}/{}", vc.name, vm.name);
                if !is_label(&vm.name) {
                    return Err(NetError::BadName {
                        what: "VM",
                        name: full,
                    });
                }
                if !names.insert(vm.name.as_str()) {
                    return Err(NetError::Duplicate {
                        what: "VM",
                        name: full,
                    });
                }
                if vm.mac.is_multicast() {
                    return Err(NetError::BadMac {
                        vm: full,
                        mac: vm.mac,
                    });
                }
                if let Some(other) = macs.insert(vm.mac, full.clone()) {
                    return Err(NetError::Duplicate {
                        what: "MAC",
                        name: format!("{} (VMs {other} and {full})", vm.mac),
                    });
                }
                if !blade_names.contains(vm.blade.as_str()) {
                    return Err(NetError::UnknownBlade {
                        vm: full,
                        blade: vm.blade.clone(),
                    });
                }
                let addr = vm_addr(vc.subnet, index).ok_or(NetError::TooManyVms {
                    vc: vc.name.clone(),
                    subnet: vc.subnet,
                    asked,
                    holds: vm_capacity(vc.subnet),
                })?;
                vms.push(VmNet {
                    name: vm.name.clone(),
                    index,
                    mac: vm.mac,
                    addr,
                    blade: vm.blade.clone(),
                    tap: tap_name(vm.mac),
                });
            }
            vcs.push(VcNet {
                name: vc.name.clone(),
                subnet: vc.subnet,
                gateway: gateway(vc.subnet),
                outside: vc.outside,
                vms,
            });
        }
        Ok(NetPlan {
            domain: input.domain.clone(),
            cluster_nets: input.cluster_nets.clone(),
            storage: input.storage,
            shared_dir: input.shared_dir.clone(),
            upstream_dns: input.upstream_dns.clone(),
            blades: input.blades.clone(),
            vcs,
        })
    }

    /// The address of a blade by name.
    pub fn blade_addr(&self, blade: &str) -> Option<Ipv4Addr> {
        self.blades.iter().find(|b| b.name == blade).map(|b| b.addr)
    }

    /// A VM by `VC/VM`.
    pub fn vm(&self, vc: &str, vm: &str) -> Option<&VmNet> {
        self.vcs
            .iter()
            .find(|v| v.name == vc)?
            .vms
            .iter()
            .find(|m| m.name == vm)
    }

    /// One blade's part: the VMs on its taps and a route to every other VM.
    pub fn blade(&self, blade: &str) -> Result<BladeNet, NetError> {
        let me = self
            .blades
            .iter()
            .find(|b| b.name == blade)
            .ok_or_else(|| NetError::NoSuchBlade(blade.to_owned()))?;
        let mut local = Vec::new();
        let mut routes = Vec::new();
        for vc in &self.vcs {
            for vm in &vc.vms {
                if vm.blade == me.name {
                    local.push(LocalVm {
                        vc: vc.name.clone(),
                        vm: vm.name.clone(),
                        mac: vm.mac,
                        addr: vm.addr,
                        tap: vm.tap.clone(),
                        gateway: vc.gateway,
                        subnet: vc.subnet,
                    });
                } else {
                    // Validated in `new`: every VM's blade is in the list.
                    let via = self.blade_addr(&vm.blade).unwrap_or(me.addr);
                    routes.push(Route {
                        vm: format!("{}/{}", vc.name, vm.name),
                        dest: vm.addr,
                        via,
                        via_blade: vm.blade.clone(),
                    });
                }
            }
        }
        Ok(BladeNet {
            blade: me.clone(),
            local,
            routes,
        })
    }
}

/// A VM that runs on this blade: its tap carries the VC's gateway address
/// and a /32 route to the VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalVm {
    pub vc: String,
    pub vm: String,
    pub mac: MacAddr,
    pub addr: Ipv4Addr,
    pub tap: String,
    pub gateway: Ipv4Addr,
    pub subnet: Ipv4Net,
}

/// A /32 host route to a VM of another blade, via that blade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// `VC/VM`, for reports.
    pub vm: String,
    pub dest: Ipv4Addr,
    pub via: Ipv4Addr,
    pub via_blade: String,
}

/// One blade's share of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BladeNet {
    pub blade: Blade,
    pub local: Vec<LocalVm>,
    pub routes: Vec<Route>,
}
