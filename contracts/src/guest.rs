//! `guest.toml`, beside a guest tarball (`vlx-image guest --out DIR`):
//! what the guest is, its default size, and the tarball's size and sha256.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, io};

/// The file's name beside the tarball.
pub const FILE: &str = "guest.toml";

/// The description of a guest tarball.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestMeta {
    pub name: String,
    pub distribution: String,
    /// Kernel inside the tree, relative to its root.
    pub kernel: String,
    /// Initramfs inside the tree, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initramfs: Option<String>,
    pub vcpus: u32,
    /// Default memory in bytes.
    pub memory: u64,
    /// Default disk size in bytes.
    pub disk: u64,
    /// File name of the tarball beside guest.toml.
    pub tarball: String,
    pub tarball_size: u64,
    pub tarball_sha256: String,
    pub source_date_epoch: u64,
    pub profile_sha256: String,
}

impl GuestMeta {
    /// Reads a guest.toml.
    pub fn read(path: &Path) -> Result<GuestMeta> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        toml::from_str(&text).map_err(|e| Error::Invalid {
            path: path.to_owned(),
            message: format!("not a guest.toml: {}", e.to_string().trim_end()),
        })
    }
}
