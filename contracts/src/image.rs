//! `manifest.json` of a host image directory: what the image is, and the
//! size and sha256 of every artifact beside it. The installer checks an
//! image directory against it with [`verify`] before writing anything.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, io};
use crate::hash;

/// The manifest's file name in an image directory.
pub const FILE: &str = "manifest.json";

/// The golden root's ext4 image, written to `vlx-origin`.
pub const ORIGIN: &str = "origin.ext4";
/// The kernel every blade boots.
pub const KERNEL: &str = "vmlinuz";
/// The initramfs with the node agent.
pub const INITRAMFS: &str = "initramfs.img";
/// The artifacts of a host image directory, besides the manifest.
pub const ARTIFACTS: [&str; 3] = [ORIGIN, KERNEL, INITRAMFS];

/// Format of `manifest.json`; bumped when a field changes meaning.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// The host profile's `image.name`.
    pub name: String,
    /// The host profile's `image.version`.
    pub version: String,
    /// sha256 of the host profile file's bytes.
    pub profile_sha256: String,
    /// The SOURCE_DATE_EPOCH the image was built with: every mtime in it is
    /// at most this.
    pub source_date_epoch: u64,
    /// `uname -r` of the kernel in `vmlinuz`.
    pub kernel_release: String,
    /// Every artifact of the directory, sorted by file name.
    pub artifacts: Vec<Artifact>,
    /// Version of every Debian package of the image by name (those of
    /// `sbom.spdx.json`); absent in manifests written before it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub packages: BTreeMap<String, String>,
    /// The host profile's `image.test_image`: for test rigs only; left out
    /// when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub test_image: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// File name inside the image directory (no folders).
    pub file: String,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
}

impl Manifest {
    /// Reads `DIR/manifest.json`.
    pub fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join(FILE);
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let m: Manifest = serde_json::from_str(&text).map_err(|e| Error::Invalid {
            path: path.clone(),
            message: format!("not a vlx image manifest: {e}"),
        })?;
        if m.format != FORMAT {
            return Err(Error::Invalid {
                path,
                message: format!("manifest format {} (this build reads {FORMAT})", m.format),
            });
        }
        Ok(m)
    }

    /// Pretty JSON with a final newline: stable bytes for the same value.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    pub fn artifact(&self, file: &str) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.file == file)
    }
}

/// Checks every artifact of `manifest` in `dir`: present, of the recorded
/// size, and of the recorded sha256 (streamed, files hashed in parallel).
/// The error names the first mismatching file in manifest order.
pub fn verify(dir: &Path, manifest: &Manifest) -> Result<()> {
    let mut paths = Vec::with_capacity(manifest.artifacts.len());
    for a in &manifest.artifacts {
        if a.file.contains('/') || a.file == ".." || a.file.is_empty() {
            return Err(Error::Invalid {
                path: dir.join(FILE),
                message: format!("artifact name `{}` is not a plain file name", a.file),
            });
        }
        let path = dir.join(&a.file);
        let size = std::fs::metadata(&path).map_err(io(&path))?.len();
        if size != a.size {
            return Err(Error::Invalid {
                path,
                message: format!("size is {size} bytes, the manifest says {}", a.size),
            });
        }
        paths.push(path);
    }
    let sums = hash::sha256_files(&paths)?;
    for ((a, path), (_, sum)) in manifest.artifacts.iter().zip(paths).zip(sums) {
        if sum != a.sha256 {
            return Err(Error::Invalid {
                path,
                message: format!("sha256 is {sum}, the manifest says {}", a.sha256),
            });
        }
    }
    Ok(())
}

/// Reads `DIR/manifest.json` and verifies the directory against it.
pub fn verify_dir(dir: &Path) -> Result<Manifest> {
    let m = Manifest::read(dir)?;
    verify(dir, &m)?;
    Ok(m)
}

/// Describes the files `names` in `dir` as artifacts, sorted by name.
pub fn describe(dir: &Path, names: &[&str]) -> Result<Vec<Artifact>> {
    let mut names: Vec<&str> = names.to_vec();
    names.sort_unstable();
    let paths: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
    let sums = hash::sha256_files(&paths)?;
    Ok(names
        .into_iter()
        .zip(sums)
        .map(|(file, (size, sha256))| Artifact {
            file: file.to_owned(),
            size,
            sha256,
        })
        .collect())
}

/// Describes artifacts named `names` whose bytes are (for now) in `paths`
/// (temporary names), sorted by name.
pub fn describe_files(names: &[&str], paths: &[PathBuf]) -> Result<Vec<Artifact>> {
    let sums = hash::sha256_files(paths)?;
    let mut v: Vec<Artifact> = names
        .iter()
        .zip(sums)
        .map(|(file, (size, sha256))| Artifact {
            file: (*file).to_owned(),
            size,
            sha256,
        })
        .collect();
    v.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(v)
}

/// Opens an artifact for reading, for callers that stream it elsewhere.
pub fn open(dir: &Path, a: &Artifact) -> Result<File> {
    let p = dir.join(&a.file);
    File::open(&p).map_err(io(&p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_names_the_first_mismatch() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), b"one").unwrap();
        std::fs::write(d.path().join("b"), b"two").unwrap();
        let m = Manifest {
            format: FORMAT,
            name: "t".into(),
            version: "1".into(),
            profile_sha256: hash::sha256_bytes(b""),
            source_date_epoch: 1,
            kernel_release: "6.1.0".into(),
            artifacts: describe(d.path(), &["b", "a"]).unwrap(),
            packages: BTreeMap::new(),
            test_image: false,
        };
        assert_eq!(m.artifacts[0].file, "a");
        std::fs::write(d.path().join(FILE), m.to_json()).unwrap();
        assert_eq!(verify_dir(d.path()).unwrap(), m);
        std::fs::write(d.path().join("b"), b"twO").unwrap();
        let err = verify(d.path(), &m).unwrap_err().to_string();
        assert!(err.contains("/b:") && err.contains("sha256"), "{err}");
        std::fs::write(d.path().join("a"), b"longer").unwrap();
        let err = verify(d.path(), &m).unwrap_err().to_string();
        assert!(err.contains("/a:") && err.contains("size"), "{err}");
        std::fs::remove_file(d.path().join("a")).unwrap();
        assert!(verify(d.path(), &m).unwrap_err().to_string().contains("/a"));
    }
}
