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
    /// The plan installed on the target when `plan` was rebased onto it
    /// (a change of an installed cluster); `None` for a new install.
    pub installed: Option<Plan>,
    /// With two origin slots: the slot table the meta volume gets and the
    /// slot the origin step writes (slot A for a new install; the slots
    /// as installed for a change).
    pub slots: Option<crate::slots::SlotState>,
}

impl Inputs {
    pub fn new(profile_path: &Path, profile_text: String, plan: Plan, image: HostImage) -> Inputs {
        let plan_json = plan.to_json();
        let plan_sha256 = cluster::plan::hex(&Sha256::digest(plan_json.as_bytes()));
        let slots = plan
            .disk
            .has_slots()
            .then(|| crate::slots::SlotState::install(&image));
        Inputs {
            profile_path: profile_path.to_owned(),
            profile_dir: folder_of(profile_path),
            profile_text,
            plan,
            plan_json,
            plan_sha256,
            slots,
            image,
            installed: None,
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

/// ` (a TEST image: ...)` after an image's name and version where it is
/// one, so that whoever confirms an install sees it; empty otherwise.
pub fn test_image_note(m: &contracts::image::Manifest) -> &'static str {
    if m.test_image {
        " (a TEST image: a root shell without login on every blade's serial ports; for test rigs only)"
    } else {
        ""
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
    /// The acknowledgement that the image may be a test image (`test_image`
    /// in its manifest, as the tiny image's: root shells without login on
    /// every blade's serial ports); without it such an image is refused.
    pub test_image: bool,
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
    /// A valid profile that does not fit the SAN it was planned for: too
    /// small, or of another sector size. That refuses the target (exit 3)
    /// rather than the profile.
    #[error("{0}")]
    DoesNotFit(Diagnostics),
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
    /// A change of an installed cluster that cannot be made in place.
    #[error("{san} holds cluster {cluster} with a layout this profile cannot change in place ({profile}): {}; reinstall with --wipe (every node's store is lost) or keep these keys as installed", join_refused(.refused))]
    Change {
        san: PathBuf,
        profile: PathBuf,
        cluster: String,
        refused: Vec<cluster::diff::Refused>,
    },
    /// `plan --diff` of a SAN that holds no install of the cluster.
    #[error("{san} holds no install of cluster {cluster} to compare the profile with")]
    NoInstall { san: PathBuf, cluster: String },
    #[error("reading the installed plan on {san}: {source}")]
    Installed {
        san: PathBuf,
        #[source]
        source: crate::installed::InstalledError,
    },
    /// A test image without the acknowledgement ([`Request::test_image`]).
    #[error(
        "image {dir} is `{name}`, a test image (test_image in its manifest.json: a root shell without login on every blade's serial ports), for test rigs only; install it with --test-image, or build a host image meant for real clusters (profiles/hosts/debian-bookworm.toml)"
    )]
    TestImage { dir: PathBuf, name: String },
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
            PrepareError::Refused(_)
            | PrepareError::SanSize { .. }
            | PrepareError::DoesNotFit(_)
            | PrepareError::Device(_)
            | PrepareError::Image { .. }
            | PrepareError::TestImage { .. }
            | PrepareError::Change { .. }
            | PrepareError::NoInstall { .. } => EXIT_REFUSED,
            _ => 1,
        }
    }
}

/// A SAN big enough for any profile, to tell a profile that is wrong from
/// one that does not fit its target: 1 PiB of 4096-byte sectors is far
/// inside what a GPT addresses.
const ROOMY: SanFacts = SanFacts {
    size: Some(Bytes(1 << 50)),
    sector_size: None,
};

/// A profile read once and planned.
#[derive(Debug)]
pub struct Planned {
    pub text: String,
    pub profile: Profile,
    pub plan: Plan,
    /// The plan installed on the SAN `plan` was rebased onto, if any.
    pub installed: Option<Plan>,
}

fn join_refused(r: &[cluster::diff::Refused]) -> String {
    r.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// What a plan for a SAN is laid onto.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// The install on the SAN, when it holds this cluster: volumes that
    /// stay keep their place, new ones go into free space
    /// ([`cluster::diff::rebase`]). A blank or foreign SAN is planned fresh.
    Installed,
    /// A fresh layout, whatever the SAN holds (an install with `--wipe`).
    Fresh,
}

/// Reads the profile at `path` once and plans it for `san`; relative paths
/// in the profile are taken from its folder.
///
/// A profile that is valid but does not fit a known `san` is
/// [`PrepareError::DoesNotFit`] (the target is refused), one that is wrong
/// whatever the SAN is [`PrepareError::Invalid`].
pub fn plan_profile(path: &Path, san: SanFacts) -> Result<Planned, PrepareError> {
    let bytes = std::fs::read(path).map_err(|source| PrepareError::Read {
        path: path.to_owned(),
        source,
    })?;
    let source =
        Source::from_bytes(path.display().to_string(), bytes).map_err(PrepareError::Invalid)?;
    let env = FsEnv {
        base: folder_of(path),
    };
    let (profile, plan) = cluster::load(&source, &env, san).map_err(|d| {
        let target_known = san.size.is_some() || san.sector_size.is_some();
        if target_known && cluster::load(&source, &env, ROOMY).is_ok() {
            PrepareError::DoesNotFit(d)
        } else {
            PrepareError::Invalid(d)
        }
    })?;
    Ok(Planned {
        text: source.text().to_owned(),
        profile,
        plan,
        installed: None,
    })
}

/// Reads the profile at `path` once and plans it for the SAN at `san`
/// (`facts` from [`device::inspect`]); with [`Base::Installed`] and a SAN
/// that holds this cluster, the plan is rebased onto the installed one, and
/// a change that cannot be made in place is refused naming its keys.
pub fn plan_onto(
    path: &Path,
    san: &Path,
    facts: &TargetFacts,
    base: Base,
) -> Result<Planned, PrepareError> {
    let mut planned = plan_profile(
        path,
        SanFacts {
            size: Some(facts.size),
            sector_size: facts.sector_size,
        },
    )?;
    if base == Base::Fresh {
        return Ok(planned);
    }
    let installed =
        crate::installed::Installed::plan_of(san).map_err(|source| PrepareError::Installed {
            san: san.to_owned(),
            source,
        })?;
    let Some(installed) = installed.filter(|i| i.cluster.uuid == planned.plan.cluster.uuid) else {
        return Ok(planned);
    };
    planned.plan =
        cluster::diff::rebase(&planned.profile, planned.plan, &installed).map_err(|refused| {
            PrepareError::Change {
                san: san.to_owned(),
                profile: path.to_owned(),
                cluster: installed.cluster.name.clone(),
                refused,
            }
        })?;
    planned.installed = Some(installed);
    Ok(planned)
}

/// Everything before the target's contents are judged; reads only. A SAN
/// that holds this cluster gets a plan rebased onto its install
/// ([`Base::Installed`]).
pub fn prepare(req: Request<'_>) -> Result<Prepared, PrepareError> {
    prepare_onto(req, Base::Installed)
}

/// [`prepare`], with the plan laid onto `base`.
pub fn prepare_onto(req: Request<'_>, base: Base) -> Result<Prepared, PrepareError> {
    let facts = device::inspect(req.san)?;
    let Planned {
        text,
        profile,
        plan,
        installed,
    } = plan_onto(req.cluster, req.san, &facts, base)?;
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
    if image.manifest.test_image && !req.test_image {
        return Err(PrepareError::TestImage {
            dir: req.image.to_owned(),
            name: image.manifest.name.clone(),
        });
    }
    let mut inputs = Inputs::new(req.cluster, text, plan, image);
    inputs.installed = installed;
    if inputs.installed.is_some() && inputs.plan.disk.has_slots() {
        if let Some(s) =
            crate::slots::SlotState::installed(req.san, &inputs.image).map_err(|source| {
                PrepareError::Installed {
                    san: req.san.to_owned(),
                    source,
                }
            })?
        {
            inputs.slots = Some(s);
        }
    }
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
