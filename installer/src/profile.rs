//! Reading a cluster profile from disk into a plan.

use std::path::{Path, PathBuf};

use cluster::{Diagnostics, FsEnv, Plan, Profile, SanFacts, Source};

/// Why a profile could not be planned: unreadable (an I/O problem) or
/// invalid (bad input; the command exits with 2).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read cluster profile {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Diagnostics),
    /// A valid profile that does not fit the SAN it was planned for: too
    /// small, or of another sector size. That refuses the target (exit 3)
    /// rather than the profile.
    #[error("{0}")]
    DoesNotFit(Diagnostics),
}

/// A SAN big enough for any profile, to tell a profile that is wrong from
/// one that does not fit its target: 1 PiB of 4096-byte sectors is far
/// inside what a GPT addresses.
const ROOMY: SanFacts = SanFacts {
    size: Some(cluster::Bytes(1 << 50)),
    sector_size: None,
};

/// Reads, validates and plans the profile at `path`; relative paths in the
/// profile are taken from its folder.
pub fn load(path: &Path, san: SanFacts) -> Result<(Profile, Plan), LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    let source =
        Source::from_bytes(path.display().to_string(), bytes).map_err(LoadError::Invalid)?;
    let base = path.parent().map(Path::to_owned).unwrap_or_default();
    let env = FsEnv { base };
    cluster::load(&source, &env, san).map_err(|d| {
        let target_known = san.size.is_some() || san.sector_size.is_some();
        if target_known && cluster::load(&source, &env, ROOMY).is_ok() {
            LoadError::DoesNotFit(d)
        } else {
            LoadError::Invalid(d)
        }
    })
}
