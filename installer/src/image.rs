//! The host image directory the installer lays down: its manifest, and the
//! check that every artifact matches it before anything is written.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Artifacts the installer needs from an image directory.
pub const ORIGIN: &str = "origin.ext4";
pub const KERNEL: &str = "vmlinuz";
pub const INITRAMFS: &str = "initramfs.img";
pub const MANIFEST: &str = "manifest.json";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub source_date_epoch: u64,
    pub kernel_release: String,
    pub artifacts: Vec<Artifact>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Artifact {
    pub file: String,
    pub size: u64,
    pub sha256: String,
}

/// A host image directory whose artifacts matched its manifest when read.
#[derive(Debug, Clone)]
pub struct HostImage {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// The manifest file's bytes, as installed on the meta volume.
    pub manifest_bytes: Vec<u8>,
    /// sha256 of the manifest file: names this exact image.
    pub sha256: String,
}

impl HostImage {
    /// Reads `dir/manifest.json` and checks that the artifacts the installer
    /// uses are listed, present, of their size and sha256.
    pub fn open(dir: &Path) -> Result<HostImage, ImageError> {
        let path = dir.join(MANIFEST);
        let bytes = std::fs::read(&path).map_err(|source| ImageError::Io {
            path: path.clone(),
            source,
        })?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| ImageError::Invalid {
                path: path.clone(),
                message: format!("not an image manifest: {e}"),
            })?;
        let image = HostImage {
            dir: dir.to_owned(),
            sha256: cluster::plan::hex(&Sha256::digest(&bytes)),
            manifest,
            manifest_bytes: bytes,
        };
        for name in [ORIGIN, KERNEL, INITRAMFS] {
            image.verify(name)?;
        }
        Ok(image)
    }

    pub fn artifact(&self, name: &str) -> Result<&Artifact, ImageError> {
        self.manifest
            .artifacts
            .iter()
            .find(|a| a.file == name)
            .ok_or_else(|| ImageError::Invalid {
                path: self.dir.join(MANIFEST),
                message: format!("lists no {name}"),
            })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Re-hashes one artifact against the manifest.
    pub fn verify(&self, name: &str) -> Result<(), ImageError> {
        let a = self.artifact(name)?;
        let path = self.path(name);
        let mut f = std::fs::File::open(&path).map_err(|source| ImageError::Io {
            path: path.clone(),
            source,
        })?;
        let mut h = Sha256::new();
        let n =
            std::io::copy(&mut f, &mut HashWriter(&mut h)).map_err(|source| ImageError::Io {
                path: path.clone(),
                source,
            })?;
        let got = cluster::plan::hex(&h.finalize());
        if n != a.size || got != a.sha256 {
            return Err(ImageError::Invalid {
                path,
                message: format!(
                    "is {n} bytes with sha256 {got}, but the manifest says {} bytes with sha256 {}",
                    a.size, a.sha256
                ),
            });
        }
        Ok(())
    }
}

/// Checks that `image` is the host image the cluster profile at `cluster`
/// names (by its host profile's `[image] name`), so that a profile is
/// never installed with the wrong root file system by mistake.
pub fn check_host(
    cluster: &Path,
    plan: &cluster::Plan,
    image: &HostImage,
) -> Result<(), ImageError> {
    let host = cluster
        .parent()
        .unwrap_or(Path::new("."))
        .join(&plan.image.host);
    let text = std::fs::read_to_string(&host).map_err(|source| ImageError::Io {
        path: host.clone(),
        source,
    })?;
    let value: toml::Table = toml::from_str(&text).map_err(|e| ImageError::Invalid {
        path: host.clone(),
        message: format!("not a host profile: {e}"),
    })?;
    let name = value
        .get("image")
        .and_then(|i| i.get("name"))
        .and_then(|n| n.as_str());
    match name {
        Some(n) if n == image.manifest.name => Ok(()),
        Some(n) => Err(ImageError::Invalid {
            path: image.dir.clone(),
            message: format!(
                "the image is {:?}, but the cluster profile names host image {n:?} ({})",
                image.manifest.name, plan.image.host
            ),
        }),
        None => Err(ImageError::Invalid {
            path: host,
            message: "has no [image] name".into(),
        }),
    }
}

/// sha2's hasher is not `io::Write`; this adapter lets `io::copy` feed it.
struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
