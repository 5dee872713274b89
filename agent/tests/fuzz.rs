//! Fuzz targets, as property tests: the kernel command-line parser and the
//! GPT reader of the node agent take any input without a panic or a hang,
//! and every error names what is wrong.
//!
//! Seeds: the lines in `tests/corpus/cmdline/` and the GPTs of cluster's
//! golden plans and `cluster/tests/corpus/gpt/`, mutated. `cargo xtask test`
//! runs the default 256 cases per target; `cargo xtask fuzz` more.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use cluster::SectorSize;
use proptest::prelude::*;

fn sorted(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no seeds in {}", dir.display());
    paths
}

fn cmdline_seeds() -> Vec<String> {
    sorted(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/cmdline"))
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

fn gpt_seeds() -> Vec<Vec<u8>> {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cluster/tests");
    let mut out = Vec::new();
    for name in ["demo", "rack-64"] {
        let text = std::fs::read_to_string(tests.join(format!("golden/{name}.json"))).unwrap();
        let plan = cluster::Plan::from_json(&text).unwrap();
        let head = plan.disk.first_usable.0 * plan.disk.sector_size.bytes();
        let mut buf = vec![0u8; head as usize];
        for w in cluster::gpt::encode(&plan.disk) {
            if w.offset.get() < head {
                let at = w.offset.get() as usize;
                buf[at..at + w.data.len()].copy_from_slice(&w.data);
            }
        }
        out.push(buf);
    }
    for p in sorted(&tests.join("corpus/gpt")) {
        out.push(std::fs::read(p).unwrap());
    }
    out
}

/// Words worth splicing into a command line.
const WORDS: &[&str] = &[
    " ",
    "\"",
    "=",
    "vlx.",
    "vlx.cluster=",
    "vlx.san=iscsi",
    "vlx.san=disk",
    "vlx.sif=dhcp",
    "vlx.storage_port=",
    "vlx.san_wait=",
    "18446744073709551616",
    "256.1.1.1",
    "\u{0}",
    "é",
    "--",
    "\n",
];

fn mutate_text(seed: &str, edits: &[(u8, usize, u8)]) -> String {
    let mut chars: Vec<char> = seed.chars().collect();
    for &(op, at, v) in edits {
        let i = if chars.is_empty() {
            0
        } else {
            at % (chars.len() + 1)
        };
        match op % 4 {
            0 if i < chars.len() => {
                chars.remove(i);
            }
            1 => chars.insert(i, char::from(v)),
            2 => {
                let w = WORDS[v as usize % WORDS.len()];
                chars.splice(i..i, w.chars());
            }
            3 => chars.truncate(i),
            _ => {}
        }
    }
    chars.into_iter().collect()
}

fn mutate_bytes(seed: &[u8], edits: &[(u8, usize, u8)]) -> Vec<u8> {
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

fn parse_cmdline(line: &str) -> Result<(), TestCaseError> {
    if let Err(e) = agent::cmdline::parse(line) {
        prop_assert!(!e.to_string().is_empty());
    }
    Ok(())
}

/// The agent's GPT reader over a disk of `lbas` sectors holding `bytes`
/// (zeros past them), at both sector sizes.
fn read_gpt(bytes: &[u8], lbas: u64) -> Result<(), TestCaseError> {
    for s in [SectorSize::B512, SectorSize::B4096] {
        let read = |off: u64, len: usize| -> std::io::Result<Vec<u8>> {
            let mut out = vec![0u8; len];
            if let Ok(off) = usize::try_from(off)
                && off < bytes.len()
            {
                let n = len.min(bytes.len() - off);
                out[..n].copy_from_slice(&bytes[off..off + n]);
            }
            Ok(out)
        };
        match agent::san::read_gpt(s, lbas, read) {
            Ok(g) => {
                for e in &g.entries {
                    let _ = (e.offset(s), e.size(s));
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn fuzz_cmdline_parser(seed in prop::sample::select(cmdline_seeds()), e in edits()) {
        parse_cmdline(&mutate_text(&seed, &e))?;
    }

    #[test]
    fn fuzz_cmdline_parser_on_any_text(line in any::<String>()) {
        parse_cmdline(&line)?;
    }

    #[test]
    fn fuzz_agent_gpt_reader(seed in prop::sample::select(gpt_seeds()), e in edits(), big in any::<bool>()) {
        let lbas = if big { u64::MAX / 4096 } else { 16384 };
        read_gpt(&mutate_bytes(&seed, &e), lbas)?;
    }
}

/// Every stored seed is read as it is, too.
#[test]
fn the_seed_corpus_reads_cleanly() {
    for line in cmdline_seeds() {
        parse_cmdline(&line).unwrap();
    }
    // The seeds that name a cluster and a transport are valid lines.
    assert!(agent::cmdline::parse(&cmdline_seeds()[0]).is_ok());
    for b in gpt_seeds() {
        read_gpt(&b, 16384).unwrap();
        read_gpt(&b, u64::MAX / 4096).unwrap();
    }
}
