//! Semantic checks over a parsed profile: uniqueness, addressing, sizes,
//! partition counts and the files it names. Every check reports into the
//! same [`Report`], so one run shows every problem.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::Hash;
use std::net::Ipv4Addr;
use std::path::Path;

use crate::diag::{At, Report};
use crate::profile::{Env, Layout, Node, Profile, SharedSize, defaults};
use crate::units::Bytes;

/// The most partitions Linux maps from one GPT: `DISK_MAX_PARTS` is 256 minors
/// per disk, the whole disk takes one, and `efi_partition()` in
/// block/partitions/efi.c stops at `state->limit - 1`.
pub const MAX_GPT_PARTITIONS: usize = 255;

pub(crate) fn check(p: &Profile, env: &dyn Env, rep: &mut Report<'_>) {
    check_nodes(p, rep);
    check_addresses(p, rep);
    check_sizes(p, rep);
    check_partition_count(p, rep);
    check_services(p, rep);
    check_boot(p, rep);
    check_paths(p, env, rep);
    check_vc(p, rep);
}

/// The `[vc]` pool overlaps none of the cluster's own networks and holds
/// none of its addresses (gateway, VIPs, upstream DNS): a VC subnet taken
/// from it would shadow them on every blade's routes.
fn check_vc(p: &Profile, rep: &mut Report<'_>) {
    let Some(vc) = &p.vc else {
        return;
    };
    let pool = vc.subnet_pool.value;
    let net = &p.network;
    let mut nets = vec![(net.cidr.key.clone(), net.cidr.value)];
    nets.extend(
        net.extra
            .iter()
            .map(|x| (format!("`{}` ({})", x.name.value, x.cidr.key), x.cidr.value)),
    );
    for (what, n) in nets {
        if crate::vcpool::overlaps(pool, n) {
            rep.error(
                &vc.subnet_pool.span,
                &vc.subnet_pool.key,
                format!("the VC subnet pool {pool} overlaps the cluster network {what} ({n})"),
                Some("VC subnets need a range of their own: pick a pool outside every cluster network".into()),
            );
        }
    }
    let addrs = net
        .gateway
        .iter()
        .chain(net.vips.iter())
        .chain(net.upstream_dns.iter());
    for a in addrs {
        if pool.contains(a.value) {
            rep.error(
                &vc.subnet_pool.span,
                &vc.subnet_pool.key,
                format!(
                    "the VC subnet pool {pool} holds the cluster's address {} ({})",
                    a.value, a.key
                ),
                Some("VC subnets need a range of their own: pick a pool outside the cluster's addresses".into()),
            );
        }
    }
}

/// BIOS boot reads the ESP with syslinux, which reads no FAT of 4096-byte
/// sectors (its installer says "unsupported sectors size"); SeaBIOS and
/// most BIOSes cannot read such disks at all.
fn check_boot(p: &Profile, rep: &mut Report<'_>) {
    let fw = &p.boot.firmware;
    if fw.bios() && p.san.sector_size.value == crate::units::SectorSize::B4096 {
        rep.error(
            &fw.span,
            &fw.key,
            "BIOS boot needs 512-byte sectors, but san.sector_size is 4096",
            Some("set firmware = \"uefi\" under [boot] (the default is \"both\"), or use 512-byte sectors".into()),
        );
    }
}

/// Where a node came from, for "already used by" messages.
fn origin(rep: &Report<'_>, n: &Node) -> String {
    let (line, _) = rep.source().line_col(n.name.span.start);
    match &n.range {
        Some(r) => format!("{} (from range {r}, line {line})", n.name.value),
        None => format!("{} (line {line})", n.name.value),
    }
}

/// The entry a node came from: "range b[1-4] (line 12)" or "the entry on line 12".
fn entry_of(rep: &Report<'_>, n: &Node) -> String {
    let (line, _) = rep.source().line_col(n.name.span.start);
    match &n.range {
        Some(r) => format!("range {r} (line {line})"),
        None => format!("the entry on line {line}"),
    }
}

/// Records `what` as a duplicate when `key` was seen before; `first` says who
/// had it.
fn unique<K: Eq + Hash, T>(
    seen: &mut HashMap<K, usize>,
    key: K,
    idx: usize,
    at: &At<T>,
    rep: &mut Report<'_>,
    message: impl FnOnce(&Report<'_>, usize) -> (String, Option<String>),
) {
    match seen.entry(key) {
        Entry::Vacant(v) => {
            v.insert(idx);
        }
        Entry::Occupied(o) => {
            let (msg, help) = message(rep, *o.get());
            rep.error(&at.span, &at.key, msg, help);
        }
    }
}

fn check_nodes(p: &Profile, rep: &mut Report<'_>) {
    let mut names: HashMap<crate::name::NodeName, usize> = HashMap::new();
    let mut macs = HashMap::new();
    let mut reported_entries = std::collections::HashSet::new();
    for (i, n) in p.nodes.iter().enumerate() {
        let nodes = &p.nodes;
        if names.contains_key(&n.name.value) {
            let first = &nodes[names[&n.name.value]];
            let overlap = first.entry != n.entry && (first.range.is_some() || n.range.is_some());
            let msg = if overlap {
                format!(
                    "overlapping ranges: {} is also named by {}",
                    n.name.value,
                    entry_of(rep, first)
                )
            } else {
                format!(
                    "duplicate node name {}, already used by {}",
                    n.name.value,
                    origin(rep, first)
                )
            };
            rep.error(
                &n.name.span,
                &n.name.key,
                msg,
                Some("every node needs its own name".into()),
            );
            // A node named twice would repeat every other complaint too.
            continue;
        }
        names.insert(n.name.value.clone(), i);
        for m in &n.macs {
            if let Some(why) = not_a_nic(m.value) {
                // A range counts up from its first MAC: say it once, at the
                // first member that goes wrong.
                if reported_entries.insert((n.entry, m.key.clone())) {
                    let derived = match &n.range {
                        Some(r) => format!("{} of range {r} gets MAC {}", n.name.value, m.value),
                        None => format!("{} has MAC {}", n.name.value, m.value),
                    };
                    rep.error(
                        &m.span,
                        &m.key,
                        format!("{derived}, {why}"),
                        Some(
                            "start the range where every member is a unicast address, e.g. a locally administered 52:54:00:xx:xx:xx"
                                .into(),
                        ),
                    );
                }
                continue;
            }
            unique(&mut macs, m.value, i, m, rep, |rep, j| {
                (
                    format!(
                        "duplicate MAC {} on {}, already used by {}",
                        m.value,
                        n.name.value,
                        origin(rep, &nodes[j])
                    ),
                    Some("every NIC has its own MAC; nodes are told apart by them at boot".into()),
                )
            });
        }
    }
}

/// The longest prefix whose network holds `hosts` host addresses besides
/// its network and broadcast addresses.
fn prefix_for(hosts: usize) -> u8 {
    (1..=30u8)
        .rev()
        .find(|p| (1u64 << (32 - u32::from(*p))) - 2 >= hosts as u64)
        .unwrap_or(1)
}

/// Why a MAC can be no NIC's: all zeros (a placeholder, which DHCP and the
/// node agent cannot tell from no address) or a group address (multicast,
/// broadcast included).
fn not_a_nic(m: crate::net::MacAddr) -> Option<&'static str> {
    if m.0 == [0; 6] {
        Some("the all-zero address, which no NIC has")
    } else if m.is_multicast() {
        Some("a multicast address (the low bit of its first octet is set), which no NIC has")
    } else {
        None
    }
}

fn check_addresses(p: &Profile, rep: &mut Report<'_>) {
    let net = &p.network;
    let cidr = net.cidr.value;
    // A /31 or /32 is a point-to-point link (RFC 3021) without a broadcast
    // address: no DHCP broadcast, no VRRP for the VIP, and no room for a
    // cluster. The other checks would only complain about each address.
    if cidr.prefix() > 30 {
        let need = p.nodes.len() + net.vips.len() + usize::from(net.gateway.is_some());
        rep.error(
            &net.cidr.span,
            &net.cidr.key,
            format!(
                "{cidr} is a point-to-point network without a broadcast address; the cluster needs a LAN for {need} addresses ({} nodes, {} VIPs{}) with DHCP and VRRP",
                p.nodes.len(),
                net.vips.len(),
                if net.gateway.is_some() { ", a gateway" } else { "" }
            ),
            Some(format!("use a prefix of /{} or shorter", prefix_for(need))),
        );
        return;
    }
    let need = p.nodes.len() + net.vips.len() + usize::from(net.gateway.is_some());
    if need as u64 > cidr.host_count() {
        rep.error(
            &net.cidr.span,
            &net.cidr.key,
            format!(
                "{cidr} has {} host addresses, but the cluster needs {need} ({} nodes, {} VIPs{})",
                cidr.host_count(),
                p.nodes.len(),
                net.vips.len(),
                if net.gateway.is_some() {
                    ", a gateway"
                } else {
                    ""
                }
            ),
            Some(format!("use a prefix of /{} or shorter", prefix_for(need))),
        );
    }
    let host_help = || {
        let (first, last) = if cidr.prefix() >= 31 {
            (cidr.network(), cidr.broadcast())
        } else {
            (
                Ipv4Addr::from(u32::from(cidr.network()) + 1),
                Ipv4Addr::from(u32::from(cidr.broadcast()) - 1),
            )
        };
        Some(format!("use an address from {first} to {last}"))
    };
    let in_net = |rep: &mut Report<'_>, a: &At<Ipv4Addr>, what: &str| -> bool {
        if cidr.is_host(a.value) {
            return true;
        }
        let why = if cidr.contains(a.value) {
            "is the network or broadcast address of"
        } else {
            "is outside"
        };
        rep.error(
            &a.span,
            &a.key,
            format!("{what} {} {why} the cluster network {cidr}", a.value),
            host_help(),
        );
        false
    };

    // Every address used on the cluster network, for clashes between kinds.
    let mut used: HashMap<Ipv4Addr, String> = HashMap::new();
    if let Some(g) = &net.gateway {
        in_net(rep, g, "gateway");
        used.insert(g.value, "the gateway".into());
    }
    let mut ips = HashMap::new();
    for (i, n) in p.nodes.iter().enumerate() {
        let what = format!("{}'s address", n.name.value);
        if !in_net(rep, &n.ip, &what) {
            continue;
        }
        if let Some(g) = net.gateway.as_ref().filter(|g| g.value == n.ip.value) {
            rep.error(
                &n.ip.span,
                &n.ip.key,
                format!("{} is the gateway address", what),
                Some(format!("the gateway {} belongs to a router", g.value)),
            );
            continue;
        }
        unique(&mut ips, n.ip.value, i, &n.ip, rep, |rep, j| {
            (
                format!(
                    "duplicate IP {} on {}, already used by {}",
                    n.ip.value,
                    n.name.value,
                    origin(rep, &p.nodes[j])
                ),
                Some("every node needs its own address".into()),
            )
        });
        used.entry(n.ip.value)
            .or_insert_with(|| n.name.value.to_string());
    }
    let mut vips = HashMap::new();
    for (i, v) in net.vips.iter().enumerate() {
        if !in_net(rep, v, "VIP") {
            continue;
        }
        if let Some(owner) = used.get(&v.value) {
            rep.error(
                &v.span,
                &v.key,
                format!("VIP {} is also the address of {owner}", v.value),
                Some("a VIP moves between nodes; give it an address no node or router has".into()),
            );
            continue;
        }
        unique(&mut vips, v.value, i, v, rep, |_, _| {
            (format!("VIP {} is listed twice", v.value), None)
        });
    }
    if net.vips.len() > 255 {
        rep.error(
            &net.cidr.span,
            "network.vips",
            "more than 255 VIPs",
            Some("VRRP has 255 router ids per network".into()),
        );
    }

    // Extra networks: names unique, no overlap with the cluster network, and
    // each node address inside its network and unique there.
    let mut xnames = HashMap::new();
    for (i, x) in net.extra.iter().enumerate() {
        unique(
            &mut xnames,
            x.name.value.clone(),
            i,
            &x.name,
            rep,
            |_, _| {
                (
                    format!("extra network `{}` is declared twice", x.name.value),
                    None,
                )
            },
        );
        let (a, b) = (x.cidr.value, cidr);
        if a.contains(b.network()) || b.contains(a.network()) {
            rep.error(
                &x.cidr.span,
                &x.cidr.key,
                format!("{a} overlaps the cluster network {b}"),
                Some("each network needs its own address range".into()),
            );
        }
    }
    for x in &net.extra {
        let mut seen = HashMap::new();
        for (i, n) in p.nodes.iter().enumerate() {
            for (_, a) in n.extra_ips.iter().filter(|(k, _)| *k == *x.name) {
                if !x.cidr.is_host(a.value) {
                    rep.error(
                        &a.span,
                        &a.key,
                        format!(
                            "{}'s address {} is not a host address in network `{}` ({})",
                            n.name.value, a.value, x.name.value, x.cidr.value
                        ),
                        None,
                    );
                    continue;
                }
                unique(&mut seen, a.value, i, a, rep, |rep, j| {
                    (
                        format!(
                            "duplicate IP {} on {} in network `{}`, already used by {}",
                            a.value,
                            n.name.value,
                            x.name.value,
                            origin(rep, &p.nodes[j])
                        ),
                        None,
                    )
                });
            }
        }
    }
}

/// Every size with a lower bound: the value, the bound, and why.
fn size_floors(p: &Profile) -> Vec<(At<Bytes>, Bytes, &'static str)> {
    let s = &p.storage;
    let mut out = vec![
        (
            s.esp.clone(),
            defaults::ESP_MIN,
            "the ESP is FAT32, which needs 65525 clusters of 4 KiB",
        ),
        (
            s.meta.clone(),
            defaults::META_MIN,
            "the meta volume holds the boot tree and every node's configuration",
        ),
        (
            s.origin.clone(),
            Bytes::mib(16),
            "the origin holds the whole host image",
        ),
        (
            s.cow.clone(),
            defaults::COW_MIN,
            "a snapshot store needs its header and room for changed chunks",
        ),
    ];
    if s.swap.value != Bytes::ZERO {
        out.push((
            s.swap.clone(),
            Bytes::mib(1),
            "mkswap needs at least ten pages",
        ));
    }
    if let SharedSize::Fixed(b) = s.shared.value {
        out.push((
            s.shared.with(b),
            defaults::SHARED_MIN,
            "the shared volume holds an ext4 file system",
        ));
    }
    if let Some(size) = &p.san.size {
        out.push((
            size.clone(),
            Bytes::mib(64),
            "the SAN must hold the whole layout",
        ));
    }
    out
}

fn check_sizes(p: &Profile, rep: &mut Report<'_>) {
    for (v, min, why) in size_floors(p) {
        if v.value < min {
            rep.error(
                &v.span,
                &v.key,
                format!("{} is too small: {why}", v.value),
                Some(format!("use at least {min}")),
            );
        }
    }
}

/// Whether a size is below its bound (which the validation reports): then
/// no layout is placed, whose "does not fit" would only contradict it.
pub(crate) fn a_size_is_too_small(p: &Profile) -> bool {
    size_floors(p).iter().any(|(v, min, _)| v.value < *min)
}

/// How many GPT partitions the profile needs.
pub fn partition_count(p: &Profile) -> usize {
    let fixed = 3 + usize::from(p.storage.slots.value == 2) + usize::from(p.services.shared);
    match p.san.layout.value {
        Layout::Gpt => {
            fixed
                + p.nodes
                    .iter()
                    .map(|n| 1 + usize::from(n.swap(&p.storage).value != Bytes::ZERO))
                    .sum::<usize>()
        }
        Layout::Pool => fixed + 1,
    }
}

fn check_partition_count(p: &Profile, rep: &mut Report<'_>) {
    let need = partition_count(p);
    if need <= MAX_GPT_PARTITIONS {
        return;
    }
    let fixed = 3 + usize::from(p.storage.slots.value == 2) + usize::from(p.services.shared);
    // Point at the first node that does not fit.
    let mut used = fixed;
    let n = p
        .nodes
        .iter()
        .find(|n| {
            used += 1 + usize::from(n.swap(&p.storage).value != Bytes::ZERO);
            used > MAX_GPT_PARTITIONS
        })
        .unwrap_or(&p.nodes[p.nodes.len() - 1]);
    let swaps = p
        .nodes
        .iter()
        .filter(|n| n.swap(&p.storage).value != Bytes::ZERO)
        .count();
    let with_swap = swaps > 0;
    let per_node = match swaps {
        0 => "1",
        s if s == p.nodes.len() => "2",
        _ => "1 or 2",
    };
    let no_swap_fit = MAX_GPT_PARTITIONS - fixed;
    rep.error(
        &n.name.span,
        &n.name.key,
        format!(
            "{} nodes need {need} partitions ({fixed} fixed, {} per node), but Linux maps at most {MAX_GPT_PARTITIONS} from one GPT; {} is the first node past the limit",
            p.nodes.len(),
            per_node,
            n.name.value
        ),
        Some(format!(
            "set san.layout = \"pool\" to keep every node's store and swap as extents of one vlx-pool partition (the way past the GPT limit){}",
            if with_swap && p.nodes.len() <= no_swap_fit {
                format!(", or set storage.swap = \"0\" to fit up to {no_swap_fit} nodes")
            } else {
                String::new()
            }
        )),
    );
}

fn check_services(p: &Profile, rep: &mut Report<'_>) {
    let sv = &p.services;
    if sv.vip && !p.network.vips_written {
        rep.error(
            &p.network.cidr.span,
            "network.vips",
            "services.vip is on but the cluster has no VIP",
            Some("add vips = [\"…\"] to [network], or set vip = false under [services]".into()),
        );
    }
    if sv.shared && !sv.vip {
        rep.error(
            &p.services_span,
            "services.shared",
            "the shared volume is exported by the VIP holder, but services.vip is off",
            Some("turn services.vip on, or set shared = false under [services]".into()),
        );
    }
    if sv.boot && !sv.dhcp {
        rep.error(
            &p.services_span,
            "services.boot",
            "network boot needs DHCP, but services.dhcp is off",
            Some("turn services.dhcp on, or set boot = false under [services]".into()),
        );
    }
}

fn check_paths(p: &Profile, env: &dyn Env, rep: &mut Report<'_>) {
    let host = &p.image.host;
    if !env.is_file(Path::new(&host.value)) {
        let what = if env.is_dir(Path::new(&host.value)) {
            "is a folder, not a host image profile (a .toml file)"
        } else {
            "does not exist"
        };
        rep.error(
            &host.span,
            &host.key,
            format!("host image profile `{}` {what}", host.value),
            Some(
                "paths are relative to the cluster profile's folder, e.g. \"../hosts/tiny.toml\""
                    .into(),
            ),
        );
    }
    for o in &p.image.overlays {
        if !env.is_dir(Path::new(&o.value)) {
            let what = if env.is_file(Path::new(&o.value)) {
                "is a file, not a folder"
            } else {
                "does not exist"
            };
            rep.error(&o.span, &o.key, format!("overlay folder `{}` {what}", o.value), Some("paths are relative to the cluster profile's folder, e.g. \"../../overlays/node\"".into()));
        }
    }
}
