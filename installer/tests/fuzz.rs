//! Fuzz targets, as property tests: what `status` and `verify` read from a
//! SAN that may hold anything (the GPT through `device::read_gpt`, the
//! ext4 superblock check, `plan.json`, `journal.json`) takes any bytes
//! without a panic, a hang or an allocation the input asks for.
//!
//! Seeds: the GPTs of cluster's golden plans and `cluster/tests/corpus/gpt/`
//! (some with valid CRCs over hostile fields), mutated. `cargo xtask test`
//! runs the default 256 cases per target; `cargo xtask fuzz` more.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};

use cluster::{Bytes, SectorSize};
use proptest::prelude::*;

fn cluster_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../cluster/tests")
}

/// Sector size and the head of a disk: the golden plans' GPTs, and the
/// stored seeds.
fn gpt_seeds() -> Vec<(SectorSize, Vec<u8>)> {
    let mut out = Vec::new();
    for name in ["demo", "rack-64"] {
        let text =
            std::fs::read_to_string(cluster_dir().join(format!("golden/{name}.json"))).unwrap();
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
        out.push((plan.disk.sector_size, buf));
    }
    let dir = cluster_dir().join("corpus/gpt");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for p in paths {
        out.push((SectorSize::B512, std::fs::read(p).unwrap()));
    }
    assert!(out.len() > 2, "no seeds in {}", dir.display());
    out
}

fn mutate(seed: &[u8], edits: &[(u8, usize, u8)]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for &(op, at, v) in edits {
        let i = if b.is_empty() { 0 } else { at % (b.len() + 1) };
        match op % 4 {
            0 if i < b.len() => b[i] ^= v.max(1),
            1 => b.insert(i, v),
            2 if i < b.len() => {
                b.remove(i);
            }
            3 => b.truncate(i),
            _ => {}
        }
    }
    b
}

fn edits() -> impl Strategy<Value = Vec<(u8, usize, u8)>> {
    prop::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 0..12)
}

/// Reads the GPT of a disk holding `bytes` (a sparse file of `size`), at
/// both sector sizes: a table or none, and each entry's offset and size.
fn read_gpt(bytes: &[u8], size: u64) -> Result<(), TestCaseError> {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(bytes).unwrap();
    f.set_len(size.max(bytes.len() as u64)).unwrap();
    for s in [SectorSize::B512, SectorSize::B4096] {
        if let Some(g) = installer::device::read_gpt(&f, s, Bytes(size)).unwrap() {
            for e in &g.entries {
                let _ = (e.offset(s), e.size(s));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn fuzz_status_gpt_reader(seed in prop::sample::select(gpt_seeds()), e in edits(), big in any::<bool>()) {
        let (_, bytes) = seed;
        // A large disk puts the backup header far away, which the reader
        // then looks for.
        let size = if big { 1 << 40 } else { 8 << 20 };
        read_gpt(&mutate(&bytes, &e), size)?;
    }

    #[test]
    fn fuzz_meta_readers(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let _ = installer::fs::ext4_uuid(&bytes);
        let _ = installer::journal::Journal::parse(&bytes);
        if let Err(e) = cluster::Plan::from_json(&String::from_utf8_lossy(&bytes)) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn fuzz_journal_and_plan_json(seed in prop::sample::select(vec![
        installer::journal::Journal::new(uuid::Uuid::nil(), "0".repeat(64), "1".repeat(64)).to_json(),
        std::fs::read_to_string(cluster_dir().join("golden/demo.json")).unwrap(),
    ]), e in edits()) {
        let b = mutate(seed.as_bytes(), &e);
        let _ = installer::journal::Journal::parse(&b);
        if let Err(e) = cluster::Plan::from_json(&String::from_utf8_lossy(&b)) {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}

/// Every stored seed is read as it is, too (some only reach the reader's
/// limits with their CRCs intact).
#[test]
fn the_seed_corpus_reads_cleanly() {
    for (_, b) in gpt_seeds() {
        read_gpt(&b, 8 << 20).unwrap();
        read_gpt(&b, 1 << 40).unwrap();
    }
}
