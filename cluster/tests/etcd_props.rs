//! etcd's members from the plan, over any blade count: how many vote, that
//! they are spread, that the choice is deterministic, and that every blade's
//! endpoints name every voter.

use std::net::Ipv4Addr;

use cluster::NodeName;
use cluster::etcd::{EtcdPlan, FIVE_FROM, Millis, VOTER_CHOICES, voter_count, voter_indices};
use proptest::prelude::*;
use uuid::Uuid;

fn blades(n: usize) -> Vec<(NodeName, Ipv4Addr)> {
    (0..n)
        .map(|i| {
            let name: NodeName = format!("b{i}").parse().expect("a valid name");
            let ip = u32::from(Ipv4Addr::new(10, 0, 0, 1)) + i as u32;
            (name, Ipv4Addr::from(ip))
        })
        .collect()
}

proptest! {
    #[test]
    fn three_then_five_voters(n in 1usize..2000) {
        let want = if n >= FIVE_FROM { 5 } else { n.min(3) };
        prop_assert_eq!(voter_count(n, None), want);
        prop_assert_eq!(voter_indices(n, voter_count(n, None)).len(), want);
    }

    /// A profile's count holds while there are blades for it; fewer blades
    /// give the largest odd count they have (every blade below 3), never
    /// more than asked.
    #[test]
    fn a_profile_count_or_the_largest_odd_one_the_blades_have(n in 1usize..2000, k in 0usize..3) {
        let wanted = VOTER_CHOICES[k];
        let got = voter_count(n, Some(wanted));
        prop_assert!(got <= wanted && got <= n);
        if n >= wanted {
            prop_assert_eq!(got, wanted);
        } else if n >= 3 {
            prop_assert!(got % 2 == 1 && got + 2 > n, "{} of {} blades", got, n);
        } else {
            prop_assert_eq!(got, n);
        }
        prop_assert_eq!(EtcdPlan::new(Uuid::nil(), &blades(n), Some(wanted), Millis(100), Millis(1000)).voters.len(), got);
    }

    /// Distinct, ascending, in range, the first blade votes, and the gaps
    /// (the last one wrapping round to the first blade) differ by at most one.
    #[test]
    fn voters_are_spread_evenly(n in 1usize..2000, count in 1usize..8) {
        let v = voter_indices(n, count);
        prop_assert_eq!(v.len(), count.min(n));
        prop_assert_eq!(v[0], 0);
        prop_assert!(v.windows(2).all(|w| w[0] < w[1]));
        prop_assert!(v.iter().all(|&i| i < n));
        let gaps: Vec<usize> = (0..v.len())
            .map(|k| if k + 1 < v.len() { v[k + 1] - v[k] } else { n - v[k] + v[0] })
            .collect();
        let (lo, hi) = (gaps.iter().min().copied(), gaps.iter().max().copied());
        prop_assert!(hi.zip(lo).is_some_and(|(h, l)| h - l <= 1), "{:?} of {}: gaps {:?}", v, n, gaps);
    }

    #[test]
    fn the_same_blades_give_the_same_members(n in 1usize..300, seed in any::<u128>()) {
        let uuid = Uuid::from_u128(seed);
        let a = EtcdPlan::new(uuid, &blades(n), None, Millis(250), Millis(2500));
        let b = EtcdPlan::new(uuid, &blades(n), None, Millis(250), Millis(2500));
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(a.token, format!("vlx-{uuid}"));
    }

    /// Every voter is in the initial cluster by its name and peer URL, and
    /// among the endpoints every blade (voter or client) is given.
    #[test]
    fn every_client_knows_every_voter(n in 1usize..300) {
        let all = blades(n);
        let plan = EtcdPlan::new(Uuid::nil(), &all, None, Millis(100), Millis(1000));
        let initial: Vec<String> = plan.initial_cluster().split(',').map(str::to_owned).collect();
        let endpoints = plan.endpoints();
        prop_assert_eq!(initial.len(), plan.voters.len());
        prop_assert_eq!(endpoints.len(), plan.voters.len());
        for v in &plan.voters {
            let (name, ip) = &all[v.index];
            prop_assert_eq!(&v.name, name);
            let member = format!("{name}=http://{ip}:2380");
            let endpoint = format!("http://{ip}:2379");
            prop_assert!(initial.contains(&member), "{} not in {:?}", member, initial);
            prop_assert!(endpoints.contains(&endpoint), "{} not in {:?}", endpoint, endpoints);
        }
    }
}

/// A plan written before etcd was planned still reads, with no voters.
#[test]
fn a_plan_without_etcd_reads_as_one_with_no_voters() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/demo.json");
    let text = std::fs::read_to_string(&path).expect("the golden demo plan");
    let mut json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let full = cluster::Plan::from_json(&text).expect("the golden plan reads");
    assert_eq!(full.etcd.voters.len(), 3);
    json.as_object_mut().expect("an object").remove("etcd");
    let old = cluster::Plan::from_json(&json.to_string()).expect("a plan without etcd reads");
    assert!(old.etcd.voters.is_empty());
    assert_eq!(old.nodes, full.nodes);
}
