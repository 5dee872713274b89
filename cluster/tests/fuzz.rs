//! Fuzz targets, as property tests: the profile reader and the GPT reader
//! take any bytes without a panic or a hang, and every error they return
//! says something (a profile error names a line and column of the file).
//!
//! Inputs are seeds, mutated: the profiles under `tests/corpus/profile/`,
//! `tests/fixtures/bad/` and `profiles/clusters/`, and the GPTs of the
//! golden plans plus `tests/corpus/gpt/`. `cargo xtask test` runs the
//! default 256 cases per target; `cargo xtask fuzz` sets PROPTEST_CASES
//! higher.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup errors

use std::path::{Path, PathBuf};

use cluster::{SanFacts, Source, Trusting};
use proptest::prelude::*;

fn here() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_owned()
}

/// Every file with extension `ext` in each folder, sorted.
fn files(dirs: &[PathBuf], ext: &str) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = dirs
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no .{ext} seeds in {dirs:?}");
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Pieces worth splicing into a TOML profile.
const TOKENS: &[&[u8]] = &[
    b"[",
    b"]",
    b"\"",
    b"=",
    b"\n",
    b"[[nodes]]\n",
    b"[1-99999999]",
    b"[9-1]",
    b"18446744073709551616",
    b"-1",
    b"\"rest\"",
    b"\"0\"",
    b"ff:ff:ff:ff:ff:ff",
    b"0.0.0.0/0",
    b"255.255.255.255/32",
    b"\xff\xfe",
    b"\\u0000",
    b"{ a = 1 }",
];

/// Applies edits to a seed: flip, insert, delete, splice a token, or cut.
fn mutate(seed: &[u8], edits: &[(u8, usize, u8)]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for &(op, at, v) in edits {
        let i = if b.is_empty() { 0 } else { at % (b.len() + 1) };
        match op % 5 {
            0 if i < b.len() => b[i] ^= v.max(1),
            1 => b.insert(i, v),
            2 if i < b.len() => {
                b.remove(i);
            }
            3 => {
                let t = TOKENS[v as usize % TOKENS.len()];
                b.splice(i..i, t.iter().copied());
            }
            4 => b.truncate(i),
            _ => {}
        }
    }
    b
}

fn edits() -> impl Strategy<Value = Vec<(u8, usize, u8)>> {
    prop::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 0..12)
}

/// The property of the profile reader: any bytes give a plan or
/// diagnostics, each naming a place that exists in the text.
fn read_profile(bytes: Vec<u8>) -> Result<(), TestCaseError> {
    let source = match Source::from_bytes("fuzz.toml", bytes) {
        Ok(s) => s,
        Err(d) => {
            prop_assert_eq!(d.len(), 1);
            return Ok(());
        }
    };
    let lines = source.text().lines().count().max(1);
    for san in [
        SanFacts::default(),
        SanFacts {
            size: Some(cluster::Bytes(8 << 30)),
            sector_size: Some(cluster::SectorSize::B4096),
        },
    ] {
        if let Err(d) = cluster::load(&source, &Trusting, san) {
            prop_assert!(!d.is_empty(), "an error without a diagnostic");
            for x in d.iter() {
                prop_assert!(
                    x.line >= 1 && x.line <= lines + 1 && x.column >= 1,
                    "{x} is outside the text ({lines} lines)"
                );
                prop_assert!(!x.message.is_empty() && !x.key.is_empty(), "{x}");
            }
        }
    }
    Ok(())
}

fn profile_seeds() -> Vec<Vec<u8>> {
    let h = here();
    files(
        &[
            h.join("tests/corpus/profile"),
            h.join("tests/fixtures/bad"),
            h.join("../profiles/clusters"),
        ],
        "toml",
    )
}

/// The first and last sectors of each golden plan's disk (protective MBR,
/// headers and entry arrays) as one buffer, with the sector size; and the
/// stored seeds (512-byte sectors).
fn gpt_seeds() -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    for name in ["demo", "rack-64"] {
        let text =
            std::fs::read_to_string(here().join(format!("tests/golden/{name}.json"))).unwrap();
        let plan = cluster::Plan::from_json(&text).unwrap();
        let s = plan.disk.sector_size.bytes();
        let head = plan.disk.first_usable.0 * s;
        let mut buf = vec![0u8; head as usize];
        for w in cluster::gpt::encode(&plan.disk) {
            if w.offset.get() < head {
                let at = w.offset.get() as usize;
                buf[at..at + w.data.len()].copy_from_slice(&w.data);
            }
        }
        out.push((s, buf));
    }
    for b in files(&[here().join("tests/corpus/gpt")], "bin") {
        out.push((512, b));
    }
    out
}

/// The property of the GPT reader: a header sector and the bytes after it
/// decode or fail with an error that says what is wrong; every entry it
/// returns has a size and an offset at both sector sizes.
fn read_gpt(sector: u64, bytes: &[u8]) -> Result<(), TestCaseError> {
    let s = sector as usize;
    let Some(hdr) = bytes.get(s..(2 * s).min(bytes.len())) else {
        return Ok(());
    };
    match cluster::gpt::Header::parse(hdr) {
        Err(e) => prop_assert!(!e.to_string().is_empty()),
        Ok(h) => {
            prop_assert!(h.entries_len() <= cluster::gpt::MAX_ENTRIES_LEN);
            let start = (h.entries_lba.min(1 << 20) as usize).saturating_mul(s);
            let tail = bytes.get(start..).unwrap_or(&[]);
            match cluster::gpt::parse_entries(&h, tail) {
                Err(e) => prop_assert!(!e.to_string().is_empty()),
                Ok(entries) => {
                    for e in entries {
                        for ss in [cluster::SectorSize::B512, cluster::SectorSize::B4096] {
                            let _ = (e.offset(ss), e.size(ss));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

proptest! {
    // A failing input is printed; add it to tests/corpus/ to keep it.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn fuzz_profile_reader(seed in prop::sample::select(profile_seeds()), e in edits()) {
        read_profile(mutate(&seed, &e))?;
    }

    #[test]
    fn fuzz_profile_reader_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        read_profile(bytes)?;
    }

    #[test]
    fn fuzz_gpt_reader(seed in prop::sample::select(gpt_seeds()), e in edits(), fix_crc in any::<bool>()) {
        let (sector, bytes) = seed;
        let mut b = mutate(&bytes, &e);
        if fix_crc {
            // Most mutations break the header CRC; recompute it so that the
            // fields behind it are reached too.
            let s = sector as usize;
            if b.len() >= s + 92 {
                let room = s.min(b.len() - s);
                let size = (u32::from_le_bytes([b[s + 12], b[s + 13], b[s + 14], b[s + 15]]) as usize).clamp(92, room);
                b[s + 16..s + 20].fill(0);
                let crc = crc32fast::hash(&b[s..s + size]);
                b[s + 16..s + 20].copy_from_slice(&crc.to_le_bytes());
            }
        }
        read_gpt(sector, &b)?;
    }
}

/// Every stored seed is read as it is, too.
#[test]
fn the_seed_corpus_reads_cleanly() {
    for seed in profile_seeds() {
        read_profile(seed).unwrap();
    }
    for (s, b) in gpt_seeds() {
        read_gpt(s, &b).unwrap();
    }
}
