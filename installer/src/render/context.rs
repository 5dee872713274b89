//! The template context: what a node's overlay templates can say about the
//! cluster and the node. Every field is documented in `overlays/README.md`;
//! change both together.

use std::net::{Ipv4Addr, Ipv6Addr};

use cluster::layout::derived_guid;
use cluster::locate::META_LABEL;
use cluster::plan::{NodePlan, Plan};
use cluster::profile::{Layout, NetKind, SharedFs};
use cluster::{Locate, MacAddr, Role};
use serde::Serialize;
use uuid::Uuid;

use super::{
    CLUSTER_IFACE, HTTP_PORT, META_MOUNT, NTP_CORE, PXE, PxeFiles, RESOLVERS, RenderError,
    SHARED_MOUNT, TFTP_ROOT,
};

/// Seconds a recovered node waits before it takes back a VIP that does not
/// carry the shared volume (keepalived `preempt_delay`): long enough for its
/// services to settle after a boot.
pub const PREEMPT_DELAY: u32 = 30;

/// What every node's templates share: the cluster-wide part of the
/// context, made and serialized once per plan ([`PlanContext`]).
/// `{{#cluster_wide}}` blocks see only this.
#[derive(Debug, Clone, Serialize)]
pub struct Common {
    pub cluster: Cluster,
    /// Every node of the cluster, in plan order.
    pub nodes: Vec<Host>,
    pub network: Network,
    pub ipv6: Ipv6,
    /// Every cluster address of the plan (a node's own `vips` replace
    /// these outside `cluster_wide` blocks).
    pub vips: Vec<ClusterVip>,
    pub services: ServiceFlags,
    pub dns: CommonDns,
    pub dhcp: Dhcp,
    pub admin: Admin,
    /// The profile's `[vc]` pool, if any (`subnet_pool`, `prefix`).
    pub vc: Option<cluster::vcpool::VcPoolPlan>,
    /// The prefix of VMs' taps (`contracts::names::vc::TAP_PREFIX`).
    pub vc_tap_prefix: &'static str,
    /// The file of every VM's name (`contracts::names::vc::HOSTS`).
    pub vc_hosts: &'static str,
}

/// What only one node's templates see, laid over [`Common`] key by key:
/// together they are the context `overlays/README.md` documents.
#[derive(Debug, Clone, Serialize)]
pub struct Context {
    /// The node the files are for.
    pub node: Node,
    /// The cluster addresses this node takes part in (empty when
    /// `services.vip` is off).
    pub vips: Vec<Vip>,
    pub services: Services,
    pub ntp: Ntp,
    pub dns: Dns,
    pub boot: Boot,
    pub storage: Storage,
    pub etcd: Etcd,
}

/// A cluster address as every node names it.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterVip {
    /// `vip1`, `vip2`, ... in profile order.
    pub name: String,
    pub fqdn: String,
    pub address: Ipv4Addr,
    pub vrid: u8,
    /// The VIP whose holder mounts and exports the shared volume.
    pub shared: bool,
}

/// DHCP settings that follow from the plan.
#[derive(Debug, Clone, Serialize)]
pub struct Dhcp {
    /// dnsmasq `dhcp-lease-max`: see [`lease_max`].
    pub lease_max: usize,
}

/// The cluster's resolvers outside its own names.
#[derive(Debug, Clone, Serialize)]
pub struct CommonDns {
    pub upstream: Vec<Ipv4Addr>,
}

/// dnsmasq's own `dhcp-lease-max` when none is given (dnsmasq(8)); a
/// cluster of more nodes than that would see the rest refused.
pub const DNSMASQ_LEASE_MAX: usize = 1000;

/// Leases a node's dnsmasq may hold: twice the MAC addresses of the plan
/// (a replaced board's old lease stays until it expires, and a blade may
/// ask from each of its NICs), and never below dnsmasq's default.
pub fn lease_max(plan: &Plan) -> usize {
    let macs: usize = plan.nodes.iter().map(|n| n.macs.len().max(1)).sum();
    (2 * macs).max(DNSMASQ_LEASE_MAX)
}

/// Who may log in: the profile's `[admin]`.
#[derive(Debug, Clone, Serialize)]
pub struct Admin {
    /// OpenSSH public key lines, for root's `authorized_keys`.
    pub ssh_keys: Vec<String>,
}

/// etcd on this node (`cluster::etcd`): a voter runs a member, every node
/// knows every voter's client URL.
#[derive(Debug, Clone, Serialize)]
pub struct Etcd {
    /// True on the nodes that run a member.
    pub voter: bool,
    /// The member's name (the node's), on a voter.
    pub name: String,
    /// `http://<ip>:2380`, this node's peer URL.
    pub peer_url: String,
    /// `http://<ip>:2379`, this node's client URL.
    pub client_url: String,
    /// What a voter serves clients on: its client URL and loopback, so that
    /// `etcdctl` on the node needs no flags.
    pub listen_client_urls: String,
    /// `name=peer_url,…` of every voter.
    pub initial_cluster: String,
    pub token: String,
    pub heartbeat_ms: u32,
    pub election_ms: u32,
    /// The backend's commit interval (etcd's `backend-batch-interval`).
    pub batch_ms: u32,
    pub data_dir: String,
    /// WAL files a member keeps ([`cluster::etcd::MAX_WALS`]).
    pub max_wals: u32,
    /// Every voter's client URL, in plan order.
    pub endpoints: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    pub name: String,
    pub uuid: Uuid,
    pub domain: String,
}

/// One node as every node sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub name: String,
    pub fqdn: String,
    /// Position in the profile, from 0.
    pub index: usize,
    pub ip: Ipv4Addr,
    /// The node's address in the cluster's IPv6 ULA.
    pub ipv6: Ipv6Addr,
    pub macs: Vec<MacAddr>,
    pub extra_ips: Vec<ExtraIp>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExtraIp {
    /// The extra network's name (`network.extra[].name`).
    pub network: String,
    pub kind: NetKind,
    pub interface: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub netmask: Ipv4Addr,
    /// `<node>-<network>`: the node's name on that network.
    pub name: String,
    pub fqdn: String,
}

/// This node: a [`Host`] plus what only it needs.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    #[serde(flatten)]
    pub host: Host,
    /// The first MAC: the NIC the node is known by.
    pub mac: MacAddr,
    /// Name of the cluster NIC once the image's init renamed it.
    pub interface: &'static str,
    pub prefix: u8,
    pub netmask: Ipv4Addr,
    /// 1-based [`Host::index`], for humans.
    pub number: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Network {
    pub cidr: String,
    /// The network address, e.g. `10.77.0.0`.
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub netmask: Ipv4Addr,
    pub broadcast: Ipv4Addr,
    pub gateway: Option<Ipv4Addr>,
    pub interface: &'static str,
    pub upstream_dns: Vec<Ipv4Addr>,
    pub extra: Vec<ExtraNet>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExtraNet {
    pub name: String,
    pub kind: NetKind,
    pub cidr: String,
    pub prefix: u8,
    pub netmask: Ipv4Addr,
    pub interface: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ipv6 {
    /// The ULA /64, e.g. `fd12:3456:789a::`.
    pub prefix: Ipv6Addr,
    pub prefix_len: u8,
    /// `prefix/prefix_len`.
    pub cidr: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Vip {
    /// `vip1`, `vip2`, ... in profile order.
    pub name: String,
    pub fqdn: String,
    pub address: Ipv4Addr,
    pub vrid: u8,
    /// This node's VRRP priority for the VIP.
    pub priority: u8,
    /// True on the node the VIP starts on.
    pub master: bool,
    /// False on the instance that carries the shared volume (`nopreempt`):
    /// a node that comes back never pulls the volume away again.
    pub preempt: bool,
    /// keepalived `preempt_delay` when `preempt`.
    pub preempt_delay: u32,
    /// The VIP whose holder mounts and exports the shared volume.
    pub shared: bool,
}

/// Which services the cluster runs.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceFlags {
    pub dhcp: bool,
    /// TFTP and HTTP network boot.
    pub boot: bool,
    pub tftp: bool,
    pub http: bool,
    pub dns: bool,
    pub ntp: bool,
    pub vip: bool,
    pub shared: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Services {
    #[serde(flatten)]
    pub flags: ServiceFlags,
    /// The node's service names, space-separated: `dhcp tftp http dns ntp
    /// vrrp nfs`.
    pub list: String,
}

/// chrony's sources.
#[derive(Debug, Clone, Serialize)]
pub struct Ntp {
    /// Nodes this one peers with in orphan mode.
    pub peers: Vec<Host>,
    /// Nodes this one polls as a client (only past [`NTP_CORE`] nodes).
    pub servers: Vec<Host>,
    /// True when this node is one of the peering core.
    pub core: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Dns {
    /// Resolvers for this node and its DHCP clients: this node and the next
    /// ones when DNS runs on the nodes, else the upstream servers. At most
    /// three (what resolv.conf uses).
    pub resolvers: Vec<Ipv4Addr>,
    /// Where dnsmasq forwards names outside the cluster's domain.
    pub upstream: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Boot {
    /// The PXE tree carries BIOS loaders.
    pub bios: bool,
    /// The PXE tree carries UEFI loaders.
    pub uefi: bool,
    pub tftp_root: &'static str,
    pub http_root: &'static str,
    pub http_port: u16,
    /// The address this node serves boot files from (its own).
    pub server: Ipv4Addr,
    /// `http://<server>/<files.ipxe_script>`.
    pub script_url: String,
    pub files: PxeFiles,
}

#[derive(Debug, Clone, Serialize)]
pub struct Storage {
    pub layout: Layout,
    pub meta: Volume,
    pub swap: Option<Volume>,
    pub shared: Option<Shared>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Volume {
    /// The GPT partition name (PARTLABEL) or logical volume name.
    pub label: String,
    /// How fstab names it: `PARTLABEL=<label>`, or the LV's path.
    pub spec: String,
    /// Where it is mounted; empty for swap.
    pub mount: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Shared {
    #[serde(flatten)]
    pub volume: Volume,
    pub fs: SharedFs,
    /// NFS `fsid=`: the partition's GUID, the same on every node, so that
    /// clients' file handles stay valid when the volume moves.
    pub fsid: Uuid,
    /// The VIP whose holder mounts it.
    pub vip: Ipv4Addr,
}

/// The context of a plan's nodes: [`Common`] made once, and what it takes
/// to make each node's [`Context`] without going over every node again
/// (so that rendering a cluster costs in proportion to its nodes).
#[derive(Debug, Clone)]
pub struct PlanContext {
    pub common: Common,
    /// Indices (in plan order) of the time core; see [`ntp`].
    ntp_core: Vec<usize>,
}

impl PlanContext {
    /// Pure: the same plan gives the same context. A node named like a VIP
    /// (`vip1`, ...) would make two different answers for one name:
    /// refused.
    pub fn new(plan: &Plan) -> Result<PlanContext, RenderError> {
        let net = &plan.network;
        let domain = &plan.cluster.domain;
        let ula = ula_prefix(plan.cluster.uuid);
        let nodes: Vec<Host> = plan.nodes.iter().map(|n| to_host(plan, ula, n)).collect();
        let names: std::collections::HashSet<&str> =
            plan.nodes.iter().map(|n| n.name.as_str()).collect();
        let mut vips = Vec::with_capacity(net.vips.len());
        // As a node's own VIPs: none when the cluster runs no VRRP.
        let planned = if plan.services.vip {
            &net.vips[..]
        } else {
            &[]
        };
        for (k, v) in planned.iter().enumerate() {
            let name = vip_name(k);
            if names.contains(name.as_str()) {
                return Err(RenderError::NameClash {
                    node: name.clone(),
                    name,
                    vip: v.address,
                });
            }
            vips.push(ClusterVip {
                fqdn: format!("{name}.{domain}"),
                name,
                address: v.address,
                vrid: v.vrid,
                shared: plan.services.shared && k == 0,
            });
        }
        let s = &plan.services;
        let mut by_ip: Vec<usize> = (0..plan.nodes.len()).collect();
        by_ip.sort_by_key(|i| plan.nodes[*i].ip);
        by_ip.truncate(NTP_CORE);
        by_ip.sort_unstable();
        Ok(PlanContext {
            common: Common {
                cluster: Cluster {
                    name: plan.cluster.name.clone(),
                    uuid: plan.cluster.uuid,
                    domain: domain.clone(),
                },
                nodes,
                network: Network {
                    cidr: net.cidr.to_string(),
                    address: net.cidr.network(),
                    prefix: net.cidr.prefix(),
                    netmask: net.netmask,
                    broadcast: net.cidr.broadcast(),
                    gateway: net.gateway,
                    interface: CLUSTER_IFACE,
                    upstream_dns: net.upstream_dns.clone(),
                    extra: net
                        .extra
                        .iter()
                        .map(|e| ExtraNet {
                            name: e.name.clone(),
                            kind: e.kind,
                            cidr: e.cidr.to_string(),
                            prefix: e.cidr.prefix(),
                            netmask: e.netmask,
                            interface: e.interface.clone(),
                        })
                        .collect(),
                },
                ipv6: Ipv6 {
                    prefix: ula,
                    prefix_len: ULA_PREFIX_LEN,
                    cidr: format!("{ula}/{ULA_PREFIX_LEN}"),
                },
                vips,
                services: ServiceFlags {
                    dhcp: s.dhcp,
                    boot: s.boot,
                    tftp: s.boot,
                    http: s.boot,
                    dns: s.dns,
                    ntp: s.ntp,
                    vip: s.vip,
                    shared: s.shared,
                },
                dns: CommonDns {
                    upstream: net.upstream_dns.clone(),
                },
                dhcp: Dhcp {
                    lease_max: lease_max(plan),
                },
                admin: Admin {
                    ssh_keys: plan.admin.ssh_keys.clone(),
                },
                vc: plan.vc,
                vc_tap_prefix: contracts::names::vc::TAP_PREFIX,
                vc_hosts: contracts::names::vc::HOSTS,
            },
            ntp_core: by_ip,
        })
    }

    /// The context of `node`'s templates, which must be a node of `plan`
    /// (the plan this was made from). Pure, and costs the same whatever
    /// the cluster's size.
    pub fn node(&self, plan: &Plan, node: &NodePlan) -> Result<Context, RenderError> {
        let name = node.name.to_string();
        let net = &plan.network;
        let mac = *node
            .macs
            .first()
            .ok_or_else(|| RenderError::NoMac { node: name.clone() })?;
        // The node's position in the plan: its index, unless the plan was
        // put together otherwise.
        let at = if plan
            .nodes
            .get(node.index)
            .is_some_and(|n| n.name == node.name)
        {
            Some(node.index)
        } else {
            plan.nodes.iter().position(|n| n.name == node.name)
        };
        let host = match at {
            Some(i) => self.common.nodes[i].clone(),
            None => to_host(plan, self.common.ipv6.prefix, node),
        };

        let s = &plan.services;
        // A cluster without VRRP gives no node a VIP, whatever roles its
        // plan still lists.
        let vips = if s.vip {
            vips(node, &self.common.vips)?
        } else {
            Vec::new()
        };
        let services = Services {
            flags: self.common.services.clone(),
            list: node
                .services
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(" "),
        };

        let resolvers = if s.dns {
            let count = plan.nodes.len();
            let start = at.unwrap_or(0);
            (0..count.min(RESOLVERS))
                .map(|k| plan.nodes[(start + k) % count].ip)
                .collect()
        } else {
            net.upstream_dns.iter().copied().take(RESOLVERS).collect()
        };

        let storage = storage(plan, node, &vips);
        let e = &plan.etcd;
        let etcd = Etcd {
            voter: e.voter(node.index).is_some(),
            name,
            peer_url: format!("http://{}:{}", node.ip, cluster::etcd::PEER_PORT),
            client_url: format!("http://{}:{}", node.ip, cluster::etcd::CLIENT_PORT),
            listen_client_urls: format!(
                "http://{}:{port},http://127.0.0.1:{port}",
                node.ip,
                port = cluster::etcd::CLIENT_PORT
            ),
            initial_cluster: e.initial_cluster(),
            token: e.token.clone(),
            heartbeat_ms: e.heartbeat.get(),
            election_ms: e.election.get(),
            batch_ms: e.batch.get(),
            data_dir: e.data_dir.clone(),
            max_wals: cluster::etcd::MAX_WALS,
            endpoints: e.endpoints(),
        };
        Ok(Context {
            node: Node {
                host,
                mac,
                interface: CLUSTER_IFACE,
                prefix: net.cidr.prefix(),
                netmask: net.netmask,
                number: node.index + 1,
            },
            ntp: self.ntp(plan, node),
            vips,
            services,
            dns: Dns {
                resolvers,
                upstream: net.upstream_dns.clone(),
            },
            boot: Boot {
                bios: plan.boot.firmware.bios(),
                uefi: plan.boot.firmware.uefi(),
                tftp_root: TFTP_ROOT,
                http_root: TFTP_ROOT,
                http_port: HTTP_PORT,
                server: node.ip,
                script_url: format!("http://{}/{}", node.ip, PXE.ipxe_script),
                files: PXE,
            },
            storage,
            etcd,
        })
    }

    /// Time sources of `node`. Up to [`NTP_CORE`] nodes, every node peers
    /// with every other in orphan mode (chrony's orphan mode needs each
    /// server to poll all the others). Past that, the core is the
    /// [`NTP_CORE`] nodes with the lowest addresses (chrony's orphan leader
    /// is the one with the smallest reference ID, derived from the address,
    /// so the leader is always in the core); they peer with each other and
    /// every other node polls all of them as a client. That bounds each
    /// node's sources at [`NTP_CORE`] instead of the cluster's size.
    fn ntp(&self, plan: &Plan, node: &NodePlan) -> Ntp {
        let in_core = self
            .ntp_core
            .iter()
            .any(|i| plan.nodes[*i].name == node.name);
        let hosts: Vec<Host> = self
            .ntp_core
            .iter()
            .filter(|i| plan.nodes[**i].name != node.name)
            .map(|i| self.common.nodes[*i].clone())
            .collect();
        if in_core {
            Ntp {
                peers: hosts,
                servers: Vec::new(),
                core: true,
            }
        } else {
            Ntp {
                peers: Vec::new(),
                servers: hosts,
                core: false,
            }
        }
    }
}

fn vip_name(k: usize) -> String {
    format!("vip{}", k + 1)
}

/// `n` as every node sees it.
fn to_host(plan: &Plan, ula: Ipv6Addr, n: &NodePlan) -> Host {
    let domain = &plan.cluster.domain;
    Host {
        name: n.name.to_string(),
        fqdn: n.fqdn.clone(),
        index: n.index,
        ip: n.ip,
        ipv6: ula_address(ula, n.ip),
        macs: n.macs.clone(),
        extra_ips: n
            .extra_ips
            .iter()
            .filter_map(|x| {
                let extra = plan.network.extra.iter().find(|e| e.name == x.network)?;
                let label = format!("{}-{}", n.name, x.network);
                Some(ExtraIp {
                    network: x.network.clone(),
                    kind: extra.kind,
                    interface: extra.interface.clone(),
                    ip: x.ip,
                    prefix: extra.cidr.prefix(),
                    netmask: extra.netmask,
                    fqdn: format!("{label}.{domain}"),
                    name: label,
                })
            })
            .collect(),
    }
}

/// The VIPs `node` takes part in, named as in [`Common::vips`].
fn vips(node: &NodePlan, all: &[ClusterVip]) -> Result<Vec<Vip>, RenderError> {
    let mut out = Vec::with_capacity(node.vrrp.len());
    for role in &node.vrrp {
        let v = all
            .iter()
            .find(|v| v.address == role.vip && v.vrid == role.vrid)
            .ok_or_else(|| RenderError::UnknownVip {
                node: node.name.to_string(),
                vip: role.vip,
            })?;
        out.push(Vip {
            fqdn: v.fqdn.clone(),
            name: v.name.clone(),
            address: role.vip,
            vrid: role.vrid,
            priority: role.priority,
            master: role.master,
            preempt: !v.shared,
            preempt_delay: PREEMPT_DELAY,
            shared: v.shared,
        });
    }
    Ok(out)
}

fn storage(plan: &Plan, node: &NodePlan, vips: &[Vip]) -> Storage {
    let layout = plan.san.layout;
    let part = |label: &str, mount: &str| Volume {
        label: label.to_owned(),
        spec: format!("PARTLABEL={label}"),
        mount: mount.to_owned(),
    };
    // In the pool the node agent maps its swap extent under a fixed
    // device-mapper name; in the GPT layout it is a partition.
    let swap = node.swap.as_ref().map(|label| match &plan.disk.pool {
        Some(_) => Volume {
            label: label.clone(),
            spec: format!("/dev/mapper/{}", cluster::locate::SWAP_DM_NAME),
            mount: String::new(),
        },
        None => part(label, ""),
    });
    let volumes = plan.volumes();
    let shared = volumes
        .find(&Role::Shared)
        .zip(vips.iter().find(|v| v.shared))
        .map(|(s, v)| Shared {
            volume: part(&s.partition.label, SHARED_MOUNT),
            fs: plan.san.shared_fs,
            fsid: s.partition.guid,
            vip: v.address,
        });
    let meta = volumes
        .find(&Role::Meta)
        .map_or_else(|| META_LABEL.to_owned(), |m| m.partition.label);
    Storage {
        layout,
        meta: part(&meta, META_MOUNT),
        swap,
        shared,
    }
}

/// Length of the ULA prefix every node shares.
pub const ULA_PREFIX_LEN: u8 = 64;

/// The cluster's IPv6 unique local /64 (RFC 4193): `fd` and a 40-bit global
/// ID taken from a GUID derived from the cluster uuid (instead of RFC 4193's
/// time and EUI-64 hash), so every install of one cluster gets the same
/// prefix and two clusters almost surely different ones; subnet ID 0.
pub fn ula_prefix(cluster: Uuid) -> Ipv6Addr {
    let g = derived_guid(cluster, "ipv6-ula");
    let b = g.as_bytes();
    let mut a = [0u8; 16];
    a[0] = 0xfd;
    a[1..6].copy_from_slice(&b[..5]);
    Ipv6Addr::from(a)
}

/// A node's ULA address: the prefix with the node's IPv4 address as the low
/// 32 bits of the interface ID, unique because the IPv4 addresses are.
pub fn ula_address(prefix: Ipv6Addr, ip: Ipv4Addr) -> Ipv6Addr {
    let mut a = prefix.octets();
    a[12..].copy_from_slice(&ip.octets());
    Ipv6Addr::from(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ula_is_fd_slash_64_and_per_node() {
        let u: Uuid = "6f1c0a4e-3b8e-4d3a-9d2a-1f0e5c7b9a10".parse().unwrap();
        let p = ula_prefix(u);
        assert_eq!(p.octets()[0], 0xfd);
        assert_eq!(&p.octets()[6..], &[0; 10]);
        assert_eq!(p, ula_prefix(u), "deterministic");
        let other: Uuid = "3d0f5e8a-7c21-4b6e-9f43-0a5d2c8e1b77".parse().unwrap();
        assert_ne!(p, ula_prefix(other));
        let a = ula_address(p, Ipv4Addr::new(10, 77, 0, 11));
        assert_eq!(&a.octets()[..8], &p.octets()[..8]);
        assert!(a.to_string().ends_with(":a4d:b"), "{a}");
    }
}
