//! The pure model: subnets, addresses, errors; property tests.

#![allow(clippy::unwrap_used)] // helpers and proptest bodies panic by design

mod common;

use std::net::Ipv4Addr;

use cluster::Ipv4Net;
use proptest::prelude::*;
use vc_net::model::{self, overlaps};
use vc_net::{NamedNet, NetError, NetPlan, SubnetPool};

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

#[test]
fn addresses_in_index_order_and_the_gateway_first() {
    let plan = NetPlan::new(&common::demo()).unwrap();
    let a = &plan.vcs[0];
    assert_eq!(a.gateway, ip("10.200.0.1"));
    let addrs: Vec<_> = a.vms.iter().map(|v| v.addr).collect();
    assert_eq!(
        addrs,
        [ip("10.200.0.2"), ip("10.200.0.3"), ip("10.200.0.4")]
    );
    assert_eq!(plan.vm("b", "vm2").unwrap().addr, ip("10.200.1.3"));
    assert_eq!(plan.vm("a", "vm1").unwrap().tap, "vx0276000a0001");
}

#[test]
fn a_blade_routes_other_blades_vms_and_carries_its_own() {
    let plan = NetPlan::new(&common::demo()).unwrap();
    let b1 = plan.blade("b1").unwrap();
    let local: Vec<_> = b1
        .local
        .iter()
        .map(|l| format!("{}/{}", l.vc, l.vm))
        .collect();
    assert_eq!(local, ["a/vm1", "a/vm3", "b/vm1"]);
    let routes: Vec<_> = b1
        .routes
        .iter()
        .map(|r| format!("{} {} via {}", r.vm, r.dest, r.via))
        .collect();
    assert_eq!(
        routes,
        [
            "a/vm2 10.200.0.3 via 10.77.0.12",
            "b/vm2 10.200.1.3 via 10.77.0.12"
        ]
    );
    // b3 runs nothing: it routes to all five.
    assert_eq!(plan.blade("b3").unwrap().routes.len(), 5);
    assert!(matches!(plan.blade("b9"), Err(NetError::NoSuchBlade(_))));
}

#[test]
fn overlaps_are_bad_input_naming_both() {
    let mut input = common::demo();
    input.vcs[1].subnet = net("10.77.0.0/25");
    let e = NetPlan::new(&input).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert_eq!(
        e.to_string(),
        "subnet 10.77.0.0/25 of VC b overlaps the cluster network network.cidr (10.77.0.0/24)"
    );

    let mut input = common::demo();
    input.vcs[1].subnet = net("10.200.0.128/25");
    let e = NetPlan::new(&input).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert_eq!(
        e.to_string(),
        "subnet 10.200.0.128/25 of VC b overlaps VC a (10.200.0.0/24)"
    );

    let mut input = common::demo();
    input.vcs[1].subnet = net("8.8.8.0/24");
    let e = NetPlan::new(&input).unwrap_err();
    assert!(
        e.to_string().contains("8.8.8.0/24 of VC b is not private"),
        "{e}"
    );
}

#[test]
fn more_vms_than_the_subnet_holds_is_bad_input() {
    let mut input = common::demo();
    input.vcs[0].subnet = net("10.200.0.0/30");
    let e = NetPlan::new(&input).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert_eq!(
        e.to_string(),
        "VC a asks for 3 addresses but its subnet 10.200.0.0/30 holds 1 VMs (its host addresses less the gateway)"
    );
    input.vcs[0].vms.truncate(1);
    NetPlan::new(&input).unwrap();
}

#[test]
fn placement_errors_name_their_object() {
    let mut input = common::demo();
    input.vcs[0].vms[1].blade = "b7".into();
    assert_eq!(
        NetPlan::new(&input).unwrap_err().to_string(),
        "VM a/vm2 runs on blade `b7`, which is not in the blade list"
    );
    let mut input = common::demo();
    input.vcs[1].vms[0].mac = input.vcs[0].vms[0].mac;
    assert_eq!(
        NetPlan::new(&input).unwrap_err().to_string(),
        "MAC 02:76:00:0a:00:01 (VMs a/vm1 and b/vm1) appears twice"
    );
    let mut input = common::demo();
    input.vcs[1].name = "a".into();
    assert_eq!(
        NetPlan::new(&input).unwrap_err().to_string(),
        "VC a appears twice"
    );
    let mut input = common::demo();
    input.vcs[1].vms[1].name = "Vm_2".into();
    assert!(
        NetPlan::new(&input)
            .unwrap_err()
            .to_string()
            .starts_with("VM name `b/Vm_2` is not a DNS label")
    );
}

#[test]
fn the_vc_table_of_a_profile() {
    let text = "[cluster]\nname = \"demo\"\n\n[vc]\nsubnet_pool = \"10.200.0.0/16\"\n";
    let p = SubnetPool::from_profile("demo.toml", text)
        .unwrap()
        .unwrap();
    assert_eq!(p.subnet_pool, net("10.200.0.0/16"));
    assert_eq!(p.prefix, 24);
    assert_eq!(
        SubnetPool::from_profile("x.toml", "[cluster]\n").unwrap(),
        None
    );

    let e = SubnetPool::from_profile(
        "x.toml",
        "[vc]\nsubnet_pool = \"10.200.0.0/16\"\nprefx = 24\n",
    )
    .unwrap_err();
    assert_eq!(e.exit_code(), 2);
    let msg = e.to_string();
    assert!(msg.starts_with("x.toml: [vc]: "), "{msg}");
    assert!(msg.contains("line 3") && msg.contains("prefx"), "{msg}");

    let e = SubnetPool::from_profile(
        "x.toml",
        "[vc]\nsubnet_pool = \"10.200.0.0/16\"\nprefix = 12\n",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "x.toml: [vc] subnet_pool = \"10.200.0.0/16\": vc.prefix = 12 must be from 16 (the pool's own) to 30"
    );
    let e =
        SubnetPool::from_profile("x.toml", "[vc]\nsubnet_pool = \"100.64.0.0/16\"\n").unwrap_err();
    assert!(e.to_string().contains("not inside 10.0.0.0/8"), "{e}");
}

#[test]
fn the_pool_skips_the_clusters_networks_and_taken_subnets_until_exhausted() {
    let pool = SubnetPool {
        subnet_pool: net("10.77.0.0/22"),
        prefix: 24,
    };
    let cluster = [NamedNet {
        name: "network.cidr".into(),
        cidr: net("10.77.0.0/24"),
    }];
    let mut taken = Vec::new();
    for want in ["10.77.1.0/24", "10.77.2.0/24", "10.77.3.0/24"] {
        let got = pool.allocate(&cluster, &taken).unwrap();
        assert_eq!(got, net(want));
        taken.push(got);
    }
    let e = pool.allocate(&cluster, &taken).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(
        e.to_string()
            .starts_with("the VC subnet pool 10.77.0.0/22 is exhausted: no free /24 is left beside the cluster's networks and the 3 VC subnet(s) in use"),
        "{e}"
    );
    // A freed block is taken again first.
    taken.remove(1);
    assert_eq!(
        pool.allocate(&cluster, &taken).unwrap(),
        net("10.77.2.0/24")
    );
}

#[test]
fn a_subnet_asked_for_at_creation_is_checked() {
    let cluster = [NamedNet {
        name: "network.cidr".into(),
        cidr: net("10.77.0.0/24"),
    }];
    let taken = [("a".to_string(), net("10.200.0.0/24"))];
    model::check_subnet("c", net("10.200.1.0/24"), &cluster, &taken).unwrap();
    let e = model::check_subnet("c", net("10.200.0.0/16"), &cluster, &taken).unwrap_err();
    assert_eq!(
        e.to_string(),
        "subnet 10.200.0.0/16 of VC c overlaps VC a (10.200.0.0/24)"
    );
    let e = model::check_subnet("c", net("10.200.9.0/31"), &cluster, &taken).unwrap_err();
    assert!(e.to_string().contains("too small"), "{e}");
}

fn arb_pool() -> impl Strategy<Value = (SubnetPool, Vec<NamedNet>)> {
    (
        16u8..=24,
        0u8..=6,
        proptest::collection::vec((0u32..=1023, 20u8..=28), 0..3),
    )
        .prop_map(|(pp, extra, clusters)| {
            let pool = Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), pp).unwrap();
            let prefix = (pp + extra).min(30);
            let cluster_nets = clusters
                .into_iter()
                .enumerate()
                .map(|(i, (block, p))| {
                    let a = u32::from(pool.network()) + (block << 8);
                    let a = Ipv4Addr::from(a & (u32::MAX << (32 - u32::from(p))));
                    NamedNet {
                        name: format!("net{i}"),
                        cidr: Ipv4Net::new(a, p).unwrap(),
                    }
                })
                .collect();
            (
                SubnetPool {
                    subnet_pool: pool,
                    prefix,
                },
                cluster_nets,
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Allocation gives disjoint subnets of the pool that avoid the cluster's
    /// networks, until the pool is exhausted, exactly when no free block is left.
    #[test]
    fn allocation_is_disjoint_and_exhausts_exactly((pool, cluster) in arb_pool(), n in 1usize..40) {
        let mut taken: Vec<Ipv4Net> = Vec::new();
        for _ in 0..n {
            match pool.allocate(&cluster, &taken) {
                Ok(s) => {
                    prop_assert_eq!(s.prefix(), pool.prefix);
                    prop_assert!(pool.subnet_pool.contains(s.network()));
                    prop_assert!(pool.subnet_pool.contains(s.broadcast()));
                    prop_assert!(cluster.iter().all(|c| !overlaps(c.cidr, s)));
                    prop_assert!(taken.iter().all(|t| !overlaps(*t, s)));
                    taken.push(s);
                }
                Err(e) => {
                    prop_assert!(matches!(e, NetError::PoolExhausted { .. }), "{}", e);
                    // Exhausted means: no block of the pool is free.
                    let step = 1u32 << (32 - u32::from(pool.prefix));
                    let blocks = 1u32 << (pool.prefix - pool.subnet_pool.prefix());
                    for i in 0..blocks {
                        let b = Ipv4Net::new(Ipv4Addr::from(u32::from(pool.subnet_pool.network()) + i * step), pool.prefix).unwrap();
                        let free = cluster.iter().all(|c| !overlaps(c.cidr, b)) && taken.iter().all(|t| !overlaps(*t, b));
                        prop_assert!(!free, "{} is free", b);
                    }
                    break;
                }
            }
        }
    }

    /// Every VM gets a distinct host address of its subnet other than the
    /// gateway; every blade routes exactly the VMs of other blades via them;
    /// the same input gives the same plan.
    #[test]
    fn addresses_and_routes(
        prefix in 26u8..=30,
        vms in proptest::collection::vec(0usize..3, 1..8),
    ) {
        let mut input = common::demo();
        input.vcs.truncate(1);
        input.vcs[0].subnet = Ipv4Net::new(Ipv4Addr::new(10, 200, 0, 0), prefix).unwrap();
        input.vcs[0].vms = vms
            .iter()
            .enumerate()
            .map(|(i, b)| common::vm(&format!("vm{}", i + 1), &format!("02:76:00:0a:00:{:02x}", i + 1), &format!("b{}", b + 1)))
            .collect();
        let subnet = input.vcs[0].subnet;
        let fits = vms.len() as u64 <= model::vm_capacity(subnet);
        match NetPlan::new(&input) {
            Err(e) => {
                prop_assert!(!fits);
                let is_too_many = matches!(e, NetError::TooManyVms { .. });
                prop_assert!(is_too_many, "{}", e);
            }
            Ok(plan) => {
                prop_assert!(fits);
                prop_assert_eq!(&plan, &NetPlan::new(&input).unwrap());
                let vc = &plan.vcs[0];
                let mut seen = std::collections::BTreeSet::new();
                for (i, vm) in vc.vms.iter().enumerate() {
                    prop_assert_eq!(vm.index, i);
                    prop_assert!(subnet.is_host(vm.addr));
                    prop_assert!(vm.addr != vc.gateway);
                    prop_assert!(seen.insert(vm.addr));
                    if i > 0 {
                        prop_assert!(vc.vms[i - 1].addr < vm.addr);
                    }
                }
                for b in &plan.blades {
                    let part = plan.blade(&b.name).unwrap();
                    for vm in &vc.vms {
                        let routed: Vec<_> = part.routes.iter().filter(|r| r.dest == vm.addr).collect();
                        let local = part.local.iter().filter(|l| l.addr == vm.addr).count();
                        if vm.blade == b.name {
                            prop_assert!(routed.is_empty());
                            prop_assert_eq!(local, 1);
                        } else {
                            prop_assert_eq!(routed.len(), 1);
                            prop_assert_eq!(Some(routed[0].via), plan.blade_addr(&vm.blade));
                            prop_assert_eq!(local, 0);
                        }
                    }
                }
            }
        }
    }
}
