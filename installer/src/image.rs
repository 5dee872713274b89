//! The host image directory the installer lays down: its manifest (the
//! `contracts` crate's type) and the check that every artifact matches it
//! before anything is written.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use contracts::image::{Artifact, Manifest};

/// Artifacts the installer needs from an image directory.
pub use contracts::image::{INITRAMFS, KERNEL, ORIGIN};
pub const MANIFEST: &str = contracts::image::FILE;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Image(#[from] contracts::Error),
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: lists no {name}, which an install needs")]
    Missing { path: PathBuf, name: &'static str },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// A host image directory whose artifacts all matched its manifest when
/// opened.
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
    /// Reads `dir/manifest.json`, checks every artifact's size and sha256,
    /// and that the ones an install uses are listed.
    pub fn open(dir: &Path) -> Result<HostImage, ImageError> {
        let manifest = contracts::image::verify_dir(dir)?;
        let path = dir.join(MANIFEST);
        for name in [ORIGIN, KERNEL, INITRAMFS] {
            if manifest.artifact(name).is_none() {
                return Err(ImageError::Missing { path, name });
            }
        }
        let bytes = std::fs::read(&path).map_err(|source| ImageError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(HostImage {
            dir: dir.to_owned(),
            sha256: cluster::plan::hex(&Sha256::digest(&bytes)),
            manifest,
            manifest_bytes: bytes,
        })
    }

    /// The boot files of an origin slot kept on the meta volume
    /// (`slots/<slot>/`: the manifest, the kernel and the initramfs, no
    /// origin): the two files are checked against the manifest.
    pub fn open_boot(dir: &Path) -> Result<HostImage, ImageError> {
        let mut manifest = contracts::image::Manifest::read(dir)?;
        let path = dir.join(MANIFEST);
        let bytes = std::fs::read(&path).map_err(|source| ImageError::Io {
            path: path.clone(),
            source,
        })?;
        let full = manifest.clone();
        for name in [KERNEL, INITRAMFS] {
            if manifest.artifact(name).is_none() {
                return Err(ImageError::Missing { path, name });
            }
        }
        manifest
            .artifacts
            .retain(|a| a.file == KERNEL || a.file == INITRAMFS);
        contracts::image::verify(dir, &manifest)?;
        Ok(HostImage {
            dir: dir.to_owned(),
            sha256: cluster::plan::hex(&Sha256::digest(&bytes)),
            manifest: full,
            manifest_bytes: bytes,
        })
    }

    /// What the slot table records of this image.
    pub fn slot_image(&self) -> cluster::slots::SlotImage {
        cluster::slots::SlotImage {
            image_sha256: self.sha256.clone(),
            name: self.manifest.name.clone(),
            version: self.manifest.version.clone(),
            kernel_release: self.manifest.kernel_release.clone(),
        }
    }

    pub fn artifact(&self, name: &'static str) -> Result<&Artifact, ImageError> {
        self.manifest
            .artifact(name)
            .ok_or_else(|| ImageError::Missing {
                path: self.dir.join(MANIFEST),
                name,
            })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Checks that `image` is the host image the cluster profile names (by its
/// host profile's `[image] name`; `profile_dir` is the cluster profile's
/// folder), so that a profile is never installed with the wrong root file
/// system by mistake.
pub fn check_host(
    profile_dir: &Path,
    plan: &cluster::Plan,
    image: &HostImage,
) -> Result<(), ImageError> {
    let host = profile_dir.join(&plan.image.host);
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
