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
}

/// Reads, validates and plans the profile at `path`; relative paths in the
/// profile are taken from its folder.
pub fn load(path: &Path, san: SanFacts) -> Result<(Profile, Plan), LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    let source = Source::new(path.display().to_string(), text);
    let base = path.parent().map(Path::to_owned).unwrap_or_default();
    cluster::load(&source, &FsEnv { base }, san).map_err(LoadError::Invalid)
}
