//! Properties of placement over random VCs and blade lists.

use cluster::{Bytes, NodeName};
use proptest::prelude::*;
use vc::{Blade, Fit, Policy, Restart, VcId, VcName, VcSpec, place};

fn blades() -> impl Strategy<Value = Vec<Blade>> {
    prop::collection::vec((1u32..=16, 1u64..=32), 1..=8).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (cores, gib_quarters))| Blade {
                name: format!("b{i}").parse::<NodeName>().expect("valid name"),
                cores,
                memory: Bytes(gib_quarters * (256 << 20)),
            })
            .collect()
    })
}

fn spec() -> impl Strategy<Value = VcSpec> {
    (
        1u32..=40,
        1u32..=4,
        prop::sample::select(vec![64u64, 128, 256, 512, 1024]),
        prop::bool::ANY,
        prop::bool::ANY,
    )
        .prop_map(|(vms, vcpus, mib, block, strict)| {
            let name: VcName = "p".parse().expect("valid name");
            VcSpec {
                id: VcId::from_name(&name),
                name,
                guest: "tiny".into(),
                vms,
                vcpus,
                memory: Bytes::mib(mib),
                placement: if block { Policy::Block } else { Policy::Cyclic },
                mode: if strict { Fit::Strict } else { Fit::Free },
                restart: Restart::Manual,
            }
        })
}

/// How many VMs of `s` fit on `b`, counted independently of the code under
/// test.
fn cap(s: &VcSpec, b: &Blade) -> u64 {
    let mem = b.memory.get() / s.memory.get();
    match s.mode {
        Fit::Strict => mem.min(u64::from(b.cores / s.vcpus)),
        Fit::Free => mem,
    }
}

proptest! {
    #[test]
    fn same_inputs_same_placement(s in spec(), b in blades()) {
        prop_assert_eq!(place(&s, &b), place(&s, &b));
    }

    #[test]
    fn all_or_nothing_and_nothing_over_capacity(s in spec(), b in blades()) {
        let total: u64 = b.iter().map(|x| cap(&s, x)).sum();
        match place(&s, &b) {
            Ok(p) => {
                prop_assert!(total >= u64::from(s.vms));
                prop_assert_eq!(p.vms.len(), s.vms as usize);
                for (blade, n) in b.iter().zip(p.per_blade(&b)) {
                    // Memory always fits.
                    prop_assert!(u64::from(n) * s.memory.get() <= blade.memory.get());
                    if s.mode == Fit::Strict {
                        prop_assert!(n * s.vcpus <= blade.cores);
                    }
                }
                for (i, vm) in p.vms.iter().enumerate() {
                    prop_assert_eq!(vm.vm.0 as usize, i + 1);
                }
            }
            Err(r) => {
                prop_assert!(total < u64::from(s.vms));
                prop_assert_eq!(u64::from(r.fit), total);
                prop_assert_eq!(r.short.len(), b.len());
                for (sh, blade) in r.short.iter().zip(&b) {
                    prop_assert_eq!(&sh.blade, &blade.name);
                    prop_assert!(sh.free < sh.need);
                }
            }
        }
    }

    #[test]
    fn block_uses_the_fewest_blades(s in spec(), b in blades()) {
        let s = VcSpec { placement: Policy::Block, ..s };
        if let Ok(p) = place(&s, &b) {
            let mut caps: Vec<u64> = b.iter().map(|x| cap(&s, x)).collect();
            caps.sort_unstable_by(|x, y| y.cmp(x));
            let mut need = u64::from(s.vms);
            let mut fewest = 0;
            for c in caps {
                if need == 0 {
                    break;
                }
                need = need.saturating_sub(c);
                fewest += 1;
            }
            let used = p.per_blade(&b).iter().filter(|&&n| n > 0).count();
            prop_assert_eq!(used, fewest);
        }
    }

    #[test]
    fn cyclic_spreads(s in spec(), b in blades()) {
        let s = VcSpec { placement: Policy::Cyclic, ..s };
        if let Ok(p) = place(&s, &b) {
            let counts = p.per_blade(&b);
            // A blade with fewer VMs than another by two or more is full.
            for (i, &ni) in counts.iter().enumerate() {
                for &nj in &counts {
                    if nj >= ni + 2 {
                        prop_assert_eq!(u64::from(ni), cap(&s, &b[i]));
                    }
                }
            }
            // The first VMs go one per blade with room, in list order.
            let with_room: Vec<&NodeName> =
                b.iter().filter(|x| cap(&s, x) > 0).map(|x| &x.name).collect();
            for (vm, blade) in p.vms.iter().zip(&with_room) {
                prop_assert_eq!(&vm.blade, *blade);
            }
        }
    }

    #[test]
    fn macs_are_distinct_local_unicast(s in spec(), b in blades()) {
        if let Ok(p) = place(&s, &b) {
            let mut macs: Vec<_> = p.vms.iter().map(|v| v.mac).collect();
            for m in &macs {
                prop_assert_eq!(m.0[0] & 3, 2);
            }
            macs.sort();
            macs.dedup();
            prop_assert_eq!(macs.len(), s.vms as usize);
        }
    }
}
