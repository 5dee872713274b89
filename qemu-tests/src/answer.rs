//! What a command on a blade answers, whichever channel carried it (the
//! shell on its ttyS1, or SSH): its output and exit status, or why there
//! was none.

use std::time::Duration;

use crate::console::{ConsoleError, WaitError};

#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error(transparent)]
    Send(#[from] ConsoleError),
    #[error("`{command}` on {console}: {source}")]
    Wait {
        console: String,
        command: String,
        #[source]
        source: Box<WaitError>,
    },
    #[error("{console}: interrupted")]
    Interrupted { console: String },
    #[error("{console}: no shell answered within {} s (the image runs a root shell on ttyS1 for the rig)", .waited.as_secs())]
    NoShell { console: String, waited: Duration },
    #[error("`{command}` on {console}: {message}")]
    Ssh {
        console: String,
        command: String,
        message: String,
    },
    #[error("{console}: files are sent over SSH only, and this blade's shell is its console")]
    NoFiles { console: String },
}

/// What a command printed, and its exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub lines: Vec<String>,
    pub status: i32,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == 0
    }

    /// The output as one string, lines joined by newlines.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}
