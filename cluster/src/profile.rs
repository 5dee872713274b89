//! The cluster profile: its schema, and parsing with every structural problem
//! reported at once. `profiles/README.md` documents each key.
//!
//! Semantic checks (duplicates, addresses, paths) come after parsing, in the
//! validation module, which reads this one; [`Profile::load`] runs both.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::diag::{At, Report, Span};
use crate::etcd::{Millis, defaults as etcd_defaults};
use crate::name::{NameRange, NodeName, check_domain, check_label};
use crate::net::{Ipv4Net, MacAddr, ipv4_add};
use crate::read::{Tbl, as_table};
use crate::units::{Bytes, SectorSize};
use crate::vcpool::VcPool;

/// A parsed, validated cluster profile. Every value keeps the place it was
/// written, so that later checks (such as the layout against the SAN size)
/// can still point at the file.
#[derive(Debug, Clone)]
pub struct Profile {
    pub cluster: ClusterId,
    pub network: Network,
    pub nodes: Vec<Node>,
    pub san: San,
    pub storage: Storage,
    pub services: Services,
    pub boot: Boot,
    pub image: Image,
    pub admin: Admin,
    pub etcd: EtcdProfile,
    /// `[vc]`: the pool VC subnets are taken from; none: every VC names
    /// its own subnet.
    pub vc: Option<VcPool>,
    /// Span of the whole file, for problems that belong to no single key.
    pub(crate) top: Span,
    /// Span of `[services]` (or the file, when absent).
    pub(crate) services_span: Span,
}

#[derive(Debug, Clone)]
pub struct ClusterId {
    pub name: At<String>,
    pub uuid: At<Uuid>,
    pub domain: At<String>,
}

#[derive(Debug, Clone)]
pub struct Network {
    pub cidr: At<Ipv4Net>,
    pub gateway: Option<At<Ipv4Addr>>,
    pub vips: Vec<At<Ipv4Addr>>,
    pub upstream_dns: Vec<At<Ipv4Addr>>,
    pub extra: Vec<ExtraNetwork>,
    /// Whether `vips` is written at all (a bad list is not a missing one).
    pub(crate) vips_written: bool,
}

/// A second network (e.g. InfiniBand) that nodes may have an address on.
#[derive(Debug, Clone)]
pub struct ExtraNetwork {
    pub name: At<String>,
    pub kind: At<NetKind>,
    pub cidr: At<Ipv4Net>,
    /// Interface name on every node, e.g. `ib0`.
    pub interface: At<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetKind {
    Ethernet,
    Infiniband,
}

/// One node, after ranges are expanded and overrides applied.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: At<NodeName>,
    pub macs: Vec<At<MacAddr>>,
    pub ip: At<Ipv4Addr>,
    /// Addresses on extra networks, by network name.
    pub extra_ips: Vec<(String, At<Ipv4Addr>)>,
    /// The `[[nodes]]` entry this node came from, and its range pattern.
    pub entry: usize,
    pub range: Option<String>,
    /// The entry's own store sizes (`cow`, `swap` on `[[nodes]]`), which
    /// beat `[storage]` for the nodes of that entry.
    pub sizes: NodeSizes,
}

/// Store sizes one `[[nodes]]` entry sets for its nodes; `None` takes the
/// size under `[storage]`.
#[derive(Debug, Clone, Default)]
pub struct NodeSizes {
    pub cow: Option<At<Bytes>>,
    pub swap: Option<At<Bytes>>,
}

impl Node {
    /// The node's snapshot store size.
    pub fn cow<'a>(&'a self, storage: &'a Storage) -> &'a At<Bytes> {
        self.sizes.cow.as_ref().unwrap_or(&storage.cow)
    }

    /// The node's swap size; zero means none.
    pub fn swap<'a>(&'a self, storage: &'a Storage) -> &'a At<Bytes> {
        self.sizes.swap.as_ref().unwrap_or(&storage.swap)
    }
}

#[derive(Debug, Clone)]
pub struct San {
    pub transport: At<Transport>,
    pub sector_size: At<SectorSize>,
    pub layout: At<Layout>,
    /// Size of the SAN, when the profile states it (a flag overrides it).
    pub size: Option<At<Bytes>>,
}

/// How blades reach the SAN, and the seed's iSCSI boot parameters: the
/// kernel command line's contract, written from the plan.
pub use contracts::cmdline::node::{Iscsi, Transport};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// One GPT partition per volume: what `vlx-install apply` writes.
    Gpt,
    /// Every node's snapshot store and swap as extents of one `vlx-pool`
    /// partition, placed by the planner and recorded in `plan.json`: the
    /// way past the GPT limit. Each node maps its extents with a
    /// device-mapper `linear` table; no volume manager runs.
    Pool,
}

#[derive(Debug, Clone)]
pub struct Storage {
    pub esp: At<Bytes>,
    pub meta: At<Bytes>,
    pub origin: At<Bytes>,
    pub cow: At<Bytes>,
    /// Zero means no swap partitions.
    pub swap: At<Bytes>,
    pub shared: At<SharedSize>,
    pub shared_fs: At<SharedFs>,
    /// Origin slots, 1 or 2: with 2 the SAN carries `vlx-origin-b` too, and
    /// `vlx-install upgrade` writes a new image beside the running one.
    pub slots: At<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedSize {
    /// Whatever the SAN has left after every other volume.
    Rest,
    Fixed(Bytes),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SharedFs {
    Ext4,
    Ocfs2,
}

/// The master-less services; all on unless turned off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Services {
    pub dhcp: bool,
    pub boot: bool,
    pub dns: bool,
    pub ntp: bool,
    pub vip: bool,
    pub shared: bool,
}

/// `[etcd]`: how many blades vote and the timers of the blades' etcd
/// (`crate::etcd`).
#[derive(Debug, Clone)]
pub struct EtcdProfile {
    /// One of [`crate::etcd::VOTER_CHOICES`]; without it, by the blade count.
    pub voters: Option<At<usize>>,
    pub heartbeat: At<Millis>,
    pub election: At<Millis>,
    /// The backend's commit interval (`backend-batch-interval`).
    pub batch: At<Millis>,
}

#[derive(Debug, Clone)]
pub struct Boot {
    pub firmware: At<Firmware>,
    pub console: Vec<At<String>>,
    pub kernel_args: Vec<At<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    Uefi,
    Bios,
    Both,
}

impl Firmware {
    pub fn uefi(self) -> bool {
        matches!(self, Firmware::Uefi | Firmware::Both)
    }

    pub fn bios(self) -> bool {
        matches!(self, Firmware::Bios | Firmware::Both)
    }
}

/// `[admin]`: who may log in to every blade.
#[derive(Debug, Clone, Default)]
pub struct Admin {
    /// OpenSSH public key lines (`TYPE BASE64 [COMMENT]`) that root's
    /// `authorized_keys` holds on every node.
    pub ssh_keys: Vec<At<String>>,
}

#[derive(Debug, Clone)]
pub struct Image {
    /// The host image profile, relative to the cluster profile's folder.
    pub host: At<String>,
    /// Overlay folders rendered per node, relative to the profile's folder.
    pub overlays: Vec<At<String>>,
}

/// What the profile may look at outside its own text: whether the files it
/// names exist. Keeps parsing pure and testable.
pub trait Env {
    fn is_file(&self, path: &Path) -> bool;
    fn is_dir(&self, path: &Path) -> bool;
}

/// The real file system, with relative paths taken from `base`.
#[derive(Debug, Clone)]
pub struct FsEnv {
    pub base: PathBuf,
}

impl Env for FsEnv {
    fn is_file(&self, path: &Path) -> bool {
        self.base.join(path).is_file()
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.base.join(path).is_dir()
    }
}

/// An environment where every named file exists: for reading a profile that
/// was already checked at install time (the node agent, `status`).
#[derive(Debug, Clone, Copy)]
pub struct Trusting;

impl Env for Trusting {
    fn is_file(&self, _: &Path) -> bool {
        true
    }

    fn is_dir(&self, _: &Path) -> bool {
        true
    }
}

/// Defaults, documented in `profiles/README.md`.
pub mod defaults {
    use crate::units::Bytes;

    /// FAT32 needs at least 65,525 clusters (Microsoft's FAT specification);
    /// at 4 KiB clusters, which suit both sector sizes, that is ~257 MiB.
    pub const ESP: Bytes = Bytes::mib(300);
    pub const ESP_MIN: Bytes = Bytes::mib(260);
    pub const META: Bytes = Bytes::mib(256);
    pub const META_MIN: Bytes = Bytes::mib(64);
    pub const ORIGIN: Bytes = Bytes::mib(2048);
    pub const COW: Bytes = Bytes::mib(1024);
    /// A dm-snapshot store needs room for its header and a few chunks.
    pub const COW_MIN: Bytes = Bytes::mib(16);
    pub const SHARED_MIN: Bytes = Bytes::mib(64);
    pub const ISCSI_PORT: u16 = contracts::cmdline::node::DEFAULT_ISCSI_PORT;
    pub const CONSOLE: &str = "ttyS0,115200";
}

impl Profile {
    /// Parses into `rep`; `None` when the structure is too broken to check
    /// further (problems are in `rep` either way).
    pub(crate) fn parse_into(rep: &mut Report<'_>) -> Option<Profile> {
        let source = rep.source();
        let text = source.text();
        let (root, errors) = toml::de::DeTable::parse_recoverable(text);
        if !errors.is_empty() {
            for e in errors {
                let span = e.span().unwrap_or(0..0);
                rep.error(
                    &span,
                    "(syntax)",
                    format!("not valid TOML: {}", e.message()),
                    None,
                );
            }
            return None;
        }
        let top = 0..text.len();
        let root = Tbl::root(root.get_ref(), top.clone());
        root.check_keys(
            rep,
            &[
                "cluster", "network", "nodes", "san", "storage", "services", "boot", "image",
                "admin", "etcd", "vc",
            ],
        );

        let cluster = section(
            rep,
            &root,
            "cluster",
            "add a [cluster] table with name, uuid and domain",
        )
        .and_then(|t| parse_cluster(rep, &t));
        let network = section(
            rep,
            &root,
            "network",
            "add a [network] table with at least `cidr`",
        )
        .and_then(|t| parse_network(rep, &t));
        let nodes = parse_nodes(rep, &root, network.as_ref());
        let san = parse_san(rep, &root);
        let storage = parse_storage(rep, &root);
        let services = parse_services(rep, &root);
        let boot = parse_boot(rep, &root);
        let etcd = parse_etcd(rep, &root);
        let image = section(
            rep,
            &root,
            "image",
            "add an [image] table naming the host image profile",
        )
        .and_then(|t| parse_image(rep, &t));
        let admin = parse_admin(rep, &root);
        let vc = crate::vcpool::parse(rep, &root);

        Some(Profile {
            cluster: cluster?,
            network: network?,
            nodes: nodes?,
            san: san?,
            storage: storage?,
            services: services?,
            boot: boot?,
            image: image?,
            admin: admin?,
            etcd: etcd?,
            vc: vc.ok()?,
            services_span: root.table_span("services").unwrap_or(top.clone()),
            top,
        })
    }
}

fn section<'a, 'i>(
    rep: &mut Report<'_>,
    root: &Tbl<'a, 'i>,
    key: &str,
    help: &str,
) -> Option<Tbl<'a, 'i>> {
    if !root.has(key) {
        root.missing(rep, key, help);
        return None;
    }
    root.table(rep, key)
}

/// An optional section: absent means every key takes its default, which is
/// reported against the whole file.
fn optional<'a, 'i>(
    rep: &mut Report<'_>,
    root: &Tbl<'a, 'i>,
    key: &str,
) -> Result<Option<Tbl<'a, 'i>>, ()> {
    if !root.has(key) {
        return Ok(None);
    }
    root.table(rep, key).map(Some).ok_or(())
}

fn parse_cluster(rep: &mut Report<'_>, t: &Tbl<'_, '_>) -> Option<ClusterId> {
    t.check_keys(rep, &["name", "uuid", "domain"]);
    let name = t.req_string(rep, "name", "a short DNS label, e.g. name = \"demo\"");
    // A bad value is reported and kept, so that the checks after parsing
    // still run and the whole file is reported in one go.
    let name = name.inspect(|n| {
        if let Err(e) = check_label(n, 63) {
            rep.error(
                &n.span,
                &n.key,
                format!("`{}` is not a valid cluster name: {e}", n.value),
                None,
            );
        }
    });
    let uuid = t.req_string(
        rep,
        "uuid",
        "generate one with `uuidgen` and write uuid = \"…\"",
    );
    let uuid = uuid.map(|u| match Uuid::parse_str(&u) {
        Ok(id) if !id.is_nil() => u.with(id),
        Ok(id) => {
            rep.error(
                &u.span,
                &u.key,
                "the nil UUID cannot name a cluster",
                Some("generate one with `uuidgen`".into()),
            );
            u.with(id)
        }
        Err(e) => {
            rep.error(
                &u.span,
                &u.key,
                format!("`{}` is not a UUID: {e}", u.value),
                Some("generate one with `uuidgen`".into()),
            );
            u.with(Uuid::nil())
        }
    });
    let domain = t.req_string(
        rep,
        "domain",
        "the DNS domain of the cluster, e.g. domain = \"cluster.example.org\"",
    );
    let domain = domain.inspect(|d| {
        if let Err(e) = check_domain(d) {
            rep.error(
                &d.span,
                &d.key,
                format!("`{}` is not a valid DNS domain: {e}", d.value),
                None,
            );
        }
    });
    Some(ClusterId {
        name: name?,
        uuid: uuid?,
        domain: domain?,
    })
}

fn parse_network(rep: &mut Report<'_>, t: &Tbl<'_, '_>) -> Option<Network> {
    t.check_keys(rep, &["cidr", "gateway", "vips", "upstream_dns", "extra"]);
    let cidr = t.req_parsed::<Ipv4Net>(
        rep,
        "cidr",
        "the cluster network, e.g. cidr = \"10.77.0.0/24\"",
    );
    let gateway = t.parsed::<Ipv4Addr>(rep, "gateway");
    let vips = addr_list(rep, t, "vips");
    let upstream_dns = addr_list(rep, t, "upstream_dns");
    let mut extra = Vec::new();
    for e in t.array(rep, "extra").unwrap_or_default() {
        let Some(x) = e.table(rep) else {
            continue;
        };
        x.check_keys(rep, &["name", "kind", "cidr", "interface"]);
        let name = x
            .req_string(
                rep,
                "name",
                "a short name nodes use in extra_ips, e.g. name = \"ib\"",
            )
            .and_then(|n| label_ok(rep, n, "network name"));
        let kind = match x.choice(rep, "kind", &["ethernet", "infiniband"]) {
            Some(k) => Some(k.with(if *k == "infiniband" {
                NetKind::Infiniband
            } else {
                NetKind::Ethernet
            })),
            None if !x.has("kind") => {
                Some(At::new(NetKind::Ethernet, x.span(), x.key_path("kind")))
            }
            None => None,
        };
        let ncidr = x.req_parsed::<Ipv4Net>(rep, "cidr", "e.g. cidr = \"192.168.77.0/24\"");
        let iface = x
            .req_string(
                rep,
                "interface",
                "the interface on every node, e.g. interface = \"ib0\"",
            )
            .and_then(|i| iface_ok(rep, i));
        // A network with errors is reported and left out.
        if let (Some(name), Some(kind), Some(cidr), Some(interface)) = (name, kind, ncidr, iface) {
            extra.push(ExtraNetwork {
                name,
                kind,
                cidr,
                interface,
            });
        }
    }
    Some(Network {
        cidr: cidr?,
        gateway,
        vips,
        upstream_dns,
        extra,
        vips_written: t.has("vips"),
    })
}

/// The valid addresses of an array; bad ones are reported and left out.
fn addr_list(rep: &mut Report<'_>, t: &Tbl<'_, '_>, key: &str) -> Vec<At<Ipv4Addr>> {
    if !t.has(key) {
        return Vec::new();
    }
    let elems = t.array(rep, key).unwrap_or_default();
    elems
        .iter()
        .filter_map(|e| e.parsed::<Ipv4Addr>(rep))
        .collect()
}

fn label_ok(rep: &mut Report<'_>, s: At<String>, what: &str) -> Option<At<String>> {
    match check_label(&s, 63) {
        Ok(()) => Some(s),
        Err(e) => {
            rep.error(
                &s.span,
                &s.key,
                format!("`{}` is not a valid {what}: {e}", s.value),
                None,
            );
            None
        }
    }
}

/// Interface names: what Linux accepts (IFNAMSIZ is 16 with the NUL).
fn iface_ok(rep: &mut Report<'_>, s: At<String>) -> Option<At<String>> {
    let ok = !s.is_empty()
        && s.len() < 16
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-');
    if ok {
        Some(s)
    } else {
        rep.error(
            &s.span,
            &s.key,
            format!("`{}` is not an interface name", s.value),
            Some("1 to 15 letters, digits, `.`, `_` or `-`, e.g. \"eth0\" or \"ib0\"".into()),
        );
        None
    }
}

/// One `[[nodes]]` entry or override: the fields that count up in a range.
struct NodeFields {
    macs: Vec<At<MacAddr>>,
    ip: Option<At<Ipv4Addr>>,
    extra_ips: Vec<(String, At<Ipv4Addr>)>,
}

fn node_fields(rep: &mut Report<'_>, t: &Tbl<'_, '_>, need: bool) -> Option<NodeFields> {
    let mut ok = true;
    let macs = if t.has("mac") {
        let list = t.strings(rep, "mac").unwrap_or_default();
        let n = list.len();
        let parsed: Vec<_> = list
            .into_iter()
            .filter_map(|s| match s.value.parse::<MacAddr>() {
                Ok(m) if m.is_multicast() => {
                    rep.error(
                        &s.span,
                        &s.key,
                        format!("{m} is a multicast address, which no NIC has"),
                        None,
                    );
                    None
                }
                Ok(m) => Some(s.with(m)),
                Err(e) => {
                    rep.error(&s.span, &s.key, e.to_string(), None);
                    None
                }
            })
            .collect();
        if parsed.len() != n || n == 0 {
            if n == 0 {
                rep.error(
                    &t.span(),
                    &t.key_path("mac"),
                    "the MAC list is empty",
                    Some("give at least one MAC".into()),
                );
            }
            ok = false;
        }
        parsed
    } else {
        if need {
            t.missing(
                rep,
                "mac",
                "the MAC address of the node's boot NIC, e.g. mac = \"52:54:00:77:00:01\"",
            );
            ok = false;
        }
        Vec::new()
    };
    let ip = if need {
        t.req_parsed::<Ipv4Addr>(
            rep,
            "ip",
            "the node's address on the cluster network, e.g. ip = \"10.77.0.11\"",
        )
    } else {
        t.parsed::<Ipv4Addr>(rep, "ip")
    };
    if t.has("ip") && ip.is_none() || need && ip.is_none() {
        ok = false;
    }
    let mut extra_ips = Vec::new();
    if t.has("extra_ips") {
        match t.table(rep, "extra_ips") {
            Some(x) => {
                for (k, _) in x.entries() {
                    match x.parsed::<Ipv4Addr>(rep, &k.value) {
                        Some(a) => extra_ips.push((k.value.clone(), a)),
                        None => ok = false,
                    }
                }
            }
            None => ok = false,
        }
    }
    ok.then_some(NodeFields {
        macs,
        ip,
        extra_ips,
    })
}

fn parse_nodes(
    rep: &mut Report<'_>,
    root: &Tbl<'_, '_>,
    network: Option<&Network>,
) -> Option<Vec<Node>> {
    if !root.has("nodes") {
        root.missing(
            rep,
            "nodes",
            "add [[nodes]] entries, e.g. name = \"blade[01-04]\", mac = \"…\", ip = \"…\"",
        );
        return None;
    }
    let entries = root.array(rep, "nodes")?;
    if entries.is_empty() {
        rep.error(
            &root.span(),
            "nodes",
            "the cluster has no nodes",
            Some("add at least one [[nodes]] entry".into()),
        );
        return None;
    }
    // An entry with errors is reported and left out; the others are still
    // checked against each other.
    let mut nodes = Vec::new();
    for (entry, e) in entries.iter().enumerate() {
        if let Some(t) = e.table(rep)
            && let Some(mut n) = parse_node_entry(rep, &t, entry, network)
        {
            nodes.append(&mut n);
        }
    }
    Some(nodes)
}

/// The `cow` and `swap` sizes of one `[[nodes]]` entry, when it sets them.
fn node_sizes(rep: &mut Report<'_>, t: &Tbl<'_, '_>) -> NodeSizes {
    let one = |rep: &mut Report<'_>, key: &str| {
        t.has(key)
            .then(|| size(rep, Some(t), "nodes", key, Bytes::ZERO, &t.span()))
            .flatten()
    };
    NodeSizes {
        cow: one(rep, "cow"),
        swap: one(rep, "swap"),
    }
}

fn parse_node_entry(
    rep: &mut Report<'_>,
    t: &Tbl<'_, '_>,
    entry: usize,
    network: Option<&Network>,
) -> Option<Vec<Node>> {
    t.check_keys(
        rep,
        &["name", "mac", "ip", "extra_ips", "overrides", "cow", "swap"],
    );
    let sizes = node_sizes(rep, t);
    let name = t.req_string(
        rep,
        "name",
        "a host name such as \"blade01\", or a range such as \"blade[01-16]\"",
    );
    let fields = node_fields(rep, t, true);
    if let (Some(f), Some(net)) = (&fields, network) {
        for (k, a) in &f.extra_ips {
            if !net.extra.iter().any(|x| *x.name == *k) {
                let known: Vec<_> = net.extra.iter().map(|x| x.name.value.as_str()).collect();
                rep.error(
                    &a.span,
                    &a.key,
                    format!("there is no extra network named `{k}`"),
                    Some(if known.is_empty() {
                        "declare it under [[network.extra]] first".to_owned()
                    } else {
                        format!("known extra networks: {}", known.join(", "))
                    }),
                );
            }
        }
    }
    let name = name?;
    let range = match NameRange::parse(&name) {
        Ok(r) => r,
        Err(e) => {
            rep.error(
                &name.span,
                &name.key,
                format!("`{}` is not a node range: {e}", name.value),
                None,
            );
            return None;
        }
    };
    let fields = fields?;
    let Some(range) = range else {
        if t.has("overrides") {
            rep.error(
                &t.span(),
                &t.key_path("overrides"),
                "overrides belong to a node range; this entry names one node",
                Some("set mac and ip on the entry itself".into()),
            );
            return None;
        }
        let node_name = node_name_ok(rep, &name, &name.value)?;
        let ip = fields.ip?;
        return Some(vec![Node {
            name: node_name,
            macs: fields.macs,
            ip,
            extra_ips: fields.extra_ips,
            entry,
            range: None,
            sizes,
        }]);
    };

    // A range: the counters are start values; each node adds its index.
    let count = range.len();
    if count > 100_000 {
        rep.error(
            &name.span,
            &name.key,
            format!("the range holds {count} nodes"),
            Some("ranges are limited to 100000 nodes".into()),
        );
        return None;
    }
    let mut overrides = Vec::new();
    if t.has("overrides") {
        let ot = t.table(rep, "overrides")?;
        let all: std::collections::HashMap<String, u64> =
            (0..count).map(|i| (range.name(i), i)).collect();
        for (k, v) in ot.entries() {
            let Some(ov) = as_table(rep, &k, v) else {
                continue;
            };
            ov.check_keys(rep, &["mac", "ip", "extra_ips"]);
            let Some(&i) = all.get(&k.value) else {
                rep.error(
                    &k.span,
                    &k.key,
                    format!("`{}` is not in the range {}", k.value, name.value),
                    Some(format!(
                        "the range names {} to {}",
                        range.name(0),
                        range.name(count - 1)
                    )),
                );
                continue;
            };
            if let Some(f) = node_fields(rep, &ov, false) {
                overrides.push((i, f));
            }
        }
    }
    let ip = fields.ip?;
    let mut out = Vec::with_capacity(count as usize);
    let mut ok = true;
    for i in 0..count {
        let n = range.name(i);
        let Some(node_name) = node_name_ok(rep, &name, &n) else {
            // One bad generated name means they all are; say it once.
            return None;
        };
        let ov = overrides.iter().find(|(j, _)| *j == i).map(|(_, f)| f);
        let macs = match ov.filter(|f| !f.macs.is_empty()) {
            Some(f) => f.macs.clone(),
            None => {
                let mut v = Vec::with_capacity(fields.macs.len());
                for m in &fields.macs {
                    match m.offset(i) {
                        Some(x) => v.push(m.with(x)),
                        None => {
                            rep.error(
                                &m.span,
                                &m.key,
                                format!(
                                    "counting up from {} runs past ff:ff:ff:ff:ff:ff at {n}",
                                    m.value
                                ),
                                None,
                            );
                            ok = false;
                        }
                    }
                }
                v
            }
        };
        let node_ip = match ov.and_then(|f| f.ip.clone()) {
            Some(a) => a,
            None => match ipv4_add(*ip, i) {
                Some(a) => ip.with(a),
                None => {
                    rep.error(
                        &ip.span,
                        &ip.key,
                        format!("counting up from {} overflows at {n}", ip.value),
                        None,
                    );
                    return None;
                }
            },
        };
        let mut extra_ips = Vec::new();
        for (k, a) in &fields.extra_ips {
            let over = ov
                .and_then(|f| f.extra_ips.iter().find(|(k2, _)| k2 == k))
                .map(|(_, a)| a.clone());
            let addr = match over {
                Some(a) => a,
                None => match ipv4_add(a.value, i) {
                    Some(x) => a.with(x),
                    None => {
                        rep.error(
                            &a.span,
                            &a.key,
                            format!("counting up from {} overflows at {n}", a.value),
                            None,
                        );
                        return None;
                    }
                },
            };
            extra_ips.push((k.clone(), addr));
        }
        if let Some(f) = ov {
            for (k, a) in &f.extra_ips {
                if !fields.extra_ips.iter().any(|(k2, _)| k2 == k) {
                    extra_ips.push((k.clone(), a.clone()));
                }
            }
        }
        out.push(Node {
            name: node_name,
            macs,
            ip: node_ip,
            extra_ips,
            entry,
            range: Some(name.value.clone()),
            sizes: sizes.clone(),
        });
    }
    ok.then_some(out)
}

fn node_name_ok(rep: &mut Report<'_>, at: &At<String>, name: &str) -> Option<At<NodeName>> {
    match name.parse::<NodeName>() {
        Ok(n) => Some(at.with(n)),
        Err(e) => {
            rep.error(&at.span, &at.key, e.to_string(), Some(format!(
                "node names are host names of at most {} lower-case letters, digits and inner hyphens",
                crate::name::MAX_NODE_NAME
            )));
            None
        }
    }
}

fn size(
    rep: &mut Report<'_>,
    t: Option<&Tbl<'_, '_>>,
    section: &str,
    key: &str,
    default: Bytes,
    top: &Span,
) -> Option<At<Bytes>> {
    let Some(t) = t.filter(|t| t.has(key)) else {
        let span = t.map_or(top.clone(), |t| t.span());
        return Some(At::new(default, span, crate::read::join(section, key)));
    };
    if let Some(n) = t.peek_integer(key) {
        return match u64::try_from(n.value) {
            Ok(v) => Some(n.with(Bytes(v))),
            Err(_) => {
                rep.error(&n.span, &n.key, "a size cannot be negative", None);
                None
            }
        };
    }
    t.parsed::<Bytes>(rep, key)
}

fn parse_san(rep: &mut Report<'_>, root: &Tbl<'_, '_>) -> Option<San> {
    let top = root.span();
    let t = optional(rep, root, "san").ok()?;
    let t = t.as_ref();
    if let Some(t) = t {
        t.check_keys(
            rep,
            &["transport", "sector_size", "layout", "size", "iscsi"],
        );
    }
    let default = |k: &str| At::new((), t.map_or(top.clone(), |t| t.span()), format!("san.{k}"));

    let transport_name = match t.filter(|t| t.has("transport")) {
        Some(t) => t.choice(rep, "transport", &["disk", "iscsi"]),
        None => Some(default("transport").with("disk".to_owned())),
    };
    let iscsi = match t.filter(|t| t.has("iscsi")) {
        Some(t) => t.table(rep, "iscsi").map(Some),
        None => Some(None),
    };
    let transport = match (transport_name, iscsi) {
        (Some(name), Some(None)) if *name == "disk" => Some(name.with(Transport::Disk)),
        (Some(name), Some(Some(it))) if *name == "disk" => {
            rep.error(
                &it.span(),
                it.path(),
                "[san.iscsi] is set but san.transport is \"disk\"",
                Some("set transport = \"iscsi\" or remove [san.iscsi]".into()),
            );
            None
        }
        (Some(name), Some(None)) => {
            rep.error(
                &name.span,
                &name.key,
                "transport \"iscsi\" needs a [san.iscsi] table",
                Some("give storage_ip, sif, sifip and ivid under [san.iscsi]".into()),
            );
            None
        }
        (Some(name), Some(Some(it))) => {
            parse_iscsi(rep, &it).map(|i| name.with(Transport::Iscsi(i)))
        }
        _ => None,
    };

    let sector_size = match t.filter(|t| t.has("sector_size")) {
        Some(t) => t.integer(rep, "sector_size").and_then(|n| match n.value {
            512 => Some(n.with(SectorSize::B512)),
            4096 => Some(n.with(SectorSize::B4096)),
            other => {
                rep.error(
                    &n.span,
                    &n.key,
                    format!("sector size {other} is not supported"),
                    Some("use 512 or 4096".into()),
                );
                None
            }
        }),
        None => Some(default("sector_size").with(SectorSize::B512)),
    };
    let layout = match t.filter(|t| t.has("layout")) {
        Some(t) => t.choice(rep, "layout", &["gpt", "pool"]).map(|l| {
            l.with(if *l == "pool" {
                Layout::Pool
            } else {
                Layout::Gpt
            })
        }),
        None => Some(default("layout").with(Layout::Gpt)),
    };
    let size = match t.filter(|t| t.has("size")) {
        Some(_) => size(rep, t, "san", "size", Bytes::ZERO, &top),
        None => None,
    };
    // Bad values were reported; defaults stand in so that checks go on.
    Some(San {
        transport: transport.unwrap_or_else(|| default("transport").with(Transport::Disk)),
        sector_size: sector_size.unwrap_or_else(|| default("sector_size").with(SectorSize::B512)),
        layout: layout.unwrap_or_else(|| default("layout").with(Layout::Gpt)),
        size,
    })
}

fn parse_iscsi(rep: &mut Report<'_>, t: &Tbl<'_, '_>) -> Option<Iscsi> {
    t.check_keys(
        rep,
        &[
            "storage_ip",
            "storage_port",
            "sif",
            "sifip",
            "sifnm",
            "sifm",
            "ivid",
        ],
    );
    let storage_ip = t.req_parsed::<Ipv4Addr>(
        rep,
        "storage_ip",
        "the iSCSI portal address, e.g. storage_ip = \"192.168.77.250\"",
    );
    let port = match t.integer(rep, "storage_port") {
        Some(p) if (1..=65535).contains(&p.value) => Some(p.value as u16),
        Some(p) => {
            rep.error(
                &p.span,
                &p.key,
                format!("port {} is out of range", p.value),
                Some("use 1 to 65535; iSCSI's port is 3260".into()),
            );
            None
        }
        None if t.has("storage_port") => None,
        None => Some(defaults::ISCSI_PORT),
    };
    let sif = t
        .req_string(
            rep,
            "sif",
            "the storage interface, e.g. sif = \"eth0\" or \"ib0\"",
        )
        .and_then(|s| iface_ok(rep, s));
    let sifip = match t.string(rep, "sifip") {
        Some(s)
            if *s == "dhcp"
                || *s == contracts::cmdline::iscsi::SIFIP_IBFT
                || s.parse::<Ipv4Addr>().is_ok() =>
        {
            Some(s.value)
        }
        Some(s) => {
            rep.error(
                &s.span,
                &s.key,
                format!(
                    "`{}` is neither \"dhcp\", \"ibft\" nor an IPv4 address",
                    s.value
                ),
                Some(
                    "\"ibft\": each blade's boot ROM stores its address and the target \
                     (the cold start from the target)"
                        .into(),
                ),
            );
            None
        }
        None if t.has("sifip") => None,
        None => Some("dhcp".to_owned()),
    };
    let sifnm = t.parsed::<Ipv4Addr>(rep, "sifnm");
    let sifnm_ok = !t.has("sifnm") || sifnm.is_some();
    let mut sifm = Vec::new();
    let mut sifm_ok = true;
    for m in t.strings(rep, "sifm").unwrap_or_default() {
        if m.is_empty() || m.contains(|c: char| c.is_whitespace() || c == ',' || c == '/') {
            rep.error(
                &m.span,
                &m.key,
                format!("`{}` is not a module name", m.value),
                None,
            );
            sifm_ok = false;
        } else {
            sifm.push(m.value);
        }
    }
    let ivid = t.req_string(
        rep,
        "ivid",
        "the iSCSI target name, e.g. ivid = \"iqn.2007-01.org.example:vlx\"",
    );
    let ivid = ivid.and_then(|v| {
        if v.is_empty() || v.contains(char::is_whitespace) {
            rep.error(
                &v.span,
                &v.key,
                "the target name must be non-empty and hold no spaces",
                None,
            );
            None
        } else {
            Some(v.value)
        }
    });
    if !(sifnm_ok && sifm_ok) {
        return None;
    }
    Some(Iscsi {
        storage_ip: storage_ip?.value,
        storage_port: port?,
        sif: sif?.value,
        sifip: sifip?,
        sifnm: sifnm.map(|a| a.value),
        sifm,
        ivid: ivid?,
    })
}

fn parse_storage(rep: &mut Report<'_>, root: &Tbl<'_, '_>) -> Option<Storage> {
    let top = root.span();
    let t = optional(rep, root, "storage").ok()?;
    let t = t.as_ref();
    if let Some(t) = t {
        t.check_keys(
            rep,
            &[
                "esp",
                "meta",
                "origin",
                "cow",
                "swap",
                "shared",
                "shared_fs",
                "slots",
            ],
        );
    }
    let esp = size(rep, t, "storage", "esp", defaults::ESP, &top);
    let meta = size(rep, t, "storage", "meta", defaults::META, &top);
    let origin = size(rep, t, "storage", "origin", defaults::ORIGIN, &top);
    let cow = size(rep, t, "storage", "cow", defaults::COW, &top);
    let swap = size(rep, t, "storage", "swap", Bytes::ZERO, &top);
    let shared = match t.filter(|t| t.has("shared")) {
        Some(t) if t.peek_string("shared").as_deref() == Some("rest") => {
            t.string(rep, "shared").map(|s| s.with(SharedSize::Rest))
        }
        Some(_) => {
            size(rep, t, "storage", "shared", Bytes::ZERO, &top).map(|s| s.map(SharedSize::Fixed))
        }
        None => Some(At::new(
            SharedSize::Rest,
            t.map_or(top.clone(), |t| t.span()),
            "storage.shared",
        )),
    };
    let shared_fs = match t.filter(|t| t.has("shared_fs")) {
        Some(t) => t.choice(rep, "shared_fs", &["ext4", "ocfs2"]).map(|s| {
            s.with(if *s == "ocfs2" {
                SharedFs::Ocfs2
            } else {
                SharedFs::Ext4
            })
        }),
        None => Some(At::new(
            SharedFs::Ext4,
            t.map_or(top.clone(), |t| t.span()),
            "storage.shared_fs",
        )),
    };
    let slots = t.filter(|t| t.has("slots")).and_then(|t| {
        let n = t.integer(rep, "slots")?;
        match n.value {
            1 | 2 => Some(n.with(n.value as u8)),
            v => {
                rep.error(
                    &n.span,
                    &n.key,
                    format!("{v} origin slots: there are 1 or 2"),
                    Some("slots = 2 for image upgrades with a way back, 1 for one origin".into()),
                );
                None
            }
        }
    });
    // Bad values were reported; defaults stand in so that checks go on.
    let here = t.map_or(top.clone(), |t| t.span());
    let or = |v: Option<At<Bytes>>, key: &str, d: Bytes| {
        v.unwrap_or_else(|| At::new(d, here.clone(), format!("storage.{key}")))
    };
    Some(Storage {
        esp: or(esp, "esp", defaults::ESP),
        meta: or(meta, "meta", defaults::META),
        origin: or(origin, "origin", defaults::ORIGIN),
        cow: or(cow, "cow", defaults::COW),
        swap: or(swap, "swap", Bytes::ZERO),
        shared: shared.unwrap_or_else(|| At::new(SharedSize::Rest, here.clone(), "storage.shared")),
        shared_fs: shared_fs
            .unwrap_or_else(|| At::new(SharedFs::Ext4, here.clone(), "storage.shared_fs")),
        slots: slots.unwrap_or_else(|| At::new(1, here.clone(), "storage.slots")),
    })
}

fn parse_services(rep: &mut Report<'_>, root: &Tbl<'_, '_>) -> Option<Services> {
    let t = optional(rep, root, "services").ok()?;
    let keys = ["dhcp", "boot", "dns", "ntp", "vip", "shared"];
    let mut on = [true; 6];
    if let Some(t) = &t {
        t.check_keys(rep, &keys);
        for (i, k) in keys.iter().enumerate() {
            // A bad value is reported and the service stays on.
            if let Some(b) = t.boolean(rep, k) {
                on[i] = b.value;
            }
        }
    }
    let [dhcp, boot, dns, ntp, vip, shared] = on;
    Some(Services {
        dhcp,
        boot,
        dns,
        ntp,
        vip,
        shared,
    })
}

/// `[etcd]`: every key optional; etcd's own limits are checked here,
/// where the error can point at the key (etcd would only refuse to start).
fn parse_etcd(rep: &mut Report<'_>, root: &Tbl<'_, '_>) -> Option<EtcdProfile> {
    let t = optional(rep, root, "etcd").ok()?;
    let here = t.as_ref().map_or(root.span(), |t| t.span());
    let ms = |rep: &mut Report<'_>, key: &str, d: Millis| -> Option<At<Millis>> {
        let Some(t) = t.as_ref().filter(|t| t.has(key)) else {
            return Some(At::new(d, here.clone(), format!("etcd.{key}")));
        };
        let v = t.integer(rep, key)?;
        match u32::try_from(*v) {
            Ok(n) if n > 0 => Some(v.with(Millis(n))),
            _ => {
                rep.error(
                    &v.span,
                    &v.key,
                    format!("{} is not a time in milliseconds", *v),
                    Some("write a positive whole number of milliseconds".into()),
                );
                None
            }
        }
    };
    if let Some(t) = &t {
        t.check_keys(rep, &["voters", "heartbeat_ms", "election_ms", "batch_ms"]);
    }
    let voters = match t.as_ref().filter(|t| t.has("voters")) {
        None => None,
        Some(t) => {
            let v = t.integer(rep, "voters")?;
            let choices = crate::etcd::VOTER_CHOICES;
            match usize::try_from(*v).ok().filter(|n| choices.contains(n)) {
                Some(n) => Some(v.with(n)),
                None => {
                    rep.error(
                        &v.span,
                        &v.key,
                        format!("{} is not a voter count: write 3, 5 or 7", *v),
                        Some(
                            "an odd count survives as many lost voters as the even one above it, a lone voter is a single point of failure, and every write waits for a majority; without the key, 3 vote below 16 blades and 5 from 16 on"
                                .into(),
                        ),
                    );
                    return None;
                }
            }
        }
    };
    let heartbeat = ms(rep, "heartbeat_ms", etcd_defaults::HEARTBEAT)?;
    let election = ms(rep, "election_ms", etcd_defaults::ELECTION)?;
    let batch = ms(rep, "batch_ms", etcd_defaults::BATCH)?;
    let per = etcd_defaults::ELECTION_PER_HEARTBEAT;
    if election.value.get() < heartbeat.value.get().saturating_mul(per) {
        rep.error(
            &election.span,
            &election.key,
            format!(
                "etcd needs an election timeout of at least {per} heartbeats: {} is less than {per} × {}",
                election.value, heartbeat.value
            ),
            Some(format!(
                "set etcd.election_ms to {} or more, or lower etcd.heartbeat_ms",
                heartbeat.value.get().saturating_mul(per)
            )),
        );
        return None;
    }
    if election.value > etcd_defaults::ELECTION_MAX {
        rep.error(
            &election.span,
            &election.key,
            format!(
                "etcd refuses an election timeout above {}",
                etcd_defaults::ELECTION_MAX
            ),
            None,
        );
        return None;
    }
    Some(EtcdProfile {
        voters,
        heartbeat,
        election,
        batch,
    })
}

fn parse_boot(rep: &mut Report<'_>, root: &Tbl<'_, '_>) -> Option<Boot> {
    let top = root.span();
    let t = optional(rep, root, "boot").ok()?;
    let t = t.as_ref();
    if let Some(t) = t {
        t.check_keys(rep, &["firmware", "console", "kernel_args"]);
    }
    let here = t.map_or(top.clone(), |t| t.span());
    let firmware = match t.filter(|t| t.has("firmware")) {
        Some(t) => t
            .choice(rep, "firmware", &["uefi", "bios", "both"])
            .map(|f| {
                let v = match f.value.as_str() {
                    "uefi" => Firmware::Uefi,
                    "bios" => Firmware::Bios,
                    _ => Firmware::Both,
                };
                f.with(v)
            }),
        None => Some(At::new(Firmware::Both, here.clone(), "boot.firmware")),
    };
    // Bad words are reported and left out.
    let console = match t.filter(|t| t.has("console")) {
        Some(t) => t
            .strings(rep, "console")
            .unwrap_or_default()
            .into_iter()
            .filter(|c| kernel_word_ok(rep, c, "console"))
            .collect(),
        None => vec![At::new(
            defaults::CONSOLE.to_owned(),
            here.clone(),
            "boot.console",
        )],
    };
    let kernel_args = match t.filter(|t| t.has("kernel_args")) {
        Some(t) => t
            .strings(rep, "kernel_args")
            .unwrap_or_default()
            .into_iter()
            .filter(|a| kernel_word_ok(rep, a, "argument"))
            .collect(),
        None => Vec::new(),
    };
    Some(Boot {
        firmware: firmware
            .unwrap_or_else(|| At::new(Firmware::Both, here.clone(), "boot.firmware")),
        console,
        kernel_args,
    })
}

/// A kernel command-line word: no spaces or quotes, and not one of ours.
fn kernel_word_ok(rep: &mut Report<'_>, a: &At<String>, what: &str) -> bool {
    use contracts::cmdline::node;
    if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
        rep.error(
            &a.span,
            &a.key,
            format!("`{}` is not one kernel {what}", a.value),
            Some("give each argument as its own string, without spaces or quotes".into()),
        );
        return false;
    }
    if let Some(v) = a
        .strip_prefix(contracts::cmdline::PREFIX)
        .and_then(|k| k.strip_prefix(node::SAN_WAIT))
        .and_then(|k| k.strip_prefix('='))
        && what == "argument"
    {
        let Err(why) = node::parse_san_wait(v) else {
            return true;
        };
        rep.error(
            &a.span,
            &a.key,
            format!("`{}`: the SAN wait is whole seconds", a.value),
            Some(format!(
                "write vlx.san_wait=N: {why} (the default is {})",
                node::DEFAULT_SAN_WAIT.as_secs()
            )),
        );
        return false;
    }
    if contracts::cmdline::iscsi::is_secret(a) {
        let key = a.split_once('=').map_or(a.as_str(), |(k, _)| k);
        rep.error(
            &a.span,
            &a.key,
            format!("`{key}=` would put a CHAP credential on the kernel command line"),
            Some(contracts::cmdline::iscsi::CHAP_REFUSED.into()),
        );
        return false;
    }
    if contracts::cmdline::is_ours(a) || a.starts_with("console=") && what == "argument" {
        rep.error(
            &a.span,
            &a.key,
            format!("`{}` is set by vlx itself", a.value),
            Some(
                "vlx.* comes from [cluster] and [san] (only vlx.san_wait=SECONDS is yours); \
                 console= from boot.console"
                    .into(),
            ),
        );
        return false;
    }
    true
}

/// The key types OpenSSH's `authorized_keys` takes.
const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

fn parse_admin(rep: &mut Report<'_>, root: &Tbl<'_, '_>) -> Option<Admin> {
    let t = optional(rep, root, "admin").ok()?;
    let Some(t) = t else {
        return Some(Admin::default());
    };
    t.check_keys(rep, &["ssh_keys"]);
    let keys = if t.has("ssh_keys") {
        t.strings(rep, "ssh_keys")?
    } else {
        Vec::new()
    };
    // A bad key is reported and left out.
    let ssh_keys = keys
        .into_iter()
        .filter(|k| match ssh_key_problem(k) {
            None => true,
            Some(why) => {
                rep.error(
                    &k.span,
                    &k.key,
                    format!("not an OpenSSH public key: {why}"),
                    Some(
                        "paste one line of a .pub file: TYPE BASE64 [COMMENT], e.g. \"ssh-ed25519 AAAAC3... admin@desk\""
                            .into(),
                    ),
                );
                false
            }
        })
        .collect();
    Some(Admin { ssh_keys })
}

/// Why `line` is not one OpenSSH public key (`TYPE BASE64 [COMMENT]`).
fn ssh_key_problem(line: &str) -> Option<String> {
    if line.contains(['\n', '\r']) {
        return Some("it spans several lines".into());
    }
    let mut words = line.split_whitespace();
    let kind = words.next().unwrap_or_default();
    if !SSH_KEY_TYPES.contains(&kind) {
        return Some(format!(
            "`{kind}` is not a key type ({})",
            SSH_KEY_TYPES.join(", ")
        ));
    }
    let blob = words.next().unwrap_or_default();
    let b64 = blob.len() >= 16
        && blob.len() % 4 == 0
        && blob
            .trim_end_matches('=')
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    if !b64 {
        return Some("the key is not base64".into());
    }
    None
}

fn parse_image(rep: &mut Report<'_>, t: &Tbl<'_, '_>) -> Option<Image> {
    t.check_keys(rep, &["host", "overlays"]);
    let host = t.req_string(
        rep,
        "host",
        "the host image profile, e.g. host = \"../hosts/tiny.toml\"",
    );
    let overlays = if t.has("overlays") {
        t.strings(rep, "overlays")
    } else {
        Some(Vec::new())
    };
    Some(Image {
        host: host?,
        overlays: overlays?,
    })
}
