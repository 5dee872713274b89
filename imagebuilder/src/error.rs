//! The one error type of the image builder. Every variant names its object:
//! a file, a program, a package, a module or a profile key.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Profile { path: PathBuf, message: String },
    #[error("{program} failed ({status}) {doing}: {stderr}")]
    Tool {
        program: String,
        doing: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("starting {program}: {source} (is it installed?)")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("binary `{name}` not found on the build machine (looked in {searched})")]
    MissingBinary { name: String, searched: String },
    #[error(
        "{binary}: needs shared library `{library}`, which is not found (looked in {searched})"
    )]
    MissingLibrary {
        binary: PathBuf,
        library: String,
        searched: String,
    },
    #[error("{path}: not a usable ELF file: {message}")]
    Elf { path: PathBuf, message: String },
    #[error("kernel {release} has no module `{module}` (needed by {needed_by})")]
    MissingModule {
        module: String,
        release: String,
        needed_by: String,
    },
    #[error("kernel: {0}")]
    Kernel(String),
    #[error("{path}: sha256 is {actual}, the profile pins {expected}")]
    Sha256Mismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    /// A member of an archive that is malformed or refused (it would
    /// write outside the root, or through a link): bad input.
    #[error("{archive}: member `{member}`: {message}")]
    Archive {
        archive: PathBuf,
        member: String,
        message: String,
    },
    #[error("overlay {path}: {source}")]
    Overlay {
        path: PathBuf,
        #[source]
        source: overlay::OverlayError,
    },
    #[error("{path}: {message}")]
    Verify { path: PathBuf, message: String },
    /// A path beneath a root that would leave it, or I/O on one.
    #[error(transparent)]
    Beneath(#[from] beneath::Error),
    #[error(transparent)]
    Fat(#[from] bootfs::fat::FatError),
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// Is this bad input (exit code 2) rather than a failure (1)?
    pub fn is_bad_input(&self) -> bool {
        matches!(self, Error::Archive { .. })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Maps an I/O error to [`Error::Io`] naming `path`.
pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}
