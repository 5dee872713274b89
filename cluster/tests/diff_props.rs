//! Properties of changes in place: any sequence of node sets, each applied
//! onto the plan before it on a LUN that may grow, keeps every kept
//! volume where it was, never overlaps, stays on the disk, gives unique
//! partition numbers within the table, rebases to itself again (a rerun
//! plans the same change), and encodes to a GPT whose entries decode to
//! the same table.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup errors

use std::collections::HashSet;

use cluster::diff::{Kind, diff, rebase};
use cluster::{Bytes, Plan, SanFacts, Source, Trusting};
use proptest::prelude::*;

const MIB: u64 = 1 << 20;

fn text(nodes: &[u8]) -> String {
    let mut t = String::from(
        "[cluster]\nname = \"p\"\nuuid = \"6f1c0a4e-3b8e-4d3a-9d2a-1f0e5c7b9a10\"\ndomain = \"p.test\"\n\
         [network]\ncidr = \"10.0.0.0/24\"\nvips = [\"10.0.0.250\"]\n",
    );
    for n in nodes {
        t.push_str(&format!(
            "[[nodes]]\nname = \"n{n}\"\nmac = \"52:54:00:00:00:{n:02x}\"\nip = \"10.0.0.{}\"\n",
            u32::from(*n) + 1
        ));
    }
    t.push_str(
        "[san]\n[storage]\nesp = \"260MiB\"\nmeta = \"64MiB\"\norigin = \"64MiB\"\ncow = \"32MiB\"\nswap = \"8MiB\"\nshared = \"rest\"\n[image]\nhost = \"h.toml\"\n",
    );
    t
}

fn load(nodes: &[u8], size: u64) -> Option<(cluster::Profile, Plan)> {
    let source = Source::new("p.toml", text(nodes));
    let san = SanFacts {
        size: Some(Bytes(size)),
        sector_size: None,
    };
    cluster::load(&source, &Trusting, san).ok()
}

/// Node sets (from n0..n11) and how many MiB the LUN grows before each.
fn steps() -> impl Strategy<Value = Vec<(Vec<u8>, u64)>> {
    prop::collection::vec(
        (
            prop::collection::btree_set(0u8..12, 1..8).prop_map(|s| s.into_iter().collect()),
            prop_oneof![Just(0u64), 40u64..200],
        ),
        1..6,
    )
}

fn sound(plan: &Plan) -> Result<(), TestCaseError> {
    let d = &plan.disk;
    let s = d.sector_size.bytes();
    let mut numbers = HashSet::new();
    let mut spans: Vec<(u64, u64)> = Vec::new();
    for p in &d.partitions {
        prop_assert!(numbers.insert(p.number), "number {} twice", p.number);
        prop_assert!(p.number >= 1 && p.number <= d.entries);
        prop_assert!(
            p.first_lba >= d.first_usable && p.last_lba <= d.last_usable,
            "{} off the disk",
            p.label
        );
        prop_assert_eq!(p.first_lba.0 * s % MIB, 0);
        prop_assert_eq!((p.last_lba.0 + 1 - p.first_lba.0) * s, p.size.get());
        spans.push((p.first_lba.0, p.last_lba.0));
    }
    spans.sort_unstable();
    for w in spans.windows(2) {
        prop_assert!(w[0].1 < w[1].0, "overlap {:?}", w);
    }
    for n in &plan.nodes {
        prop_assert!(d.by_label(&n.cow).is_some(), "{} has no store", n.name);
    }
    // The GPT bytes decode to the same table.
    let writes = cluster::gpt::encode(d);
    let header = writes.iter().find(|w| w.offset.get() == s).unwrap();
    let h = cluster::gpt::Header::parse(&header.data).unwrap();
    let entries = writes.iter().find(|w| w.offset.get() == 2 * s).unwrap();
    let got = cluster::gpt::parse_entries(&h, &entries.data).unwrap();
    prop_assert_eq!(got.len(), d.partitions.len());
    for e in got {
        let p = d.partitions.iter().find(|p| p.number == e.number).unwrap();
        prop_assert_eq!(&e.name, &p.label);
        prop_assert_eq!((e.first_lba, e.last_lba), (p.first_lba.0, p.last_lba.0));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn changes_in_place_keep_kept_volumes_and_stay_sound(first in prop::collection::btree_set(0u8..12, 1..8), steps in steps()) {
        let first: Vec<u8> = first.into_iter().collect();
        let mut size = 1024 * MIB;
        let (_, mut installed) = load(&first, size).unwrap();
        sound(&installed)?;
        for (nodes, grow) in steps {
            size += grow * MIB;
            let Some((profile, fresh)) = load(&nodes, size) else { continue };
            let new = match rebase(&profile, fresh.clone(), &installed) {
                Ok(p) => p,
                Err(r) => {
                    // Only a lack of room may refuse, and only when the
                    // change adds a node.
                    prop_assert!(r.iter().all(|r| r.key == "nodes"), "{:?}", r);
                    let adds = nodes.iter().any(|n| installed.node(&format!("n{}", n)).is_none());
                    prop_assert!(adds, "refused without a new node");
                    continue;
                }
            };
            sound(&new)?;
            for p in &installed.disk.partitions {
                let kept = match &p.role {
                    cluster::Role::Cow { node } | cluster::Role::Swap { node } => new.node(node).is_some(),
                    _ => true,
                };
                if kept {
                    prop_assert_eq!(new.disk.by_role(&p.role), Some(p), "{} moved", &p.label);
                } else {
                    prop_assert!(new.disk.by_role(&p.role).is_none());
                }
            }
            // No voter that is still a blade moves, while as many vote;
            // the voters are always as many as the blades call for.
            let voters = |p: &Plan| p.etcd.voters.iter().map(|v| v.name.to_string()).collect::<Vec<_>>();
            let (was, now) = (voters(&installed), voters(&new));
            prop_assert_eq!(now.len(), cluster::etcd::voter_count(new.nodes.len(), None));
            if now.len() >= was.len() {
                for v in was.iter().filter(|v| new.node(v).is_some()) {
                    prop_assert!(now.contains(v), "voter {} moved: {:?} -> {:?}", v, was, now);
                }
            }
            prop_assert_eq!(&rebase(&profile, fresh, &new), &Ok(new.clone()));
            let d = diff(&installed, &new);
            let added: Vec<String> = new.nodes.iter().filter(|n| installed.node(n.name.as_str()).is_none()).map(|n| n.name.to_string()).collect();
            prop_assert_eq!(d.added_nodes(), added);
            prop_assert_eq!(
                d.nodes.iter().filter(|n| n.change == Kind::Removed).count(),
                installed.nodes.iter().filter(|n| new.node(n.name.as_str()).is_none()).count()
            );
            installed = new;
        }
    }
}
