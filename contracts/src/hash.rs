//! Streaming sha256 of files: one read buffer per file, never the whole
//! file in memory; several files hashed at once on the machine's cores.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result, io};

/// Read size: large enough that the per-read system-call cost vanishes next
/// to hashing (SHA-NI runs at GB/s), small enough to stay in L2/L3.
const BUF: usize = 1 << 20;

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// sha256 of a byte slice, as hex.
pub fn sha256_bytes(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Size and sha256 (hex) of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<(u64, String)> {
    let mut f = File::open(path).map_err(io(path))?;
    sha256_reader(&mut f).map_err(io(path))
}

/// Size and sha256 (hex) of everything `r` yields.
pub fn sha256_reader(r: &mut impl Read) -> std::io::Result<(u64, String)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; BUF];
    let mut n = 0u64;
    loop {
        let got = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..got]);
        n += got as u64;
    }
    Ok((n, hex(&h.finalize())))
}

/// Size and sha256 of each file, in the order given, hashing as many files
/// at once as the machine has cores.
pub fn sha256_files(paths: &[PathBuf]) -> Result<Vec<(u64, String)>> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(paths.len().max(1));
    let next = AtomicUsize::new(0);
    type Slot = Option<Result<(u64, String)>>;
    let results: Mutex<Vec<Slot>> = Mutex::new((0..paths.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(p) = paths.get(i) else { break };
                    let r = sha256_file(p);
                    if let Ok(mut v) = results.lock() {
                        v[i] = Some(r);
                    }
                }
            });
        }
    });
    let results = results.into_inner().map_err(|_| Error::Invalid {
        path: PathBuf::new(),
        message: "a hashing thread panicked".into(),
    })?;
    results
        .into_iter()
        .zip(paths)
        .map(|(r, p)| {
            r.unwrap_or_else(|| {
                Err(Error::Invalid {
                    path: p.clone(),
                    message: "was not hashed".into(),
                })
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        assert_eq!(
            sha256_bytes(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        let b = d.path().join("b");
        std::fs::write(&a, b"abc").unwrap();
        std::fs::write(&b, vec![7u8; 3 * BUF + 5]).unwrap();
        let r = sha256_files(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(r[0], (3, sha256_bytes(b"abc")));
        assert_eq!(
            r[1],
            (3 * BUF as u64 + 5, sha256_bytes(&vec![7u8; 3 * BUF + 5]))
        );
        let err = sha256_files(&[d.path().join("nope")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope"), "{err}");
    }
}
