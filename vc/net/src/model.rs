//! The pure model: VC subnets, per-VM addresses, and validation of a
//! placement. No I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use cluster::net::ipv4_add;
use cluster::{Ipv4Net, MacAddr};
use serde::{Deserialize, Serialize};

use crate::error::NetError;

/// The private ranges of RFC 1918: a VC subnet must lie in one of them, so a
/// VC never takes addresses that mean something outside the cluster.
pub const PRIVATE: [(Ipv4Addr, u8); 3] = [
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
];

/// The longest VC prefix: a /30 holds the gateway and one VM; a /31 or /32
/// would hold no VM beside its gateway.
pub const MAX_PREFIX: u8 = 30;

/// The prefix of pool subnets when the profile does not say.
pub const DEFAULT_PREFIX: u8 = 24;

/// True when the two networks share at least one address.
pub fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(b.network()) || b.contains(a.network())
}

/// True when `net` lies inside one of the [`PRIVATE`] ranges.
pub fn is_private(net: Ipv4Net) -> bool {
    PRIVATE.iter().any(|&(a, p)| {
        Ipv4Net::new(a, p).is_some_and(|r| r.prefix() <= net.prefix() && r.contains(net.network()))
    })
}

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

/// The `[vc]` table of a cluster profile:
///
/// ```toml
/// [vc]
/// subnet_pool = "10.200.0.0/16"   # VC subnets are taken from here
/// prefix = 24                      # the size of each (default 24)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetPool {
    pub subnet_pool: Ipv4Net,
    #[serde(default = "default_prefix")]
    pub prefix: u8,
}

fn default_prefix() -> u8 {
    DEFAULT_PREFIX
}

#[derive(Deserialize)]
struct ProfileVcPart {
    vc: Option<SubnetPool>,
}

impl SubnetPool {
    /// Reads the `[vc]` table of a cluster profile's text (other tables are
    /// the cluster model's business and ignored here). `None` when the
    /// profile has no `[vc]` table: every VC must then name its subnet.
    pub fn from_profile(file: &str, text: &str) -> Result<Option<SubnetPool>, NetError> {
        let part: ProfileVcPart = toml::from_str(text).map_err(|e| NetError::Profile {
            file: file.to_owned(),
            detail: e.to_string(),
        })?;
        match part.vc {
            None => Ok(None),
            Some(p) => p.check(file).map(Some),
        }
    }

    /// The pool is private, and its prefix fits inside it and leaves room
    /// for a gateway and a VM.
    pub fn check(self, file: &str) -> Result<SubnetPool, NetError> {
        let bad = |reason: String| NetError::Pool {
            file: file.to_owned(),
            pool: self.subnet_pool,
            reason,
        };
        if !is_private(self.subnet_pool) {
            return Err(bad(
                "it is not inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16".into(),
            ));
        }
        if self.prefix < self.subnet_pool.prefix() || self.prefix > MAX_PREFIX {
            return Err(bad(format!(
                "vc.prefix = {} must be from {} (the pool's own) to {MAX_PREFIX}",
                self.prefix,
                self.subnet_pool.prefix()
            )));
        }
        Ok(self)
    }

    /// The subnet for a new VC: the first `/prefix` block of the pool, in
    /// address order, that overlaps neither a cluster network nor a subnet in
    /// `taken` (the VCs that exist). Deterministic; the caller records the
    /// result with the VC, so that later VCs never move it.
    pub fn allocate(
        self,
        cluster_nets: &[NamedNet],
        taken: &[Ipv4Net],
    ) -> Result<Ipv4Net, NetError> {
        let pool = self.subnet_pool;
        let step = 1u64 << (32 - u32::from(self.prefix));
        let blocks = 1u64 << (self.prefix - pool.prefix());
        let mut i = 0u64;
        while i < blocks {
            let addr = ipv4_add(pool.network(), i * step).ok_or(NetError::PoolExhausted {
                pool,
                prefix: self.prefix,
                taken: taken.len(),
            })?;
            let Some(cand) = Ipv4Net::new(addr, self.prefix) else {
                break;
            };
            // Skip past whatever the candidate overlaps, in one jump: a big
            // cluster network inside the pool costs one step, not thousands.
            let blocker = cluster_nets
                .iter()
                .map(|n| n.cidr)
                .chain(taken.iter().copied())
                .filter(|n| overlaps(*n, cand))
                .map(|n| u64::from(u32::from(n.broadcast())))
                .max();
            match blocker {
                None => return Ok(cand),
                Some(end) => {
                    let next = end + 1 - u64::from(u32::from(pool.network()));
                    i = next.div_ceil(step).max(i + 1);
                }
            }
        }
        Err(NetError::PoolExhausted {
            pool,
            prefix: self.prefix,
            taken: taken.len(),
        })
    }
}

/// Checks a subnet asked for at creation against the cluster's networks and
/// the VCs that exist (`taken`, with their names).
pub fn check_subnet(
    vc: &str,
    subnet: Ipv4Net,
    cluster_nets: &[NamedNet],
    taken: &[(String, Ipv4Net)],
) -> Result<(), NetError> {
    if !is_private(subnet) {
        return Err(NetError::NotPrivate {
            vc: vc.to_owned(),
            subnet,
        });
    }
    if subnet.prefix() > MAX_PREFIX {
        return Err(NetError::TooSmall {
            vc: vc.to_owned(),
            subnet,
        });
    }
    for n in cluster_nets {
        if overlaps(subnet, n.cidr) {
            return Err(NetError::Overlap {
                vc: vc.to_owned(),
                subnet,
                what: format!("the cluster network {}", n.name),
                other: n.cidr,
            });
        }
    }
    for (name, n) in taken {
        if name != vc && overlaps(subnet, *n) {
            return Err(NetError::Overlap {
                vc: vc.to_owned(),
                subnet,
                what: format!("VC {name}"),
                other: *n,
            });
        }
    }
    Ok(())
}

/// The gateway of a VC subnet: its first host address, answered by every
/// blade on the taps of the VC's VMs.
pub fn gateway(subnet: Ipv4Net) -> Ipv4Addr {
    ipv4_add(subnet.network(), 1).unwrap_or(subnet.network())
}

/// How many VMs a subnet holds: its hosts less the gateway.
pub fn vm_capacity(subnet: Ipv4Net) -> u64 {
    subnet.host_count().saturating_sub(1)
}

/// The address of the VM at `index` (0-based, index order): the hosts after
/// the gateway, in order. `None` past the subnet's capacity.
pub fn vm_addr(subnet: Ipv4Net, index: usize) -> Option<Ipv4Addr> {
    let i = u64::try_from(index).ok()?;
    if i >= vm_capacity(subnet) {
        return None;
    }
    ipv4_add(subnet.network(), 2 + i)
}

/// The name of a VM's tap on its blade: `vx` and the 12 hex digits of its
/// MAC (14 characters, within the kernel's 15). MACs are unique in the
/// cluster, so tap names are; the executor recognises its own links by this
/// form.
pub fn tap_name(mac: MacAddr) -> String {
    let mut s = String::from(TAP_PREFIX);
    for b in mac.0 {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The prefix of every tap name (and of nothing else the blade has).
pub const TAP_PREFIX: &str = "vx";

/// True for names of the form [`tap_name`] makes.
pub fn is_tap_name(s: &str) -> bool {
    s.len() == 14
        && s.starts_with(TAP_PREFIX)
        && s[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A DNS label as VC and VM names must be: lowercase letters, digits and
/// `-`, 1 to 63 characters, starting with a letter or digit and not ending
/// with `-`.
pub fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
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
