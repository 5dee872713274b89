//! The payload of install media, as the installer environment reads it:
//! found among the block devices by the sha256 of its `vlx-media.json`
//! (the boot entry's `vlx.media=`), mounted read-only, and checked file by
//! file against that manifest before anything is written anywhere.
//! The format is `docs/contracts.md`, "Install media"; the manifest's type
//! is `contracts::media`'s, its writer `imagebuilder::media`.

use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

pub use contracts::media::{
    FILE as MANIFEST, FORMAT, ImageRef, MediaManifest, Named, PayloadFile, names,
};

/// Where ISO 9660's primary volume descriptor starts (block 16 of 2048).
const PVD_OFFSET: u64 = 16 * 2048;

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(
        "payload file {file} does not match the media's manifest: {found}, the manifest says {size} bytes with sha256 {sha256}. The medium is damaged or was altered; nothing was written."
    )]
    Mismatch {
        file: String,
        found: String,
        size: u64,
        sha256: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PayloadError + '_ {
    move |source| PayloadError::Io {
        path: path.to_owned(),
        source,
    }
}

fn hex(bytes: &[u8]) -> String {
    cluster::plan::hex(bytes)
}

/// Whether the device at `path` holds an ISO 9660 volume (its primary
/// volume descriptor: type 1, `CD001`).
pub fn is_iso9660(path: &Path) -> bool {
    use std::os::unix::fs::FileExt;
    let Ok(f) = File::open(path) else {
        return false;
    };
    let mut d = [0u8; 7];
    f.read_exact_at(&mut d, PVD_OFFSET).is_ok() && d[0] == 1 && &d[1..6] == b"CD001"
}

/// Reads the manifest under `root` and checks that its bytes hash to
/// `want` (lower-case hex); `Ok(None)` when they do not: another medium.
pub fn read_manifest(root: &Path, want: &str) -> Result<Option<MediaManifest>, PayloadError> {
    let path = root.join(MANIFEST);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    if hex(&Sha256::digest(&bytes)) != want {
        return Ok(None);
    }
    let m: MediaManifest = serde_json::from_slice(&bytes).map_err(|e| PayloadError::Invalid {
        path: path.clone(),
        message: format!("not a media manifest: {e}"),
    })?;
    if m.format != FORMAT {
        return Err(PayloadError::Invalid {
            path,
            message: format!("format {} (this installer reads {FORMAT})", m.format),
        });
    }
    for f in &m.files {
        if !is_relative(&f.path) {
            return Err(PayloadError::Invalid {
                path: path.clone(),
                message: format!("file path {:?} leaves the payload", f.path),
            });
        }
    }
    Ok(Some(m))
}

fn is_relative(p: &str) -> bool {
    !p.is_empty()
        && Path::new(p)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// Read size: the payload streams from a USB stick or a CD; 1 MiB reads
/// keep the drive busy without holding much memory.
const BUF: usize = 1 << 20;

/// Checks every file of `m` under `root`: present, of its size, of its
/// sha256. `progress` gets (bytes done, bytes in all) as it goes. The
/// first file that differs is the error.
pub fn verify(
    root: &Path,
    m: &MediaManifest,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), PayloadError> {
    let total: u64 = m.files.iter().map(|f| f.size).sum();
    let mut done = 0u64;
    let mut buf = vec![0u8; BUF];
    for f in &m.files {
        let path = root.join(&f.path);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(PayloadError::Mismatch {
                    file: f.path.clone(),
                    found: "it is missing".into(),
                    size: f.size,
                    sha256: f.sha256.clone(),
                });
            }
            Err(e) => return Err(io(&path)(e)),
        };
        let mut h = Sha256::new();
        let mut n = 0u64;
        loop {
            let got = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io(&path)(e)),
            };
            h.update(&buf[..got]);
            n += got as u64;
            done += got as u64;
            progress(done, total);
        }
        let sha = hex(&h.finalize());
        if n != f.size || sha != f.sha256 {
            return Err(PayloadError::Mismatch {
                file: f.path.clone(),
                found: format!("it is {n} bytes with sha256 {sha}"),
                size: f.size,
                sha256: f.sha256.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_for(root: &Path, files: &[(&str, &[u8])]) -> String {
        let list: Vec<serde_json::Value> = files
            .iter()
            .map(|(p, b)| {
                std::fs::create_dir_all(root.join(p).parent().unwrap()).unwrap();
                std::fs::write(root.join(p), b).unwrap();
                serde_json::json!({"path": p, "size": b.len(), "sha256": hex(&Sha256::digest(b))})
            })
            .collect();
        let m = serde_json::json!({
            "format": 1, "name": "t", "source_date_epoch": 1,
            "image": {"name": "tiny", "version": "1", "kernel_release": "6.1", "manifest_sha256": "00"},
            "clusters": [], "guests": [], "files": list,
        });
        let text = serde_json::to_string_pretty(&m).unwrap();
        std::fs::write(root.join(MANIFEST), &text).unwrap();
        hex(&Sha256::digest(text.as_bytes()))
    }

    #[test]
    fn finds_its_own_manifest_and_catches_a_flipped_byte() {
        let d = tempfile::tempdir().unwrap();
        let sha = manifest_for(d.path(), &[("image/origin.ext4", &[1, 2, 3]), ("a", b"x")]);
        assert!(read_manifest(d.path(), &"0".repeat(64)).unwrap().is_none());
        let m = read_manifest(d.path(), &sha).unwrap().unwrap();
        let mut seen = Vec::new();
        verify(d.path(), &m, &mut |done, total| seen.push((done, total))).unwrap();
        assert_eq!(seen.last(), Some(&(4, 4)));
        std::fs::write(d.path().join("image/origin.ext4"), [1, 2, 4]).unwrap();
        let err = verify(d.path(), &m, &mut |_, _| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("image/origin.ext4") && err.contains("nothing was written"),
            "{err}"
        );
        std::fs::write(d.path().join("image/origin.ext4"), [1, 2, 3]).unwrap();
        std::fs::remove_file(d.path().join("a")).unwrap();
        let err = verify(d.path(), &m, &mut |_, _| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("payload file a ") && err.contains("missing"),
            "{err}"
        );
    }

    #[test]
    fn refuses_paths_outside_the_payload() {
        assert!(is_relative("config/profiles/clusters/demo.toml"));
        assert!(!is_relative("../etc/passwd"));
        assert!(!is_relative("/etc/passwd"));
        assert!(!is_relative(""));
    }
}
