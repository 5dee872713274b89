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
    /// A profile's problems, each with its file, line, column and key.
    #[error(transparent)]
    Diagnostics(#[from] cluster::Diagnostics),
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
    /// An archive's compressed stream that does not decompress, or runs on
    /// far past the archive's end: bad input.
    #[error("{}: {message}", archive.display())]
    Stream { archive: PathBuf, message: String },
    #[error("overlay {path}: {source}")]
    Overlay {
        path: PathBuf,
        #[source]
        source: templating::OverlayError,
    },
    #[error("{path}: {message}")]
    Verify { path: PathBuf, message: String },
    /// A path beneath a root that would leave it, or I/O on one.
    #[error(transparent)]
    Beneath(#[from] beneath::Error),
    #[error(transparent)]
    Fat(#[from] bootfs::fat::FatError),
    /// A manifest, or a file it describes, that does not hold.
    #[error(transparent)]
    Contract(#[from] contracts::Error),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether the error is bad input (a profile the builder cannot take, a
    /// refused archive member, a damaged compressed stream): the command
    /// exits 2 for it, as for a bad cluster profile.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Error::Profile { .. }
                | Error::Diagnostics(_)
                | Error::Archive { .. }
                | Error::Stream { .. }
        )
    }
}

/// Maps an I/O error to [`Error::Io`] naming `path`.
pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}
