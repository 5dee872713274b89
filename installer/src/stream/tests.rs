#![allow(clippy::unwrap_used)]

use std::os::unix::fs::FileExt;

use super::*;
use crate::device;

#[test]
fn zero_detection() {
    let mut v = vec![0u8; 4099];
    assert!(all_zero(&v));
    v[4098] = 1;
    assert!(!all_zero(&v));
    v[4098] = 0;
    v[1] = 1;
    assert!(!all_zero(&v[1..]));
}

/// A one-node plan whose origin partition holds a few blocks.
fn plan() -> cluster::Plan {
    let text = "[cluster]\nname = \"t\"\nuuid = \"6f1c0a4e-3b8e-4d3a-9d2a-1f0e5c7b9a10\"\ndomain = \"t.test\"\n\
        [network]\ncidr = \"10.0.0.0/24\"\nvips = [\"10.0.0.250\"]\n\
        [[nodes]]\nname = \"n1\"\nmac = \"52:54:00:00:00:01\"\nip = \"10.0.0.1\"\n\
        [storage]\norigin = \"32MiB\"\ncow = \"16MiB\"\n[image]\nhost = \"h.toml\"\n";
    let source = cluster::Source::new("t.toml", text);
    let san = cluster::SanFacts {
        size: Some(cluster::Bytes(1 << 30)),
        sector_size: None,
    };
    cluster::load(&source, &cluster::Trusting, san).unwrap().1
}

/// A blank SAN file opened as a target, and the origin's offset and size.
fn target(dir: &Path) -> (Target, PathBuf, u64, u64) {
    let plan = plan();
    let san = dir.join("san.img");
    File::create(&san)
        .unwrap()
        .set_len(plan.disk.size.get())
        .unwrap();
    let checked = device::check(device::inspect(&san).unwrap(), &plan, false).unwrap();
    let origin = cluster::Locate::locate(&plan.volumes(), &cluster::Role::Origin).unwrap();
    (
        Target::open(checked).unwrap(),
        san,
        origin.offset.get(),
        origin.size.get(),
    )
}

/// A source of a filled block, a zero block and a short filled tail (not
/// a multiple of the direct-I/O alignment), with its sha256.
fn source(dir: &Path) -> (PathBuf, Vec<u8>, String) {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut filled = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x as u8) | 1
            })
            .collect()
    };
    let mut data = filled(BLOCK);
    data.extend(vec![0u8; BLOCK]);
    data.extend(filled(4097));
    let path = dir.join("origin.ext4");
    std::fs::write(&path, &data).unwrap();
    let sha = hex(&Sha256::digest(&data));
    (path, data, sha)
}

#[test]
fn copies_and_reads_back_what_the_manifest_says() {
    let d = tempfile::tempdir().unwrap();
    let (target, san, offset, room) = target(d.path());
    let (src, data, sha) = source(d.path());
    // Whatever the zero block lands on must read as zeros afterwards.
    let san_file = std::fs::OpenOptions::new().write(true).open(&san).unwrap();
    san_file
        .write_all_at(&vec![0xa5; BLOCK], offset + BLOCK as u64)
        .unwrap();
    let seen = std::sync::Mutex::new(Vec::new());
    let c = copy_verified(&src, &sha, &target, offset, room, &|done| {
        seen.lock().unwrap().push(done)
    })
    .unwrap();
    assert_eq!(c.bytes, data.len() as u64);
    assert_eq!(c.sha256, sha);
    assert_eq!(
        *seen.lock().unwrap(),
        [BLOCK as u64, 2 * BLOCK as u64, data.len() as u64]
    );
    let back = device::read_at(target.file(), offset, data.len()).unwrap();
    assert!(back == data, "the target does not hold the source");
}

#[test]
fn a_source_unlike_its_manifest_is_named() {
    let d = tempfile::tempdir().unwrap();
    let (target, san, offset, room) = target(d.path());
    let (src, data, sha) = source(d.path());
    let mut other = data.clone();
    other[7] ^= 1;
    let want = hex(&Sha256::digest(&other));
    let e = copy_verified(&src, &want, &target, offset, room, &|_| {}).unwrap_err();
    match &e {
        StreamError::SourceHash {
            path,
            got,
            want: w,
            target: t,
            offset: o,
        } => {
            assert_eq!(path, &src);
            assert_eq!((got, w), (&sha, &want));
            assert_eq!((t, *o), (&san, offset));
        }
        other => panic!("{other}"),
    }
    let text = e.to_string();
    assert!(
        text.contains(&src.display().to_string()) && text.contains("damaged"),
        "{text}"
    );
}

#[test]
fn other_bytes_from_the_target_are_found() {
    let d = tempfile::tempdir().unwrap();
    let (target, san, offset, room) = target(d.path());
    let (src, data, sha) = source(d.path());
    copy_verified(&src, &sha, &target, offset, room, &|_| {}).unwrap();
    let file = File::open(&src).unwrap();
    let size = data.len() as u64;

    // The first read back differed, a second matches: unstable reads.
    let e = mismatch(&file, &src, size, &target, offset, &sha, "0".repeat(64));
    assert!(
        matches!(
            e,
            StreamError::ReadBack {
                first_difference: None,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("not stable"), "{e}");

    // A byte of the zero block changed on the target.
    let at = BLOCK as u64 + 5000;
    let san_file = std::fs::OpenOptions::new().write(true).open(&san).unwrap();
    san_file.write_all_at(&[1], offset + at).unwrap();
    let e = mismatch(&file, &src, size, &target, offset, &sha, "0".repeat(64));
    match &e {
        StreamError::ReadBack {
            target: t,
            offset: o,
            path,
            first_difference,
            ..
        } => {
            assert_eq!((t, *o, path), (&san, offset, &src));
            assert_eq!(*first_difference, Some(at));
        }
        other => panic!("{other}"),
    }
    let text = e.to_string();
    assert!(
        text.contains(&format!("at byte {} of the target", offset + at)),
        "{text}"
    );
}
