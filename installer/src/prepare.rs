//! The one front door of an install: everything that is read and checked
//! before the target is written, the same for every front end.
//!
//! `vlx-install apply`, the installer environment of the media and the
//! bench all call [`prepare`] and then [`Prepared::check_target`]; they
//! differ only in how they confirm and report. [`prepare`] reads the
//! profile once (its folder resolved once), plans it for the target's real
//! size and sector size, refuses a profile whose `san.size` is larger than
//! the target, and opens the image, checking every artifact against its
//! manifest and that it is the host image the profile names.

use std::path::{Path, PathBuf};

use cluster::{Bytes, Diagnostics, FsEnv, Plan, Profile, SanFacts, Source};
use sha2::{Digest, Sha256};

use crate::device::{self, Checked, Refusal, TargetFacts};
use crate::image::{self, HostImage, ImageError};

/// Everything an install reads, loaded and checked before the target is
/// touched.
#[derive(Debug)]
pub struct Inputs {
    pub profile_path: PathBuf,
    /// The profile's folder: relative paths in it (host profile, overlays)
    /// are taken from here.
    pub profile_dir: PathBuf,
    pub profile_text: String,
    pub plan: Plan,
    pub plan_json: String,
    pub plan_sha256: String,
    pub image: HostImage,
}

impl Inputs {
    pub fn new(profile_path: &Path, profile_text: String, plan: Plan, image: HostImage) -> Inputs {
        let plan_json = plan.to_json();
        let plan_sha256 = cluster::plan::hex(&Sha256::digest(plan_json.as_bytes()));
        Inputs {
            profile_path: profile_path.to_owned(),
            profile_dir: folder_of(profile_path),
            profile_text,
            plan,
            plan_json,
            plan_sha256,
            image,
        }
    }

    /// Every time written on the SAN: the image's SOURCE_DATE_EPOCH.
    pub fn epoch(&self) -> u64 {
        self.image.manifest.source_date_epoch
    }
}

/// The folder relative paths of a profile are taken from.
pub fn folder_of(profile: &Path) -> PathBuf {
    match profile.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// What an install is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The cluster profile (TOML).
    pub cluster: &'a Path,
    /// The host image directory.
    pub image: &'a Path,
    /// The SAN: a block device or an image file.
    pub san: &'a Path,
}

/// An install that passed every check but the target's contents, which
/// depend on whether the front end may wipe it ([`Prepared::check_target`]).
#[derive(Debug)]
pub struct Prepared {
    pub inputs: Inputs,
    pub facts: TargetFacts,
}

/// Why an install could not be prepared. [`PrepareError::exit_code`] is the
/// same for every front end.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("cannot read cluster profile {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Bad input: every problem of the profile, with file:line:column.
    #[error("{0}")]
    Invalid(Diagnostics),
    #[error(transparent)]
    Device(#[from] device::DeviceError),
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("{path} is {have}, smaller than the profile's san.size of {want} ({profile})")]
    SanSize {
        path: PathBuf,
        have: Bytes,
        want: Bytes,
        profile: PathBuf,
    },
    /// The image error's own text already names its cause, so it is not
    /// chained again as a source.
    #[error("checking image {dir}: {error}")]
    Image { dir: PathBuf, error: ImageError },
}

/// Exit code of bad input (an invalid profile).
pub const EXIT_BAD_INPUT: u8 = voice::exit::BAD_INPUT;
/// Exit code of a refused target, left as it was.
pub const EXIT_REFUSED: u8 = voice::exit::REFUSED;

impl PrepareError {
    /// 2 for an invalid profile, 3 for a refused target, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            PrepareError::Invalid(_) => EXIT_BAD_INPUT,
            PrepareError::Refused(_) | PrepareError::SanSize { .. } => EXIT_REFUSED,
            _ => 1,
        }
    }
}

/// A profile read once and planned.
#[derive(Debug)]
pub struct Planned {
    pub text: String,
    pub profile: Profile,
    pub plan: Plan,
}

/// Reads the profile at `path` once and plans it for `san`; relative paths
/// in the profile are taken from its folder.
pub fn plan_profile(path: &Path, san: SanFacts) -> Result<Planned, PrepareError> {
    let text = std::fs::read_to_string(path).map_err(|source| PrepareError::Read {
        path: path.to_owned(),
        source,
    })?;
    let source = Source::new(path.display().to_string(), text);
    let env = FsEnv {
        base: folder_of(path),
    };
    let (profile, plan) = cluster::load(&source, &env, san).map_err(PrepareError::Invalid)?;
    Ok(Planned {
        text: source.text().to_owned(),
        profile,
        plan,
    })
}

/// Everything before the target's contents are judged; reads only.
pub fn prepare(req: Request<'_>) -> Result<Prepared, PrepareError> {
    let facts = device::inspect(req.san)?;
    let Planned {
        text,
        profile,
        plan,
    } = plan_profile(
        req.cluster,
        SanFacts {
            size: Some(facts.size),
            sector_size: facts.sector_size,
        },
    )?;
    if let Some(want) = profile.san.size.filter(|want| facts.size < want.value) {
        return Err(PrepareError::SanSize {
            path: facts.path.clone(),
            have: facts.size,
            want: want.value,
            profile: req.cluster.to_owned(),
        });
    }
    let image_err = |error| PrepareError::Image {
        dir: req.image.to_owned(),
        error,
    };
    let image = HostImage::open(req.image).map_err(image_err)?;
    let inputs = Inputs::new(req.cluster, text, plan, image);
    image::check_host(&inputs.profile_dir, &inputs.plan, &inputs.image).map_err(image_err)?;
    Ok(Prepared { inputs, facts })
}

impl Prepared {
    /// Checks the target's use and contents: in use, too small, wrong
    /// sector size, or holding something that is not this cluster (unless
    /// `wipe`). Reads only; may be asked again with `wipe` after a front
    /// end has asked.
    pub fn check_target(&self, wipe: bool) -> Result<Checked, Refusal> {
        device::check(self.facts.clone(), &self.inputs.plan, wipe)
    }
}
