//! VC subnets and the addresses and names in them: the pool of the
//! profile's `[vc]` table, checks of a subnet given at creation, the
//! gateway and per-VM addresses, tap names. Pure.

use std::net::Ipv4Addr;

use cluster::net::ipv4_add;
use cluster::{Ipv4Net, MacAddr};
use serde::{Deserialize, Serialize};

use crate::error::NetError;
use crate::model::NamedNet;

/// The rules every VC subnet follows, shared with the cluster profile's
/// check of its `[vc]` pool (`cluster::vcpool`).
pub use cluster::vcpool::{DEFAULT_PREFIX, MAX_PREFIX, PRIVATE, is_private, overlaps};

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
pub const TAP_PREFIX: &str = contracts::names::vc::TAP_PREFIX;

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
