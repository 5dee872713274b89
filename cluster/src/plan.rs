//! The install plan: everything an install writes and every blade needs to
//! know, as one plain value. The same profile and SAN size give the same
//! plan, byte for byte, on any machine.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use contracts::names::label;

use crate::diag::{Diagnostics, Report, Source};
use crate::etcd::EtcdPlan;
use crate::layout::{
    self, ATTR_LEGACY_BIOS_BOOTABLE, DiskLayout, NoFit, PoolLayout, Role, Want, types,
};
use crate::name::NodeName;
use crate::net::{Ipv4Net, MacAddr};
use crate::profile::{
    Env, Firmware, Layout, NetKind, Profile, Services, SharedFs, SharedSize, Transport, defaults,
};
use crate::units::{Bytes, MIB, SectorSize};
use crate::validate::{self, MAX_GPT_PARTITIONS};

/// The partition label of the pool layout's one partition.
pub const POOL_LABEL: &str = label::POOL;

/// Version of the plan's JSON form; the node agent refuses other versions.
pub const PLAN_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format: u32,
    pub cluster: ClusterPlan,
    /// sha256 of the profile text the plan was made from.
    pub profile_sha256: String,
    pub network: NetworkPlan,
    pub nodes: Vec<NodePlan>,
    pub disk: DiskLayout,
    pub san: SanPlan,
    pub services: Services,
    pub boot: BootPlan,
    pub image: ImagePlan,
    /// Absent from plans written before etcd was planned: read as none.
    #[serde(default)]
    pub etcd: EtcdPlan,
    /// `[admin]`; left out of the JSON when empty (plans written before it
    /// read as empty).
    #[serde(default, skip_serializing_if = "AdminPlan::is_empty")]
    pub admin: AdminPlan,
    /// `[vc]`: the pool VC subnets are taken from; left out of the JSON
    /// when the profile has none (plans written before it read as none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vc: Option<crate::vcpool::VcPoolPlan>,
}

/// Who may log in to every node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminPlan {
    /// OpenSSH public key lines for root's `authorized_keys`.
    pub ssh_keys: Vec<String>,
}

impl AdminPlan {
    pub fn is_empty(&self) -> bool {
        self.ssh_keys.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterPlan {
    pub name: String,
    pub uuid: Uuid,
    pub domain: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkPlan {
    pub cidr: Ipv4Net,
    pub netmask: Ipv4Addr,
    pub gateway: Option<Ipv4Addr>,
    pub vips: Vec<VipPlan>,
    pub upstream_dns: Vec<Ipv4Addr>,
    pub extra: Vec<ExtraNetPlan>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipPlan {
    pub address: Ipv4Addr,
    /// VRRP virtual router id, 1 to 255.
    pub vrid: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraNetPlan {
    pub name: String,
    pub kind: NetKind,
    pub cidr: Ipv4Net,
    pub netmask: Ipv4Addr,
    pub interface: String,
}

/// A service every node runs; none has a single home.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Dhcp,
    Tftp,
    Http,
    Dns,
    Ntp,
    Vrrp,
    Nfs,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Dhcp => "dhcp",
            Service::Tftp => "tftp",
            Service::Http => "http",
            Service::Dns => "dns",
            Service::Ntp => "ntp",
            Service::Vrrp => "vrrp",
            Service::Nfs => "nfs",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePlan {
    /// Position in the profile, from 0.
    pub index: usize,
    pub name: NodeName,
    pub fqdn: String,
    pub macs: Vec<MacAddr>,
    pub ip: Ipv4Addr,
    pub extra_ips: Vec<ExtraIp>,
    /// Name of the node's snapshot store: a PARTLABEL in the GPT layout,
    /// an extent of `vlx-pool` in the pool layout.
    pub cow: String,
    pub swap: Option<String>,
    pub vrrp: Vec<VrrpRole>,
    pub services: Vec<Service>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraIp {
    pub network: String,
    pub ip: Ipv4Addr,
}

/// A node's part in one VIP's VRRP instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpRole {
    pub vip: Ipv4Addr,
    pub vrid: u8,
    pub priority: u8,
    /// The node with the highest priority starts as master.
    pub master: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SanPlan {
    #[serde(flatten)]
    pub transport: Transport,
    pub layout: Layout,
    pub shared_fs: SharedFs,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootPlan {
    pub firmware: Firmware,
    /// The one command line every blade boots.
    pub cmdline: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagePlan {
    /// As written in the profile (relative to it), never resolved, so that
    /// the plan is the same on every machine.
    pub host: String,
    pub overlays: Vec<String>,
}

/// What is known of the SAN itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SanFacts {
    /// From `--san-size`, or the size of `--san`; beats `san.size`.
    pub size: Option<Bytes>,
    /// Logical sector size the device reports, when it is a device.
    pub sector_size: Option<SectorSize>,
}

impl Plan {
    /// Where each volume of this plan lives, by role
    /// ([`crate::locate`]), in the GPT or the pool layout.
    pub fn volumes(&self) -> crate::locate::Volumes<'_> {
        crate::locate::Volumes::of(&self.disk)
    }

    /// Pretty JSON with a final newline; stable across machines.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| unreachable!("a plan always serializes: {e}"));
        s.push('\n');
        s
    }

    pub fn from_json(text: &str) -> Result<Plan, PlanFormatError> {
        #[derive(Deserialize)]
        struct Probe {
            format: u32,
        }
        let probe: Probe = serde_json::from_str(text).map_err(PlanFormatError::Json)?;
        if probe.format != PLAN_FORMAT {
            return Err(PlanFormatError::Version(probe.format));
        }
        serde_json::from_str(text).map_err(PlanFormatError::Json)
    }

    pub fn node(&self, name: &str) -> Option<&NodePlan> {
        self.nodes.iter().find(|n| n.name.as_str() == name)
    }

    /// The node that owns any of `macs` (a blade finds itself this way).
    pub fn node_by_mac<'a>(&'a self, macs: &[MacAddr]) -> Option<&'a NodePlan> {
        self.nodes
            .iter()
            .find(|n| n.macs.iter().any(|m| macs.contains(m)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanFormatError {
    #[error("not a vlx plan: {0}")]
    Json(#[source] serde_json::Error),
    #[error("plan format {0} is not the supported format {PLAN_FORMAT}")]
    Version(u32),
}

impl Profile {
    /// Parses and validates a profile; every problem in the file comes back
    /// in one [`Diagnostics`], in file order. (Here rather than in
    /// `profile`, which the validation reads: the parser knows nothing of
    /// the checks that follow it.)
    pub fn load(source: &Source, env: &dyn Env) -> Result<Profile, Diagnostics> {
        let mut rep = Report::new(source);
        let profile = Profile::parse_into(&mut rep);
        if let Some(p) = &profile {
            validate::check(p, env, &mut rep);
        }
        rep.finish()?;
        profile.ok_or_else(|| Diagnostics(Vec::new()))
    }
}

/// Parses, validates and plans in one pass: every problem of the profile,
/// including a layout that does not fit the SAN, comes back together.
pub fn load(source: &Source, env: &dyn Env, san: SanFacts) -> Result<(Profile, Plan), Diagnostics> {
    let mut rep = Report::new(source);
    let profile = Profile::parse_into(&mut rep);
    let plan = profile.as_ref().and_then(|p| {
        validate::check(p, env, &mut rep);
        build(p, source, san, &mut rep)
    });
    rep.finish()?;
    match (profile, plan) {
        (Some(p), Some(plan)) => Ok((p, plan)),
        _ => Err(Diagnostics(Vec::new())),
    }
}

/// Builds the plan of a parsed profile, reporting a SAN that is too small or
/// of the wrong sector size.
fn build(p: &Profile, source: &Source, san: SanFacts, rep: &mut Report<'_>) -> Option<Plan> {
    let sector = p.san.sector_size.value;
    if let Some(dev) = san.sector_size.filter(|s| *s != sector) {
        let at = &p.san.sector_size;
        rep.error(
            &at.span,
            &at.key,
            format!("the SAN has {dev}-byte logical sectors, but the profile says {sector}"),
            Some(format!("set san.sector_size = {dev}")),
        );
        return None;
    }
    let Some(size) = san.size.or(p.san.size.as_ref().map(|s| s.value)) else {
        rep.error(
            &p.top,
            "san.size",
            "the size of the SAN is unknown",
            Some("pass --san-size or --san, or set size under [san]".into()),
        );
        return None;
    };
    if validate::partition_count(p) > MAX_GPT_PARTITIONS || validate::a_size_is_too_small(p) {
        return None; // reported by the validation, with the way out
    }
    let cluster = p.cluster.uuid.value;
    let node_volumes = |n: &crate::profile::Node| {
        let name = &n.name.value;
        let cow = (
            label::cow(name.as_str()),
            Role::Cow {
                node: name.to_string(),
            },
            types::VLX_COW,
            n.cow(&p.storage).value,
        );
        let swap = n.swap(&p.storage).value;
        let sw = (swap != Bytes::ZERO).then(|| {
            (
                label::swap(name.as_str()),
                Role::Swap {
                    node: name.to_string(),
                },
                types::LINUX_SWAP,
                swap,
            )
        });
        std::iter::once(cow).chain(sw)
    };

    let esp_attr = if p.boot.firmware.bios() {
        ATTR_LEGACY_BIOS_BOOTABLE
    } else {
        0
    };
    let fixed = |label: &str, role: Role, type_guid, size: Bytes, attributes| Want {
        label: label.into(),
        role,
        type_guid,
        attributes,
        size: Some(size),
    };
    let mut wants = vec![
        fixed(
            label::ESP,
            Role::Esp,
            types::ESP,
            p.storage.esp.value,
            esp_attr,
        ),
        fixed(
            label::META,
            Role::Meta,
            types::LINUX_FS,
            p.storage.meta.value,
            0,
        ),
        fixed(
            label::ORIGIN,
            Role::Origin,
            types::LINUX_FS,
            p.storage.origin.value,
            0,
        ),
    ];
    if p.storage.slots.value == 2 {
        // Slot B beside slot A, the same size: an upgrade writes either.
        wants.push(fixed(
            label::ORIGIN_B,
            Role::OriginB,
            types::LINUX_FS,
            p.storage.origin.value,
            0,
        ));
    }
    let mut pool = None;
    match p.san.layout.value {
        Layout::Gpt => {
            for n in &p.nodes {
                for (label, role, ty, sz) in node_volumes(n) {
                    wants.push(fixed(&label, role, ty, sz, 0));
                }
            }
        }
        Layout::Pool => {
            let (table, size) = PoolLayout::place(
                p.nodes
                    .iter()
                    .flat_map(node_volumes)
                    .map(|(name, role, _, size)| (name, role, size)),
            );
            wants.push(fixed(
                POOL_LABEL,
                Role::Pool,
                types::VLX_POOL,
                size.max(Bytes(MIB)),
                0,
            ));
            pool = Some(table);
        }
    }
    if p.services.shared {
        wants.push(Want {
            label: label::SHARED.into(),
            role: Role::Shared,
            type_guid: types::LINUX_FS,
            attributes: 0,
            size: match p.storage.shared.value {
                SharedSize::Rest => None,
                SharedSize::Fixed(b) => Some(b),
            },
        });
    }
    let mut disk = match layout::place(cluster, sector, size, &wants, defaults::SHARED_MIN) {
        Ok(d) => d,
        Err(NoFit { need, have }) => {
            let s = &p.storage;
            let per_node = match s.swap.value {
                Bytes::ZERO => format!("cow {}", s.cow.value),
                swap => format!("(cow {} + swap {swap})", s.cow.value),
            };
            let per_node = if p
                .nodes
                .iter()
                .any(|n| n.sizes.cow.is_some() || n.sizes.swap.is_some())
            {
                format!("{per_node} (or the sizes of [[nodes]])")
            } else {
                per_node
            };
            let shared = match (p.services.shared, s.shared.value) {
                (false, _) => String::new(),
                (true, SharedSize::Rest) => format!(" + shared at least {}", defaults::SHARED_MIN),
                (true, SharedSize::Fixed(b)) => format!(" + shared {b}"),
            };
            // Point at what the user can change: the SAN size when the
            // profile sets it, else the per-node or origin size.
            let from_profile = san.size.is_none().then_some(p.san.size.as_ref()).flatten();
            let at = from_profile.unwrap_or(if p.nodes.len() > 1 { &s.cow } else { &s.origin });
            rep.error(
                &at.span,
                &at.key,
                format!(
                    "the layout needs about {} but the SAN holds {have}: esp {} + meta {} + origin {} + {} × {per_node}{shared} + GPT",
                    Bytes(need.get().next_multiple_of(MIB)),
                    s.esp.value,
                    s.meta.value,
                    s.origin.value,
                    p.nodes.len(),
                ),
                Some("use a larger SAN (san.size or --san-size), or smaller storage.origin, storage.cow or storage.swap".into()),
            );
            return None;
        }
    };
    disk.pool = pool;

    let vrid_base = u32::from(cluster.as_bytes()[15]);
    let vips: Vec<VipPlan> = p
        .network
        .vips
        .iter()
        .enumerate()
        .map(|(k, v)| VipPlan {
            address: v.value,
            vrid: (1 + (vrid_base + k as u32) % 255) as u8,
        })
        .collect();
    let services = services_of(&p.services);
    let count = p.nodes.len();
    let nodes: Vec<NodePlan> = p
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| NodePlan {
            index: i,
            name: n.name.value.clone(),
            fqdn: format!("{}.{}", n.name.value, p.cluster.domain.value),
            macs: n.macs.iter().map(|m| m.value).collect(),
            ip: n.ip.value,
            extra_ips: n
                .extra_ips
                .iter()
                .map(|(k, a)| ExtraIp {
                    network: k.clone(),
                    ip: a.value,
                })
                .collect(),
            cow: format!("vlx-cow-{}", n.name.value),
            swap: (n.swap(&p.storage).value != Bytes::ZERO)
                .then(|| format!("vlx-swap-{}", n.name.value)),
            vrrp: if p.services.vip {
                vips.iter()
                    .enumerate()
                    .map(|(k, v)| {
                        let (priority, master) = vrrp_priority(i, k, count);
                        VrrpRole {
                            vip: v.address,
                            vrid: v.vrid,
                            priority,
                            master,
                        }
                    })
                    .collect()
            } else {
                Vec::new()
            },
            services: services.clone(),
        })
        .collect();

    let etcd = crate::etcd::plan(p, &nodes);
    Some(Plan {
        format: PLAN_FORMAT,
        cluster: ClusterPlan {
            name: p.cluster.name.value.clone(),
            uuid: cluster,
            domain: p.cluster.domain.value.clone(),
        },
        profile_sha256: hex(&Sha256::digest(source.text().as_bytes())),
        network: NetworkPlan {
            cidr: p.network.cidr.value,
            netmask: p.network.cidr.value.netmask(),
            gateway: p.network.gateway.as_ref().map(|g| g.value),
            vips,
            upstream_dns: p.network.upstream_dns.iter().map(|a| a.value).collect(),
            extra: p
                .network
                .extra
                .iter()
                .map(|x| ExtraNetPlan {
                    name: x.name.value.clone(),
                    kind: x.kind.value,
                    cidr: x.cidr.value,
                    netmask: x.cidr.value.netmask(),
                    interface: x.interface.value.clone(),
                })
                .collect(),
        },
        nodes,
        disk,
        san: SanPlan {
            transport: p.san.transport.value.clone(),
            layout: p.san.layout.value,
            shared_fs: p.storage.shared_fs.value,
        },
        services: p.services,
        boot: BootPlan {
            firmware: p.boot.firmware.value,
            cmdline: cmdline(p),
        },
        image: ImagePlan {
            host: p.image.host.value.clone(),
            overlays: p.image.overlays.iter().map(|o| o.value.clone()).collect(),
        },
        etcd,
        admin: AdminPlan {
            ssh_keys: p.admin.ssh_keys.iter().map(|k| k.value.clone()).collect(),
        },
        vc: p.vc.as_ref().map(crate::vcpool::VcPool::plan),
    })
}

/// Node `i`'s VRRP priority for VIP `k` among `count` nodes. VIP `k` starts
/// on node `k mod count`; the nodes after it follow in order with falling
/// priority, so that each node backs up the one before it and the VIPs
/// start spread over the cluster. Priorities stay in 1..=254 (255 is the
/// address owner's, RFC 5798 5.2.4); past 254 nodes the last ones share 1.
pub fn vrrp_priority(i: usize, k: usize, count: usize) -> (u8, bool) {
    let owner = k % count;
    let distance = (i + count - owner) % count;
    let step = (253 / count.saturating_sub(1).max(1)).clamp(1, 50);
    let priority = 254usize.saturating_sub(distance * step).max(1);
    (priority as u8, distance == 0)
}

fn services_of(s: &Services) -> Vec<Service> {
    let mut v = Vec::new();
    if s.dhcp {
        v.push(Service::Dhcp);
    }
    if s.boot {
        v.extend([Service::Tftp, Service::Http]);
    }
    if s.dns {
        v.push(Service::Dns);
    }
    if s.ntp {
        v.push(Service::Ntp);
    }
    if s.vip {
        v.push(Service::Vrrp);
    }
    if s.shared {
        v.push(Service::Nfs);
    }
    v
}

/// The kernel command line every blade boots.
fn cmdline(p: &Profile) -> String {
    let mut words = contracts::cmdline::node::write(p.cluster.uuid.value, &p.san.transport.value);
    words.extend(
        p.boot
            .console
            .iter()
            .map(|c| format!("console={}", c.value)),
    );
    words.extend(p.boot.kernel_args.iter().map(|a| a.value.clone()));
    words.join(" ")
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vrrp_priorities_spread_and_chain() {
        for count in [1, 2, 4, 7, 64, 252, 300] {
            for k in 0..3 {
                let prios: Vec<_> = (0..count).map(|i| vrrp_priority(i, k, count)).collect();
                assert_eq!(prios.iter().filter(|p| p.1).count(), 1);
                assert!(prios[k % count].1, "VIP {k} starts on node {}", k % count);
                assert!(prios.iter().all(|p| (1..=254).contains(&p.0)));
                // The node right after the owner is the best backup.
                if count > 1 {
                    let next = (k + 1) % count;
                    let best_backup = prios
                        .iter()
                        .enumerate()
                        .filter(|(_, p)| !p.1)
                        .max_by_key(|(_, p)| p.0)
                        .unwrap()
                        .0;
                    assert_eq!(prios[best_backup].0, prios[next].0);
                }
                if count <= 254 {
                    let mut seen: Vec<_> = prios.iter().map(|p| p.0).collect();
                    seen.sort();
                    seen.dedup();
                    assert_eq!(seen.len(), count, "priorities unique for {count} nodes");
                }
            }
        }
    }
}
