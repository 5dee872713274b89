//! Changes of an installed cluster, as plain values.
//!
//! A changed profile is planned twice: fresh, as for a new SAN, then
//! [`rebase`]d onto the plan installed on the SAN, so that every volume that
//! stays keeps its partition number and its sectors, a removed node's
//! volumes become free space, and a new node's volumes go into free space
//! (a hole left by a removed node, or room past the last partition when the
//! LUN has grown). [`diff`] then says what differs between the installed
//! plan and the rebased one: nodes, partitions, the disk's size and the
//! cluster-wide settings the nodes' configurations are rendered from.
//!
//! What cannot change in place is refused, naming the profile key: the
//! sector size, the layout, the sizes of the ESP, the meta volume and the
//! origin, the size of a kept node's snapshot store or swap, and the shared
//! volume (its size, or whether there is one). With `shared = "rest"` the
//! shared volume keeps the size it was installed with: it is a file system
//! in use, never moved or resized here.
//!
//! Both functions are pure: the same inputs give the same plan and diff.

use std::net::Ipv4Addr;

use serde::Serialize;

use crate::layout::{DiskLayout, ENTRY_SIZE, Partition, Role};
use crate::plan::{NodePlan, Plan};
use crate::profile::{Layout, Profile, SharedSize};
use crate::units::{Bytes, Lba, MIB};

/// A change that cannot be made in place, with the profile key that asks
/// for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refused {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

fn refused(key: &str, message: String) -> Refused {
    Refused {
        key: key.into(),
        message,
    }
}

/// The plan `fresh` (made from `profile` for the SAN as it is now) laid
/// onto the SAN that holds `installed`: kept volumes stay where they are,
/// new ones go into free space, first fit in plan order. Every change that
/// cannot be made in place comes back, each naming its key.
///
/// Rebasing is idempotent: rebasing the same profile onto the result gives
/// the result again, so a rerun after a crash plans the same change.
pub fn rebase(profile: &Profile, fresh: Plan, installed: &Plan) -> Result<Plan, Vec<Refused>> {
    let mut out = Vec::new();
    let (old, new) = (&installed.disk, &fresh.disk);
    if old.sector_size != new.sector_size {
        out.push(refused(
            "san.sector_size",
            format!(
                "the SAN was installed with {}-byte sectors, the profile says {}",
                old.sector_size, new.sector_size
            ),
        ));
    }
    if installed.san.layout != fresh.san.layout {
        out.push(refused(
            "san.layout",
            format!(
                "the SAN was installed with layout {:?}, the profile says {:?}",
                installed.san.layout, fresh.san.layout
            ),
        ));
    } else if fresh.san.layout != Layout::Gpt && new != old {
        // A profile whose disk is laid out as installed (a rerun, or a
        // change of settings only) needs no volume moved in any layout.
        out.push(refused(
            "san.layout",
            "changes of volumes in place are made only in the gpt layout".into(),
        ));
    }
    if installed.san.shared_fs != fresh.san.shared_fs {
        out.push(refused(
            "storage.shared_fs",
            "the shared volume's file system is in use and is not remade in place".into(),
        ));
    }
    if !out.is_empty() {
        return Err(out);
    }

    // Fixed volumes and the kept nodes' volumes must be the size they are.
    let key_of = |role: &Role| match role {
        Role::Esp => "storage.esp",
        Role::Meta => "storage.meta",
        Role::Origin => "storage.origin",
        Role::OriginB => "storage.slots",
        Role::Cow { .. } => "storage.cow",
        Role::Swap { .. } => "storage.swap",
        Role::Shared => "storage.shared",
        // Volumes of other layouts (refused above) or of install media.
        _ => "san.layout",
    };
    for p in &new.partitions {
        let Some(o) = old.by_role(&p.role) else {
            match p.role {
                Role::Cow { .. } => continue,
                Role::Swap { ref node } if installed.node(node).is_none() => continue,
                _ => {
                    out.push(refused(
                        key_of(&p.role),
                        format!(
                            "the SAN has no {}; adding it to kept nodes needs a reinstall",
                            p.label
                        ),
                    ));
                    continue;
                }
            }
        };
        let rest =
            p.role == Role::Shared && matches!(profile.storage.shared.value, SharedSize::Rest);
        if o.size != p.size && !rest {
            out.push(refused(
                key_of(&p.role),
                format!(
                    "{} is {} on the SAN but the profile asks for {}; it cannot be resized in place",
                    p.label, o.size, p.size
                ),
            ));
        }
    }
    for o in &old.partitions {
        let kept_node = match &o.role {
            Role::Cow { node } | Role::Swap { node } => fresh.node(node).is_some(),
            _ => true,
        };
        if kept_node && new.by_role(&o.role).is_none() {
            out.push(refused(
                key_of(&o.role),
                format!(
                    "the profile drops {}, which is in use; it cannot be removed in place",
                    o.label
                ),
            ));
        }
    }
    if !out.is_empty() {
        return Err(out);
    }

    let s = old.sector_size.bytes();
    let entry_lbas = u64::from(old.entries) * ENTRY_SIZE / s;
    // The GPT's own room stays as installed; only its end follows the SAN.
    let lbas = new.lbas;
    let Some(last_usable) = lbas.checked_sub(entry_lbas + 2) else {
        return Err(vec![refused(
            "san.size",
            "the SAN is too small for its partition table".into(),
        )]);
    };
    let start = (old.first_usable.0 * s).next_multiple_of(MIB);
    let end = ((last_usable + 1) * s) / MIB * MIB;

    let mut partitions: Vec<Partition> = Vec::new();
    let mut wanted: Vec<&Partition> = Vec::new();
    for p in &new.partitions {
        match old.by_role(&p.role) {
            Some(o) => partitions.push(Partition {
                // The attributes follow the profile (the ESP's BIOS bit).
                attributes: p.attributes,
                ..o.clone()
            }),
            None => wanted.push(p),
        }
    }
    if let Some(p) = partitions
        .iter()
        .find(|p| (p.last_lba.0 + 1) * s > end.max(start))
    {
        return Err(vec![refused(
            "san.size",
            format!(
                "the SAN ({}) is smaller than the installed layout: {} ends at byte {}",
                new.size,
                p.label,
                (p.last_lba.0 + 1) * s
            ),
        )]);
    }
    for w in wanted {
        let len = w.size.get().next_multiple_of(MIB);
        let Some(at) = first_fit(&partitions, s, start, end, len) else {
            return Err(vec![refused(
                "nodes",
                format!(
                    "no free space of {} on the SAN for {} (free: {}); grow the LUN or remove a node",
                    Bytes(len),
                    w.label,
                    Bytes(free_bytes(&partitions, s, start, end))
                ),
            )]);
        };
        let Some(number) = (1..=old.entries).find(|n| partitions.iter().all(|p| p.number != *n))
        else {
            return Err(vec![refused(
                "nodes",
                format!(
                    "the partition table has no free entry for {} ({} entries)",
                    w.label, old.entries
                ),
            )]);
        };
        partitions.push(Partition {
            number,
            first_lba: Lba(at / s),
            last_lba: Lba((at + len) / s - 1),
            size: Bytes(len),
            ..w.clone()
        });
    }
    partitions.sort_by_key(|p| p.number);
    let blades: Vec<_> = fresh.nodes.iter().map(|n| (n.name.clone(), n.ip)).collect();
    let etcd = fresh.etcd.clone().keeping(&installed.etcd, &blades);
    Ok(Plan {
        etcd,
        // The GPT's geometry (sector size, disk GUID, entries, first
        // usable LBA) stays as installed; its end follows the SAN.
        disk: DiskLayout {
            size: new.size,
            lbas,
            last_usable: Lba(last_usable),
            partitions,
            ..old.clone()
        },
        ..fresh
    })
}

/// Free byte ranges between `parts` within `[start, end)`, in disk order.
fn gaps(parts: &[Partition], s: u64, start: u64, end: u64) -> Vec<(u64, u64)> {
    let mut used: Vec<(u64, u64)> = parts
        .iter()
        .map(|p| (p.first_lba.0 * s, (p.last_lba.0 + 1) * s))
        .collect();
    used.sort_unstable();
    let mut out = Vec::new();
    let mut at = start;
    for (a, b) in used {
        if a > at {
            out.push((at, a));
        }
        at = at.max(b);
    }
    if end > at {
        out.push((at, end));
    }
    out
}

fn first_fit(parts: &[Partition], s: u64, start: u64, end: u64, len: u64) -> Option<u64> {
    gaps(parts, s, start, end)
        .into_iter()
        .map(|(a, b)| (a.next_multiple_of(MIB), b))
        .find(|(a, b)| b.saturating_sub(*a) >= len)
        .map(|(a, _)| a)
}

fn free_bytes(parts: &[Partition], s: u64, start: u64, end: u64) -> u64 {
    gaps(parts, s, start, end).iter().map(|(a, b)| b - a).sum()
}

/// What an apply of `new` changes on a SAN that holds `installed`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlanDiff {
    pub nodes: Vec<NodeChange>,
    pub partitions: Vec<PartitionChange>,
    /// The SAN's size, when it grew: the backup GPT moves to its new end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_size: Option<Change<Bytes>>,
    /// Cluster-wide settings every node's configuration is rendered from.
    pub settings: Vec<Change<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change<T> {
    pub key: String,
    pub from: T,
    pub to: T,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Added,
    Removed,
    Changed,
}

impl Kind {
    fn sign(self) -> char {
        match self {
            Kind::Added => '+',
            Kind::Removed => '-',
            Kind::Changed => '~',
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeChange {
    pub change: Kind,
    pub name: String,
    pub ip: Ipv4Addr,
    pub macs: Vec<String>,
    /// For a changed node, each of its entries that differs. A new MAC is
    /// a board swap: the new board boots as this node, with its store.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<Change<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionChange {
    pub change: Kind,
    pub number: u32,
    pub label: String,
    pub first_lba: Lba,
    pub last_lba: Lba,
    pub size: Bytes,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<Change<String>>,
}

impl PlanDiff {
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
            && self.partitions.is_empty()
            && self.disk_size.is_none()
            && self.settings.is_empty()
    }

    /// Nodes the change adds: their stores are initialized, no other's.
    pub fn added_nodes(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.change == Kind::Added)
            .map(|n| n.name.clone())
            .collect()
    }

    /// Whether the partition table changes.
    pub fn touches_disk(&self) -> bool {
        !self.partitions.is_empty() || self.disk_size.is_some()
    }
}

fn changed<T: PartialEq + std::fmt::Debug>(
    out: &mut Vec<Change<String>>,
    key: &str,
    from: &T,
    to: &T,
) {
    if from != to {
        out.push(Change {
            key: key.into(),
            from: format!("{from:?}"),
            to: format!("{to:?}"),
        });
    }
}

fn join<T: ToString>(v: &[T]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn node_fields(a: &NodePlan, b: &NodePlan) -> Vec<Change<String>> {
    let mut out = Vec::new();
    let mut text = |key: &str, from: String, to: String| {
        if from != to {
            out.push(Change {
                key: key.into(),
                from,
                to,
            });
        }
    };
    text("macs", join(&a.macs), join(&b.macs));
    text("ip", a.ip.to_string(), b.ip.to_string());
    text("fqdn", a.fqdn.clone(), b.fqdn.clone());
    let extra = |n: &NodePlan| {
        n.extra_ips
            .iter()
            .map(|x| format!("{}={}", x.network, x.ip))
            .collect::<Vec<_>>()
            .join(",")
    };
    text("extra_ips", extra(a), extra(b));
    let vrrp = |n: &NodePlan| {
        n.vrrp
            .iter()
            .map(|v| {
                format!(
                    "{}/{} prio {}{}",
                    v.vip,
                    v.vrid,
                    v.priority,
                    if v.master { " master" } else { "" }
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    text("vrrp", vrrp(a), vrrp(b));
    text(
        "services",
        format!("{:?}", a.services),
        format!("{:?}", b.services),
    );
    out
}

fn node_change(change: Kind, n: &NodePlan, fields: Vec<Change<String>>) -> NodeChange {
    NodeChange {
        change,
        name: n.name.to_string(),
        ip: n.ip,
        macs: n.macs.iter().map(ToString::to_string).collect(),
        fields,
    }
}

fn partition_change(change: Kind, p: &Partition, fields: Vec<Change<String>>) -> PartitionChange {
    PartitionChange {
        change,
        number: p.number,
        label: p.label.clone(),
        first_lba: p.first_lba,
        last_lba: p.last_lba,
        size: p.size,
        fields,
    }
}

/// Everything that differs between the installed plan and `new` (a plan
/// [`rebase`]d onto it). A node's position in the profile alone is no
/// change; the profile's text and hash are not compared, only what was
/// planned from them.
pub fn diff(installed: &Plan, new: &Plan) -> PlanDiff {
    let mut d = PlanDiff::default();
    for n in &new.nodes {
        match installed.node(n.name.as_str()) {
            None => d.nodes.push(node_change(Kind::Added, n, Vec::new())),
            Some(o) => {
                let fields = node_fields(o, n);
                if !fields.is_empty() {
                    d.nodes.push(node_change(Kind::Changed, n, fields));
                }
            }
        }
    }
    for o in &installed.nodes {
        if new.node(o.name.as_str()).is_none() {
            d.nodes.push(node_change(Kind::Removed, o, Vec::new()));
        }
    }
    for p in &new.disk.partitions {
        match installed.disk.by_role(&p.role) {
            None => d
                .partitions
                .push(partition_change(Kind::Added, p, Vec::new())),
            Some(o) => {
                let mut fields = Vec::new();
                changed(&mut fields, "number", &o.number, &p.number);
                changed(&mut fields, "first_lba", &o.first_lba, &p.first_lba);
                changed(&mut fields, "last_lba", &o.last_lba, &p.last_lba);
                changed(&mut fields, "attributes", &o.attributes, &p.attributes);
                changed(&mut fields, "type", &o.type_guid, &p.type_guid);
                if !fields.is_empty() {
                    d.partitions
                        .push(partition_change(Kind::Changed, p, fields));
                }
            }
        }
    }
    for o in &installed.disk.partitions {
        if new.disk.by_role(&o.role).is_none() {
            d.partitions
                .push(partition_change(Kind::Removed, o, Vec::new()));
        }
    }
    if installed.disk.size != new.disk.size {
        d.disk_size = Some(Change {
            key: "san.size".into(),
            from: installed.disk.size,
            to: new.disk.size,
        });
    }
    let (a, b) = (installed, new);
    let s = &mut d.settings;
    changed(s, "cluster.name", &a.cluster.name, &b.cluster.name);
    changed(s, "cluster.domain", &a.cluster.domain, &b.cluster.domain);
    changed(s, "network.cidr", &a.network.cidr, &b.network.cidr);
    changed(s, "network.gateway", &a.network.gateway, &b.network.gateway);
    let vips = |p: &Plan| {
        p.network
            .vips
            .iter()
            .map(|v| format!("{} (vrid {})", v.address, v.vrid))
            .collect::<Vec<_>>()
    };
    changed(s, "network.vips", &vips(a), &vips(b));
    changed(
        s,
        "network.upstream_dns",
        &a.network.upstream_dns,
        &b.network.upstream_dns,
    );
    changed(s, "network.extra", &a.network.extra, &b.network.extra);
    changed(s, "san.transport", &a.san.transport, &b.san.transport);
    changed(s, "services", &a.services, &b.services);
    changed(s, "boot.firmware", &a.boot.firmware, &b.boot.firmware);
    changed(s, "boot.cmdline", &a.boot.cmdline, &b.boot.cmdline);
    changed(s, "image.host", &a.image.host, &b.image.host);
    changed(s, "image.overlays", &a.image.overlays, &b.image.overlays);
    let voters = |p: &Plan| {
        p.etcd
            .voters
            .iter()
            .map(|v| v.name.to_string())
            .collect::<Vec<_>>()
    };
    changed(s, "etcd.voters", &voters(a), &voters(b));
    changed(
        s,
        "etcd.heartbeat_ms",
        &a.etcd.heartbeat.get(),
        &b.etcd.heartbeat.get(),
    );
    changed(
        s,
        "etcd.election_ms",
        &a.etcd.election.get(),
        &b.etcd.election.get(),
    );
    changed(s, "etcd.batch_ms", &a.etcd.batch.get(), &b.etcd.batch.get());
    let pool = |p: &Plan| {
        p.vc.map_or_else(
            || "none".to_owned(),
            |v| format!("{} /{}", v.subnet_pool, v.prefix),
        )
    };
    changed(s, "vc", &pool(a), &pool(b));
    d
}

impl std::fmt::Display for PlanDiff {
    /// One line per change, grouped; nothing at all when nothing changes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.nodes.is_empty() {
            writeln!(f, "nodes:")?;
            for n in &self.nodes {
                writeln!(
                    f,
                    "  {} {:<12} {:<15} {}",
                    n.change.sign(),
                    n.name,
                    n.ip,
                    n.macs.join(",")
                )?;
                for c in &n.fields {
                    writeln!(f, "      {}: {} -> {}", c.key, c.from, c.to)?;
                }
            }
        }
        if !self.partitions.is_empty() {
            writeln!(f, "partitions:")?;
            for p in &self.partitions {
                writeln!(
                    f,
                    "  {} {:>3} {:<20} LBA {}-{} ({})",
                    p.change.sign(),
                    p.number,
                    p.label,
                    p.first_lba,
                    p.last_lba,
                    p.size
                )?;
                for c in &p.fields {
                    writeln!(f, "      {}: {} -> {}", c.key, c.from, c.to)?;
                }
            }
        }
        if let Some(c) = &self.disk_size {
            writeln!(
                f,
                "disk: {} -> {} (the backup partition table moves to the end)",
                c.from, c.to
            )?;
        }
        if !self.settings.is_empty() {
            writeln!(f, "settings:")?;
            for c in &self.settings {
                writeln!(f, "  ~ {}: {} -> {}", c.key, c.from, c.to)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SanFacts, Source, Trusting};

    const GIB: u64 = 1 << 30;

    /// A cluster of `nodes` (one `[[nodes]]` table each), 512 MiB stores.
    fn text(nodes: &[(&str, &str, &str)], origin: &str) -> String {
        let mut t = String::from(
            "[cluster]\nname = \"t\"\nuuid = \"6f1c0a4e-3b8e-4d3a-9d2a-1f0e5c7b9a10\"\ndomain = \"t.test\"\n\
             [network]\ncidr = \"10.0.0.0/24\"\nvips = [\"10.0.0.250\"]\n",
        );
        for (name, mac, ip) in nodes {
            t.push_str(&format!(
                "[[nodes]]\nname = \"{name}\"\nmac = \"{mac}\"\nip = \"{ip}\"\n"
            ));
        }
        t.push_str(&format!(
            "[san]\n[storage]\norigin = \"{origin}\"\ncow = \"512MiB\"\nswap = \"64MiB\"\nshared = \"rest\"\n[image]\nhost = \"h.toml\"\n"
        ));
        t
    }

    fn load(text: &str, size: u64) -> (Profile, Plan) {
        let source = Source::new("t.toml", text);
        crate::load(
            &source,
            &Trusting,
            SanFacts {
                size: Some(Bytes(size)),
                sector_size: None,
            },
        )
        .unwrap_or_else(|d| panic!("{d}"))
    }

    /// The profile planned onto a SAN of `size` that holds `installed`.
    fn change(text: &str, size: u64, installed: &Plan) -> Result<Plan, Vec<Refused>> {
        let (p, fresh) = load(text, size);
        rebase(&p, fresh, installed)
    }

    const N1: (&str, &str, &str) = ("n1", "52:54:00:00:00:01", "10.0.0.1");
    const N2: (&str, &str, &str) = ("n2", "52:54:00:00:00:02", "10.0.0.2");
    const N3: (&str, &str, &str) = ("n3", "52:54:00:00:00:03", "10.0.0.3");
    const N4: (&str, &str, &str) = ("n4", "52:54:00:00:00:04", "10.0.0.4");

    fn keys(r: &[Refused]) -> Vec<&str> {
        r.iter().map(|r| r.key.as_str()).collect()
    }

    #[test]
    fn the_same_profile_rebases_to_the_installed_plan_and_differs_in_nothing() {
        let t = text(&[N1, N2, N3], "1GiB");
        let (_, installed) = load(&t, 4 * GIB);
        let again = change(&t, 4 * GIB, &installed).unwrap_or_else(|r| panic!("{r:?}"));
        assert_eq!(again, installed);
        let d = diff(&installed, &again);
        assert!(d.is_empty(), "{d}");
        assert_eq!(d.to_string(), "");
    }

    #[test]
    fn a_new_node_goes_past_the_end_of_a_grown_lun_and_nothing_else_moves() {
        let (_, installed) = load(&text(&[N1, N2, N3], "1GiB"), 4 * GIB);
        let t = text(&[N1, N2, N3, N4], "1GiB");
        let new = change(&t, 5 * GIB, &installed).unwrap_or_else(|r| panic!("{r:?}"));
        for p in &installed.disk.partitions {
            assert_eq!(new.disk.by_role(&p.role), Some(p), "{} stays", p.label);
        }
        let shared = installed.disk.by_role(&Role::Shared).unwrap();
        let cow = new.disk.by_label("vlx-cow-n4").unwrap();
        let swap = new.disk.by_label("vlx-swap-n4").unwrap();
        let n = installed.disk.partitions.len() as u32;
        assert_eq!((cow.number, swap.number), (n + 1, n + 2));
        assert_eq!(cow.first_lba.0, shared.last_lba.0 + 1);
        assert_eq!(swap.first_lba.0, cow.last_lba.0 + 1);
        assert!(swap.last_lba <= new.disk.last_usable);

        let d = diff(&installed, &new);
        assert_eq!(d.added_nodes(), vec!["n4".to_owned()]);
        assert_eq!(d.nodes.len(), 1, "{d}");
        let labels: Vec<_> = d.partitions.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(labels, ["vlx-cow-n4", "vlx-swap-n4"]);
        assert!(d.partitions.iter().all(|p| p.change == Kind::Added));
        assert_eq!(d.disk_size.as_ref().map(|c| c.to), Some(Bytes(5 * GIB)));
        assert!(d.settings.is_empty(), "{d}");
        assert!(d.to_string().contains("+ n4"), "{d}");

        // A rerun after a crash plans the same change.
        assert_eq!(change(&t, 5 * GIB, &new), Ok(new));
    }

    #[test]
    fn a_removed_nodes_room_and_numbers_go_to_the_next_new_node() {
        let (_, installed) = load(&text(&[N1, N2, N3], "1GiB"), 4 * GIB);
        let t = text(&[N1, N3, N4], "1GiB");
        let new = change(&t, 4 * GIB, &installed).unwrap_or_else(|r| panic!("{r:?}"));
        let old_cow = installed.disk.by_label("vlx-cow-n2").unwrap();
        let old_swap = installed.disk.by_label("vlx-swap-n2").unwrap();
        let cow = new.disk.by_label("vlx-cow-n4").unwrap();
        let swap = new.disk.by_label("vlx-swap-n4").unwrap();
        assert_eq!(
            (cow.number, cow.first_lba, cow.last_lba),
            (old_cow.number, old_cow.first_lba, old_cow.last_lba)
        );
        assert_eq!(
            (swap.number, swap.first_lba),
            (old_swap.number, old_swap.first_lba)
        );
        assert!(new.disk.by_label("vlx-cow-n2").is_none());
        let d = diff(&installed, &new);
        let nodes: Vec<_> = d
            .nodes
            .iter()
            .map(|n| (n.change, n.name.as_str()))
            .collect();
        assert!(nodes.contains(&(Kind::Added, "n4")), "{d}");
        assert!(nodes.contains(&(Kind::Removed, "n2")), "{d}");
        assert_eq!(d.partitions.len(), 4, "{d}");
        assert!(d.disk_size.is_none());
    }

    #[test]
    fn a_new_mac_is_a_board_swap_that_changes_no_partition() {
        let (_, installed) = load(&text(&[N1, N2, N3], "1GiB"), 4 * GIB);
        let swapped = ("n2", "52:54:00:00:99:02", "10.0.0.2");
        let new = change(&text(&[N1, swapped, N3], "1GiB"), 4 * GIB, &installed)
            .unwrap_or_else(|r| panic!("{r:?}"));
        assert_eq!(new.disk, installed.disk);
        let d = diff(&installed, &new);
        assert_eq!(d.nodes.len(), 1, "{d}");
        assert_eq!(d.nodes[0].change, Kind::Changed);
        assert_eq!(d.nodes[0].fields.len(), 1, "{d}");
        assert_eq!(d.nodes[0].fields[0].key, "macs");
        assert_eq!(d.nodes[0].fields[0].to, "52:54:00:00:99:02");
        assert!(d.added_nodes().is_empty());
    }

    #[test]
    fn kernel_arguments_and_vips_are_settings() {
        let t = text(&[N1, N2], "1GiB");
        let (_, installed) = load(&t, 4 * GIB);
        let t2 = t
            .replace("vips = [\"10.0.0.250\"]", "vips = [\"10.0.0.251\"]")
            .replace("[image]", "[boot]\nkernel_args = [\"quiet\"]\n[image]");
        let new = change(&t2, 4 * GIB, &installed).unwrap_or_else(|r| panic!("{r:?}"));
        let d = diff(&installed, &new);
        let keys: Vec<_> = d.settings.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["network.vips", "boot.cmdline"], "{d}");
        assert!(d.partitions.is_empty() && d.disk_size.is_none(), "{d}");
        // Every node's VRRP role names the new VIP.
        assert!(
            d.nodes
                .iter()
                .all(|n| n.fields.iter().all(|f| f.key == "vrrp"))
        );
        assert_eq!(d.nodes.len(), 2);
    }

    #[test]
    fn a_vc_pool_is_a_setting_that_changes_in_place() {
        let t = text(&[N1, N2], "1GiB");
        let (_, installed) = load(&t, 4 * GIB);
        let t2 = t.replace("[image]", "[vc]\nsubnet_pool = \"10.200.0.0/16\"\n[image]");
        let new = change(&t2, 4 * GIB, &installed).unwrap_or_else(|r| panic!("{r:?}"));
        let d = diff(&installed, &new);
        let vc: Vec<_> = d.settings.iter().filter(|c| c.key == "vc").collect();
        assert_eq!(vc.len(), 1, "{d}");
        assert_eq!(
            (vc[0].from.as_str(), vc[0].to.as_str()),
            ("\"none\"", "\"10.200.0.0/16 /24\""),
            "{d}"
        );
        assert!(d.partitions.is_empty() && d.disk_size.is_none(), "{d}");
    }

    #[test]
    fn what_cannot_change_in_place_is_refused_by_key() {
        let t = text(&[N1, N2], "1GiB");
        let (_, installed) = load(&t, 4 * GIB);
        let r = change(&text(&[N1, N2], "2GiB"), 4 * GIB, &installed).unwrap_err();
        assert_eq!(keys(&r), ["storage.origin"]);
        assert!(r[0].message.contains("vlx-origin is 1GiB"), "{}", r[0]);

        let r = change(&t.replace("512MiB", "256MiB"), 4 * GIB, &installed).unwrap_err();
        assert_eq!(keys(&r), ["storage.cow", "storage.cow"]);

        let r = change(
            &t.replace("[san]\n", "[san]\nsector_size = 4096\n")
                .replace("[image]", "[boot]\nfirmware = \"uefi\"\n[image]"),
            4 * GIB,
            &installed,
        )
        .unwrap_err();
        assert_eq!(keys(&r), ["san.sector_size"]);

        let r = change(
            &t.replace("shared = \"rest\"", "shared = \"1GiB\""),
            4 * GIB,
            &installed,
        )
        .unwrap_err();
        assert_eq!(keys(&r), ["storage.shared"]);

        let r = change(&t, 3 * GIB, &installed).unwrap_err();
        assert_eq!(keys(&r), ["san.size"]);

        // A second origin slot cannot be added to a one-slot install, nor
        // taken from a two-slot one.
        let two = t.replace("[storage]\n", "[storage]\nslots = 2\n");
        let r = change(&two, 4 * GIB, &installed).unwrap_err();
        assert_eq!(keys(&r), ["storage.slots"]);
        assert!(r[0].message.contains("vlx-origin-b"), "{}", r[0]);
        let (_, slotted) = load(&two, 4 * GIB);
        let r = change(&t, 4 * GIB, &slotted).unwrap_err();
        assert_eq!(keys(&r), ["storage.slots"]);
        assert!(change(&two, 4 * GIB, &slotted).is_ok());
    }

    #[test]
    fn a_new_node_without_free_space_is_refused() {
        let (_, installed) = load(&text(&[N1, N2], "1GiB"), 4 * GIB);
        let r = change(&text(&[N1, N2, N3], "1GiB"), 4 * GIB, &installed).unwrap_err();
        assert_eq!(keys(&r), ["nodes"]);
        assert!(r[0].message.contains("vlx-cow-n3"), "{}", r[0]);
    }
}
