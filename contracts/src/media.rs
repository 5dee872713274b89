//! `vlx-media.json`, the payload's manifest: what the media carry and the
//! size and sha256 of every payload file. The installer environment finds
//! its payload by this file's own sha256 (the boot entry's `vlx.media=`)
//! and checks every file against it before it writes anything.
//! `docs/contracts.md` ("Install media") is the contract.

use serde::{Deserialize, Serialize};

/// The manifest's path at the payload's root.
pub const FILE: &str = "vlx-media.json";
/// Where unattended media for an iSCSI target carry the CHAP file of the
/// installer's login (`vlx-install --chap` format; media profile
/// `unattended.chap`). The installer environment logs in with it when the
/// payload has it; the secrets never go on the kernel command line.
pub const CHAP_FILE: &str = "iscsi-chap";
/// Bumped when a field changes meaning.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaManifest {
    pub format: u32,
    /// The media profile's `media.name`.
    pub name: String,
    pub source_date_epoch: u64,
    pub image: ImageRef,
    /// Cluster profiles, by the name the installer offers them under.
    pub clusters: Vec<Named>,
    pub guests: Vec<Named>,
    /// Every payload file, sorted by path.
    pub files: Vec<PayloadFile>,
}

/// The host image the payload holds under `image/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRef {
    pub name: String,
    pub version: String,
    pub kernel_release: String,
    /// sha256 of its `manifest.json`.
    pub manifest_sha256: String,
}

/// A named thing of the payload and its path there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Named {
    pub name: String,
    pub path: String,
}

/// The names, comma-separated, or `none`: for one line of a report.
pub fn names(v: &[Named]) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.iter()
        .map(|n| n.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayloadFile {
    /// `/`-separated, relative to the payload's root.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

impl MediaManifest {
    /// Pretty JSON with a final newline: the same bytes for the same value.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }
}
