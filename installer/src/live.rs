//! `vlx-install status --live`: one picture of the running cluster, from
//! any blade (or any machine that sees the SAN), with no master.
//!
//! The source is the SAN itself: every running node writes a small status
//! block every [`PUBLISH_EVERY`] seconds into its own slot record area
//! (`/usr/lib/vlx/publish`; `cluster::slots::NodeLive`): when it wrote it,
//! the addresses it holds besides its own (the VIPs: keepalived adds them
//! to the interface of the node that is VRRP master), and whether the
//! shared volume is mounted on it. A node whose last block is older than
//! [`DOWN_AFTER`] is down. The slot a node runs and its store's fill are
//! read from its record and its store's own metadata, as plain `status`
//! does. Only two-slot installs have the record area the blocks live in.

use std::net::Ipv4Addr;

use cluster::Locate;
use cluster::slots::{NodeLive, RECORD_BYTES, Slot};
use serde::Serialize;

use crate::device;
use crate::installed::Installed;
use crate::store::StoreFill;

/// How often a node publishes (the script's default).
pub const PUBLISH_EVERY: u64 = 10;
/// A node that has not published for this long is down: three missed
/// blocks.
pub const DOWN_AFTER: u64 = 3 * PUBLISH_EVERY;

/// The live picture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Live {
    pub cluster: String,
    /// Seconds since the epoch on the machine that read the SAN.
    pub now: u64,
    pub down_after: u64,
    pub nodes: Vec<LiveNode>,
    /// Every VIP of the plan and the nodes that say they hold it: one when
    /// all is well, none while VRRP moves it, two in a split brain.
    pub vips: Vec<VipHolders>,
    /// The nodes that have the shared volume mounted (one at most, as its
    /// lease ensures: `overlays/node/usr/lib/vlx/shared-lease`).
    pub shared: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveNode {
    pub name: String,
    pub up: bool,
    /// Seconds since its last block; `None` when it never published.
    pub seen_ago: Option<u64>,
    /// The slot its store runs over (its record).
    pub slot: Option<Slot>,
    pub store: Option<StoreFill>,
    /// What could not be read of it.
    pub problem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VipHolders {
    pub vip: Ipv4Addr,
    pub holders: Vec<String>,
}

/// What was read of one node.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub live: Option<NodeLive>,
    pub slot: Option<Slot>,
    pub store: Option<StoreFill>,
    pub problem: Option<String>,
}

/// The picture from what was read of each node (in plan order), at `now`.
/// Pure: the tests give it any clock.
pub fn picture(plan: &cluster::Plan, seen: &[(String, Seen)], now: u64) -> Live {
    let up = |s: &Seen| {
        s.live
            .as_ref()
            .is_some_and(|l| now.abs_diff(l.at) <= DOWN_AFTER)
    };
    let nodes: Vec<LiveNode> = seen
        .iter()
        .map(|(name, s)| LiveNode {
            name: name.clone(),
            up: up(s),
            seen_ago: s.live.as_ref().map(|l| now.saturating_sub(l.at)),
            slot: s.slot,
            store: s.store.clone(),
            problem: s.problem.clone(),
        })
        .collect();
    let holding = |f: &dyn Fn(&NodeLive) -> bool| -> Vec<String> {
        seen.iter()
            .filter(|(_, s)| up(s) && s.live.as_ref().is_some_and(f))
            .map(|(n, _)| n.clone())
            .collect()
    };
    Live {
        cluster: plan.cluster.name.clone(),
        now,
        down_after: DOWN_AFTER,
        vips: plan
            .network
            .vips
            .iter()
            .map(|v| VipHolders {
                vip: v.address,
                holders: holding(&|l| l.addresses.contains(&v.address)),
            })
            .collect(),
        shared: holding(&|l| l.shared),
        nodes,
    }
}

/// Reads every node's block, record and store from the SAN of `inst`.
pub fn read(inst: &Installed, now: u64) -> Live {
    let v = inst.volumes();
    let seen: Vec<(String, Seen)> = inst
        .plan
        .nodes
        .iter()
        .map(|n| {
            let name = n.name.as_str();
            let mut s = Seen::default();
            match v.locate(&cluster::locate::record(name)) {
                Ok(rec) => {
                    let at = rec.offset.get() + cluster::slots::LIVE_OFFSET;
                    match device::read_at(&inst.file, at, RECORD_BYTES) {
                        Ok(b) => match NodeLive::decode(&b) {
                            Ok(l) => s.live = l,
                            Err(e) => s.problem = Some(format!("{}: live block {e}", rec.label)),
                        },
                        Err(e) => s.problem = Some(format!("{} at byte {at}: {e}", rec.label)),
                    }
                }
                Err(e) => s.problem = Some(e.to_string()),
            }
            match crate::slots::node_slot(inst, name) {
                Ok(ns) => s.slot = ns.record.filter(|_| !ns.fresh).map(|r| r.slot),
                Err(e) => s.problem = s.problem.or(Some(e)),
            }
            match inst.store_fill(name) {
                Ok(f) => s.store = Some(f),
                Err(e) => s.problem = s.problem.or(Some(e)),
            }
            (name.to_owned(), s)
        })
        .collect();
    picture(&inst.plan, &seen, now)
}

impl std::fmt::Display for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "cluster {}, live: each node's own status block on the SAN (written every {PUBLISH_EVERY} s; down after {} s without one)",
            self.cluster, self.down_after
        )?;
        for n in &self.nodes {
            let state = match (n.up, n.seen_ago) {
                (true, Some(s)) => format!("up ({s} s ago)"),
                (false, Some(s)) => format!("DOWN (last seen {s} s ago)"),
                (_, None) => "DOWN (never published)".into(),
            };
            let slot = n.slot.map_or_else(|| "-".to_owned(), |s| s.to_string());
            let store = n
                .store
                .as_ref()
                .map_or_else(|| "unknown".to_owned(), ToString::to_string);
            write!(f, "  {:<12} {state:<28} slot {slot}  store {store}", n.name)?;
            if let Some(p) = &n.problem {
                write!(f, "  ({p})")?;
            }
            writeln!(f)?;
        }
        for v in &self.vips {
            let who = match v.holders.len() {
                0 => "nobody (moving, or every node down)".to_owned(),
                1 => v.holders[0].clone(),
                _ => format!(
                    "{} (SPLIT BRAIN: more than one holder)",
                    v.holders.join(", ")
                ),
            };
            writeln!(f, "VIP {}: {who}", v.vip)?;
        }
        let shared = match self.shared.len() {
            0 => "mounted nowhere".to_owned(),
            _ => format!("mounted on {}", self.shared.join(", ")),
        };
        writeln!(f, "shared volume: {shared}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn plan() -> cluster::Plan {
        let text = "[cluster]\nname = \"t\"\nuuid = \"6f1c0a4e-3b8e-4d3a-9d2a-1f0e5c7b9a10\"\ndomain = \"t.test\"\n\
            [network]\ncidr = \"10.0.0.0/24\"\nvips = [\"10.0.0.250\", \"10.0.0.251\"]\n\
            [[nodes]]\nname = \"n[1-3]\"\nmac = \"52:54:00:00:00:01\"\nip = \"10.0.0.1\"\n\
            [san]\nsize = \"8GiB\"\n[storage]\nslots = 2\n[image]\nhost = \"h.toml\"\n";
        let source = cluster::Source::new("t.toml", text);
        cluster::load(&source, &cluster::Trusting, cluster::SanFacts::default())
            .unwrap()
            .1
    }

    fn live(node: &str, at: u64, addrs: &[&str], shared: bool) -> Seen {
        Seen {
            live: Some(NodeLive {
                node: node.into(),
                at,
                addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
                shared,
            }),
            slot: Some(Slot::A),
            ..Seen::default()
        }
    }

    #[test]
    fn nodes_are_down_after_three_missed_blocks_and_vips_name_their_holders() {
        let now = 1_000_000;
        let seen = vec![
            ("n1".to_owned(), live("n1", now - 5, &["10.0.0.250"], true)),
            // Down: its block is old, so what it said no longer counts.
            (
                "n2".to_owned(),
                live("n2", now - 31, &["10.0.0.251"], false),
            ),
            ("n3".to_owned(), Seen::default()),
        ];
        let l = picture(&plan(), &seen, now);
        let up: Vec<_> = l.nodes.iter().map(|n| (n.name.as_str(), n.up)).collect();
        assert_eq!(up, [("n1", true), ("n2", false), ("n3", false)]);
        assert_eq!(l.vips[0].holders, ["n1"]);
        assert!(l.vips[1].holders.is_empty(), "n2 is down");
        assert_eq!(l.shared, ["n1"]);
        let text = l.to_string();
        assert!(text.contains("DOWN (never published)"), "{text}");
        assert!(text.contains("VIP 10.0.0.251: nobody"), "{text}");

        // Two holders of one VIP are shown as what they are.
        let seen = vec![
            ("n1".to_owned(), live("n1", now, &["10.0.0.250"], false)),
            ("n2".to_owned(), live("n2", now, &["10.0.0.250"], false)),
        ];
        let text = picture(&plan(), &seen, now).to_string();
        assert!(text.contains("n1, n2 (SPLIT BRAIN"), "{text}");
        // A clock a little ahead is not down.
        let l = picture(
            &plan(),
            &[("n1".to_owned(), live("n1", now + 3, &[], false))],
            now,
        );
        assert!(l.nodes[0].up);
    }
}
