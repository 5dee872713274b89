//! What every step is given ([`Ctx`]), how it reports progress
//! ([`Reporter`]) and how it fails ([`ApplyError`]).

use cluster::{Locate, Located, Plan, Role};

use crate::image::ImageError;
use crate::journal::Step;
use crate::prepare::Inputs;
use crate::stage::StageError;
use crate::stream::StreamError;
use crate::target::{Target, TargetError};
use crate::tool::ToolError;

/// What the install is doing, for progress output.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    Start(Step),
    Verified(Step),
    Redo(Step, &'a str),
    Bytes { step: Step, done: u64, total: u64 },
    Done(Step, &'a str),
    Note(&'a str),
}

pub trait Reporter: Sync {
    fn event(&self, event: Event<'_>);
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error(transparent)]
    Stage(#[from] StageError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("{0}")]
    Refused(String),
    #[error("step {step}: {message}")]
    Step { step: Step, message: String },
}

/// A step's inputs: what was prepared, the checked target, and where
/// progress goes.
pub struct Ctx<'a> {
    pub inputs: &'a Inputs,
    pub target: &'a Target,
    pub rep: &'a dyn Reporter,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("inputs", &self.inputs)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Ctx<'_> {
    pub fn plan(&self) -> &Plan {
        &self.inputs.plan
    }

    /// The volume of `role`, which the plan must have.
    pub fn locate(&self, role: &Role) -> Result<Located, ApplyError> {
        self.plan()
            .volumes()
            .locate(role)
            .map_err(|e| ApplyError::Refused(e.to_string()))
    }

    /// The volume of `role`, if the plan has one.
    pub fn find(&self, role: &Role) -> Option<Located> {
        self.plan().volumes().find(role)
    }
}

/// Aborts the process at a named point when `VLX_INSTALL_FAULT` names it: a
/// test switch for the crash tests (`after:<step>` or `during:origin`);
/// `kill:<point>` ends it with SIGKILL there instead, as a power cut or
/// the OOM killer would.
pub fn fault(point: &str) {
    let Ok(v) = std::env::var("VLX_INSTALL_FAULT") else {
        return;
    };
    if v == point {
        eprintln!("vlx-install: fault injected at {point}");
        std::process::abort();
    }
    if v.strip_prefix("kill:") == Some(point) {
        eprintln!("vlx-install: SIGKILL injected at {point}");
        // SAFETY: kill(2) on our own pid has no memory effects.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
