//! How a `vlx-vc` command or a state change fails, with its exit code:
//! the state and the command line both speak it.

/// Why a command did not do its job, and with which exit code.
#[derive(Debug)]
pub enum Failure {
    /// Exit 1: something failed underneath (I/O, etcd).
    Failed(anyhow::Error),
    /// Exit 2: the input is wrong.
    BadInput(anyhow::Error),
    /// Exit 3: the action is refused; nothing was changed.
    Refused(anyhow::Error),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Failed(_) => 1,
            Failure::BadInput(_) => 2,
            Failure::Refused(_) => 3,
        }
    }

    pub fn error(&self) -> &anyhow::Error {
        match self {
            Failure::Failed(e) | Failure::BadInput(e) | Failure::Refused(e) => e,
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::Failed(e)
    }
}
