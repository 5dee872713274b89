//! The day-2 steps of a rehearsal (`--day2`): changes made to the
//! *running* cluster after step 7, as an administrator makes them: a blade
//! added, a board replaced, a blade removed, the image upgraded and rolled
//! back. Pure: the node lists of the changed profiles, the added blade,
//! the grown SAN's size; the executor (`rehearse::day2`) writes the
//! profiles and runs `vlx-install`.

use std::net::Ipv4Addr;
use std::path::Path;

use cluster::{Bytes, MacAddr, NodePlan, Plan};
use serde::Serialize;

/// One `[[nodes]]` entry of a changed profile: one node, spelled out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub name: String,
    pub macs: Vec<MacAddr>,
    pub ip: Ipv4Addr,
}

impl Entry {
    fn of(n: &NodePlan) -> Entry {
        Entry {
            name: n.name.to_string(),
            macs: n.macs.clone(),
            ip: n.ip,
        }
    }
}

/// What the day-2 steps do to the cluster, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Day2 {
    /// Step 9: the node added (after the profile's last, counting on).
    pub added: Entry,
    pub added_fqdn: String,
    /// The SAN file's size for step 9: the demo's shared volume fills the
    /// LUN (`shared = "rest"`), so the new node's store and swap go past
    /// its end, as when an admin grows the LUN first.
    pub grow_to: Bytes,
    /// Step 9's node list: every node and the added one.
    pub with_added: Vec<Entry>,
    /// Step 10: the node whose board is replaced (the profile's second),
    /// its new MAC, and the node list with it.
    pub swapped: String,
    pub new_mac: MacAddr,
    pub with_new_board: Vec<Entry>,
    /// Step 11: the node removed (the profile's last, the blade of step 6
    /// that came late), and the node list without it.
    pub removed: String,
    pub without_removed: Vec<Entry>,
}

/// Why the day-2 steps do not fit a cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Day2Error {
    #[error(
        "the day-2 steps need a cluster of at least 4 nodes, rehearsed whole; this one has {0}"
    )]
    TooFew(usize),
    #[error(
        "the day-2 steps change the running cluster after step 7: they need the cold start and \
         every step (no --pxe-only, no --stop-after before 8, no --from-media, no iSCSI SAN)"
    )]
    Steps,
    #[error(
        "the day-2 steps add a node named after the last one ({0}) counting on, which needs a \
         name that ends in digits"
    )]
    Name(String),
    #[error(
        "no free {what} for the added node after {after} (the cluster uses it, or it overflows)"
    )]
    NoRoom { what: &'static str, after: String },
    #[error("node {0} has addresses on extra networks, which the day-2 profiles do not carry")]
    ExtraIps(String),
    #[error("the SAN's size overflows when grown for the added node")]
    Size,
}

/// The next name after `last`: its trailing number plus one, as wide.
fn next_name(last: &str) -> Option<String> {
    let digits = last.len() - last.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 {
        return None;
    }
    let (stem, num) = last.split_at(last.len() - digits);
    let n: u64 = num.parse().ok()?;
    Some(format!("{stem}{:0digits$}", n + 1))
}

/// Plans the day-2 steps of `cluster` (the plan as installed).
pub fn plan(cluster: &Plan) -> Result<Day2, Day2Error> {
    let nodes = &cluster.nodes;
    if nodes.len() < 4 {
        return Err(Day2Error::TooFew(nodes.len()));
    }
    if let Some(n) = nodes.iter().find(|n| !n.extra_ips.is_empty()) {
        return Err(Day2Error::ExtraIps(n.name.to_string()));
    }
    let last = &nodes[nodes.len() - 1];
    let name =
        next_name(last.name.as_str()).ok_or_else(|| Day2Error::Name(last.name.to_string()))?;
    let macs: Vec<MacAddr> = nodes.iter().flat_map(|n| n.macs.iter().copied()).collect();
    let taken_ip = |ip: Ipv4Addr| {
        nodes.iter().any(|n| n.ip == ip) || cluster.network.vips.iter().any(|v| v.address == ip)
    };
    let no_room = |what| Day2Error::NoRoom {
        what,
        after: last.name.to_string(),
    };
    let last_mac = *last.macs.first().ok_or_else(|| no_room("MAC"))?;
    let mac = (1..=256)
        .filter_map(|i| last_mac.offset(i))
        .find(|m| !macs.contains(m))
        .ok_or_else(|| no_room("MAC"))?;
    let ip = (1..=256)
        .filter_map(|i| cluster::net::ipv4_add(last.ip, i))
        .find(|ip| cluster.network.cidr.is_host(*ip) && !taken_ip(*ip))
        .ok_or_else(|| no_room("address"))?;
    let added = Entry {
        name: name.clone(),
        macs: vec![mac],
        ip,
    };
    let kept: Vec<Entry> = nodes.iter().map(Entry::of).collect();
    let mut with_added = kept.clone();
    with_added.push(added.clone());

    // The new board of the second node: its MAC with the fourth byte
    // counted on (another board of the same vendor), not a MAC of the
    // cluster's.
    let swapped = &nodes[1];
    let old = *swapped.macs.first().ok_or_else(|| no_room("MAC"))?;
    let new_mac = (1..=255u8)
        .map(|i| {
            let mut b = old.0;
            b[3] = b[3].wrapping_add(i);
            MacAddr(b)
        })
        .find(|m| !macs.contains(m) && *m != mac)
        .ok_or_else(|| no_room("MAC for the new board"))?;
    let with_new_board: Vec<Entry> = with_added
        .iter()
        .map(|e| match e.name == swapped.name.as_str() {
            true => Entry {
                macs: vec![new_mac],
                ..e.clone()
            },
            false => e.clone(),
        })
        .collect();
    let without_removed: Vec<Entry> = with_new_board
        .iter()
        .filter(|e| e.name != last.name.as_str())
        .cloned()
        .collect();

    // Room for one more node's store and swap past the end, with the
    // backup GPT and alignment: a whole GiB more than they take.
    let store = cluster
        .disk
        .by_label(&last.cow)
        .map(|p| p.size.get())
        .unwrap_or_default();
    let swap = last
        .swap
        .as_deref()
        .and_then(|s| cluster.disk.by_label(s))
        .map(|p| p.size.get())
        .unwrap_or_default();
    const GIB: u64 = 1 << 30;
    let grow_to = cluster
        .disk
        .size
        .get()
        .checked_add(store)
        .and_then(|s| s.checked_add(swap))
        .and_then(|s| s.checked_add(GIB))
        .map(|s| s.div_ceil(GIB) * GIB)
        .ok_or(Day2Error::Size)?;

    Ok(Day2 {
        added_fqdn: format!("{name}.{}", cluster.cluster.domain),
        added,
        grow_to: Bytes(grow_to),
        with_added,
        swapped: swapped.name.to_string(),
        new_mac,
        with_new_board,
        removed: last.name.to_string(),
        without_removed,
    })
}

/// The keys a `[[nodes]]` entry may have for the day-2 profiles to
/// rewrite it: what [`Entry`] carries.
const ENTRY_KEYS: &[&str] = &["name", "mac", "ip"];

/// `profile` (the installed profile's table) with its `[[nodes]]`
/// replaced by `nodes`, one entry a node. Refused when an entry has keys
/// an [`Entry`] does not carry (per-group store sizes, extra addresses):
/// leaving them out would change kept nodes.
pub fn with_nodes(profile: &toml::Table, nodes: &[Entry]) -> Result<toml::Table, String> {
    let mut t = profile.clone();
    let entries = t
        .get("nodes")
        .and_then(|n| n.as_array())
        .ok_or("the profile has no [[nodes]]")?;
    for e in entries {
        let tbl = e.as_table().ok_or("a [[nodes]] entry is not a table")?;
        if let Some(k) = tbl.keys().find(|k| !ENTRY_KEYS.contains(&k.as_str())) {
            return Err(format!(
                "a [[nodes]] entry has `{k}`, which the day-2 profiles do not carry (only {})",
                ENTRY_KEYS.join(", ")
            ));
        }
    }
    let list = nodes
        .iter()
        .map(|n| {
            let mut e = toml::Table::new();
            e.insert("name".into(), toml::Value::String(n.name.clone()));
            let macs: Vec<toml::Value> = n
                .macs
                .iter()
                .map(|m| toml::Value::String(m.to_string()))
                .collect();
            let mac = match <[toml::Value; 1]>::try_from(macs) {
                Ok([one]) => one,
                Err(many) => toml::Value::Array(many),
            };
            e.insert("mac".into(), mac);
            e.insert("ip".into(), toml::Value::String(n.ip.to_string()));
            toml::Value::Table(e)
        })
        .collect();
    t.insert("nodes".into(), toml::Value::Array(list));
    Ok(t)
}

/// `[storage] slots = 2` in a profile's table: the day-2 upgrade needs
/// the second origin slot, and slots are fixed at install.
pub fn two_slots(profile: &mut toml::Table) -> Result<(), String> {
    let storage = profile
        .entry("storage")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .ok_or("storage is not a table")?;
    storage.insert("slots".into(), toml::Value::Integer(2));
    Ok(())
}

/// The file the upgraded image's origin carries and the first lacks: on a
/// blade's root it says which slot the root was built on.
pub const UPGRADE_MARKER: &str = "/etc/vlx-rig-upgraded";

/// Where the day-2 profiles go in the run's folder.
pub fn profile_path(run: &Path, step: u8) -> std::path::PathBuf {
    run.join("cluster").join(format!("day2-step{step}.toml"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn demo() -> Plan {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../profiles/clusters/demo.toml");
        crate::rehearse::load_profile(&path).unwrap()
    }

    #[test]
    fn the_demo_gets_blade05_a_new_board_for_blade02_and_loses_blade04() {
        let d = plan(&demo()).unwrap();
        assert_eq!(d.added.name, "blade05");
        assert_eq!(d.added.macs, vec!["52:54:00:77:00:05".parse().unwrap()]);
        assert_eq!(d.added.ip, Ipv4Addr::new(10, 77, 0, 15));
        assert_eq!(d.added_fqdn, "blade05.demo.vlx.test");
        assert_eq!(d.swapped, "blade02");
        assert_eq!(d.new_mac, "52:54:00:78:00:02".parse().unwrap());
        assert_eq!(d.removed, "blade04");
        let names = |l: &[Entry]| l.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&d.with_added),
            ["blade01", "blade02", "blade03", "blade04", "blade05"]
        );
        assert_eq!(d.with_new_board[1].macs, vec![d.new_mac]);
        assert_eq!(d.with_new_board[0], d.with_added[0]);
        assert_eq!(
            names(&d.without_removed),
            ["blade01", "blade02", "blade03", "blade05"]
        );
        // 8 GiB, one more store (1 GiB) and swap (128 MiB), rounded up
        // past a spare GiB.
        assert_eq!(d.grow_to, Bytes(11 << 30));
    }

    #[test]
    fn next_names_count_on_in_the_same_width() {
        assert_eq!(next_name("blade04").as_deref(), Some("blade05"));
        assert_eq!(next_name("n9").as_deref(), Some("n10"));
        assert_eq!(next_name("rack1-099").as_deref(), Some("rack1-100"));
        assert_eq!(next_name("head"), None);
    }

    #[test]
    fn a_profile_rewritten_with_the_same_nodes_plans_the_same_nodes() {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../profiles/clusters/demo.toml");
        let before = demo();
        let t: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let kept: Vec<Entry> = before.nodes.iter().map(Entry::of).collect();
        let text = toml::to_string(&with_nodes(&t, &kept).unwrap()).unwrap();
        // The copy lives elsewhere: the paths it names become absolute.
        let repo = path.parent().unwrap().join("../..").canonicalize().unwrap();
        let text = text
            .replace(
                "../../overlays",
                &repo.join("overlays").display().to_string(),
            )
            .replace(
                "../hosts",
                &repo.join("profiles/hosts").display().to_string(),
            );
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("copy.toml");
        std::fs::write(&copy, text).unwrap();
        let after = crate::rehearse::load_profile(&copy).unwrap();
        assert_eq!(after.nodes, before.nodes);
    }

    #[test]
    fn entries_with_keys_the_rewrite_drops_are_refused_by_name() {
        let t: toml::Table =
            toml::from_str("[[nodes]]\nname = \"a[1-4]\"\nmac = \"52:54:00:00:00:01\"\nip = \"10.0.0.1\"\ncow = \"2GiB\"\n")
                .unwrap();
        let e = with_nodes(&t, &[]).unwrap_err();
        assert!(e.contains("`cow`"), "{e}");
    }

    #[test]
    fn fewer_than_four_nodes_are_refused() {
        let mut p = demo();
        p.nodes.truncate(3);
        assert_eq!(plan(&p), Err(Day2Error::TooFew(3)));
    }
}
