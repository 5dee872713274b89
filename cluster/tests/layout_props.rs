//! Properties of every plan made from a valid profile: partitions never
//! overlap, fit the disk and are 1 MiB aligned; each node has exactly one
//! COW volume; GUIDs are unique; the GPT bytes decode to the same table.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup errors

use std::collections::HashSet;

use cluster::{Bytes, Role, SanFacts, Source, Trusting};
use proptest::prelude::*;

const MIB: u64 = 1 << 20;

#[derive(Debug, Clone)]
struct Case {
    nodes: usize,
    swap_mib: u64,
    sector: u32,
    esp_mib: u64,
    meta_mib: u64,
    origin_mib: u64,
    cow_mib: u64,
    shared: Option<u64>,
    shared_on: bool,
    extra_mib: u64,
}

impl Case {
    fn text(&self) -> String {
        let shared = match self.shared {
            Some(m) => format!("\"{m}MiB\""),
            None => "\"rest\"".into(),
        };
        format!(
            "[cluster]\nname = \"p\"\nuuid = \"0f0e0d0c-0b0a-4908-8706-050403020100\"\ndomain = \"p.test\"\n\
             [network]\ncidr = \"10.1.0.0/16\"\nvips = [\"10.1.255.250\"]\n\
             [[nodes]]\nname = \"n[1-{}]\"\nmac = \"52:54:00:aa:00:01\"\nip = \"10.1.0.1\"\n\
             [san]\nsector_size = {}\n\
             [storage]\nesp = \"{}MiB\"\nmeta = \"{}MiB\"\norigin = \"{}MiB\"\ncow = \"{}MiB\"\nswap = \"{}MiB\"\nshared = {shared}\n\
                          [services]\nshared = {}\n\
             [boot]\nfirmware = \"{}\"\n\
             [image]\nhost = \"h.toml\"\n",
            self.nodes,
            self.sector,
            self.esp_mib,
            self.meta_mib,
            self.origin_mib,
            self.cow_mib,
            self.swap_mib,
            self.shared_on,
            // BIOS boot needs 512-byte sectors.
            if self.sector == 512 { "both" } else { "uefi" }
        )
    }

    /// Enough bytes for every volume, the GPT copies and alignment.
    fn needed(&self) -> u64 {
        let per_node = self.cow_mib + self.swap_mib;
        let shared = if self.shared_on {
            self.shared.unwrap_or(64)
        } else {
            0
        };
        (1 + self.esp_mib
            + self.meta_mib
            + self.origin_mib
            + per_node * self.nodes as u64
            + shared
            + 1)
            * MIB
    }
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<bool>(),
        prop_oneof![Just(512u32), Just(4096u32)],
        (260u64..600, 64u64..512, 16u64..4096, 16u64..2048),
        prop_oneof![Just(None), (64u64..4096).prop_map(Some)],
        any::<bool>(),
        0u64..10_000,
        1usize..=125,
    )
        .prop_map(
            |(swap, sector, (esp, meta, origin, cow), shared, shared_on, extra, nodes)| Case {
                nodes,
                swap_mib: if swap { 1 + origin % 512 } else { 0 },
                sector,
                esp_mib: esp,
                meta_mib: meta,
                origin_mib: origin,
                cow_mib: cow,
                shared,
                shared_on,
                extra_mib: extra,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn plans_of_valid_profiles_are_sound(c in case()) {
        let size = c.needed() + c.extra_mib * MIB;
        let source = Source::new("p.toml", c.text());
        let san = SanFacts { size: Some(Bytes(size)), sector_size: None };
        let (_, plan) = cluster::load(&source, &Trusting, san).map_err(|d| TestCaseError::fail(d.to_string()))?;
        let d = &plan.disk;
        let s = d.sector_size.bytes();
        prop_assert_eq!(d.lbas, size / s);
        let mut prev_last = None;
        for p in &d.partitions {
            prop_assert!(p.first_lba >= d.first_usable && p.last_lba <= d.last_usable, "{} outside the usable area", p.label);
            prop_assert!(p.first_lba <= p.last_lba);
            if let Some(l) = prev_last {
                prop_assert!(p.first_lba.0 > l, "{} overlaps its predecessor", p.label);
            }
            prev_last = Some(p.last_lba.0);
            prop_assert_eq!(p.first_lba.0 * s % MIB, 0, "{} start not MiB aligned", &p.label);
            prop_assert_eq!(p.size.get() % MIB, 0, "{} size not whole MiB", &p.label);
            prop_assert_eq!(p.size.get(), (p.last_lba.0 - p.first_lba.0 + 1) * s);
        }
        for n in &plan.nodes {
            let cows: Vec<_> = d.partitions.iter().filter(|p| p.role == Role::Cow { node: n.name.to_string() }).collect();
            prop_assert_eq!(cows.len(), 1, "{} has {} COW volumes", n.name, cows.len());
            prop_assert_eq!(&cows[0].label, &n.cow);
        }
        let mut guids: HashSet<_> = d.partitions.iter().map(|p| p.guid).collect();
        prop_assert_eq!(guids.len(), d.partitions.len());
        prop_assert!(guids.insert(d.disk_guid), "the disk GUID repeats a partition GUID");

        // The bytes decode to the same table.
        let writes = cluster::gpt::encode(d);
        let header = writes.iter().find(|w| w.offset.get() == s).unwrap();
        let h = cluster::gpt::Header::parse(&header.data).unwrap();
        let entries = writes.iter().find(|w| w.offset.get() == 2 * s).unwrap();
        let parsed = cluster::gpt::parse_entries(&h, &entries.data).unwrap();
        prop_assert_eq!(parsed.len(), d.partitions.len());
        for (e, p) in parsed.iter().zip(&d.partitions) {
            prop_assert_eq!((&e.name, e.first_lba, e.last_lba, e.guid, e.type_guid), (&p.label, p.first_lba.0, p.last_lba.0, p.guid, p.type_guid));
        }
    }

    #[test]
    fn too_small_sans_are_refused_with_the_sizes(c in case(), short in 1u64..512) {
        let size = c.needed().saturating_sub(short * MIB + 64 * MIB).max(64 * MIB);
        let source = Source::new("p.toml", c.text());
        let san = SanFacts { size: Some(Bytes(size)), sector_size: None };
        match cluster::load(&source, &Trusting, san) {
            Ok((_, plan)) => prop_assert!(false, "a {size}-byte SAN took a layout ending at LBA {}", plan.disk.partitions.last().unwrap().last_lba),
            Err(d) => prop_assert!(d.to_string().contains("the layout needs"), "{d}"),
        }
    }
}
