//! Image tier, run as root: the tar reader on random and mutated input
//! (property tests, a fixed number of cases, so a bounded time). Whatever
//! the bytes, extracting returns (never panics, never hangs: the input is
//! finite and every read consumes it), an error names the archive, and
//! nothing outside the root changes.
// Helpers outside #[test] functions panic on purpose too.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use imagebuilder::formats::untar;
use proptest::prelude::*;
use tar::{EntryType, Header};

/// Valid archives with every member type the reader knows (GNU and PAX
/// headers, long names, xattrs), for the mutations to start from.
fn seeds() -> Vec<Vec<u8>> {
    fn add(
        b: &mut tar::Builder<Vec<u8>>,
        kind: EntryType,
        name: &str,
        link: Option<&str>,
        data: &[u8],
    ) {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_mtime(1_600_000_000);
        h.set_size(data.len() as u64);
        if kind.is_character_special() {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        }
        match link {
            Some(l) => b.append_link(&mut h, name, l).unwrap(),
            None => b.append_data(&mut h, name, data).unwrap(),
        }
    }
    let mut b = tar::Builder::new(Vec::new());
    add(&mut b, EntryType::Directory, "etc/", None, b"");
    add(&mut b, EntryType::Regular, "etc/hostname", None, b"node\n");
    add(
        &mut b,
        EntryType::Symlink,
        "etc/mtab",
        Some("/proc/self/mounts"),
        b"",
    );
    add(
        &mut b,
        EntryType::Link,
        "etc/hostname2",
        Some("etc/hostname"),
        b"",
    );
    add(&mut b, EntryType::Fifo, "run-fifo", None, b"");
    add(&mut b, EntryType::Char, "null", None, b"");
    let long = format!("usr/share/{}/{}", "d".repeat(80), "f".repeat(90));
    add(&mut b, EntryType::Regular, &long, None, b"long");
    b.append_pax_extensions([("SCHILY.xattr.user.vlx", b"kept".as_slice())])
        .unwrap();
    add(&mut b, EntryType::Regular, "with-xattr", None, b"x");
    let gnu = b.into_inner().unwrap();

    let mut u = tar::Builder::new(Vec::new());
    let mut h = Header::new_ustar();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o755);
    h.set_size(3);
    u.append_data(&mut h, "bin/sh", &b"abc"[..]).unwrap();
    let ustar = u.into_inner().unwrap();
    vec![gnu, ustar]
}

fn fingerprint(dir: &Path) -> Vec<(String, u32, u64, u64)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(p) = todo.pop() {
        let md = fs::symlink_metadata(&p).unwrap();
        out.push((p.display().to_string(), md.mode(), md.size(), md.ino()));
        if md.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                todo.push(e.unwrap().path());
            }
        }
    }
    out.sort();
    out
}

/// Extracts `data` into a fresh root beside a sentinel folder; checks the
/// outcome's contract.
fn check(data: &[u8]) -> Result<(), TestCaseError> {
    // SAFETY: geteuid cannot fail.
    prop_assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the tar reader's fuzz tests make device nodes and owners: run them as root"
    );
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("victim"), b"intact").unwrap();
    let root = t.path().join("root");
    fs::create_dir(&root).unwrap();
    let before = fingerprint(&outside);
    match untar::extract(data, &root, Path::new("fuzz.tar")) {
        Ok(_) => {}
        Err(e) => {
            let m = e.to_string();
            prop_assert!(m.contains("fuzz.tar") && !m.contains('\n'), "{}", m);
        }
    }
    prop_assert_eq!(fingerprint(&outside), before);
    prop_assert_eq!(
        fs::read(outside.join("victim")).unwrap(),
        b"intact".to_vec()
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_archives_never_panic(
        seed in 0usize..2,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..24),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let mut data = seeds().swap_remove(seed);
        for (at, byte) in flips {
            let i = at.index(data.len());
            data[i] = byte;
        }
        if let Some(c) = cut {
            data.truncate(c.index(data.len()));
        }
        check(&data)?;
    }

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        check(&data)?;
    }

    #[test]
    fn random_headers_never_panic(
        fields in proptest::collection::vec(any::<u8>(), 512..513),
        kind in prop::sample::select(b"0123456LKxgSDV\0".to_vec()),
    ) {
        // A well-formed checksum, so the reader looks at every field.
        let mut h = Header::new_old();
        h.as_mut_bytes().copy_from_slice(&fields);
        h.as_mut_bytes()[156] = kind;
        h.set_cksum();
        let mut data = h.as_bytes().to_vec();
        data.extend_from_slice(&[0u8; 2048]);
        check(&data)?;
    }
}
