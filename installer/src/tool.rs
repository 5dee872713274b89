//! Running the outside tools the installer drives (mke2fs, mkswap,
//! debugfs, ssh-keygen), with their error output in the error.

use std::process::{Command, Output};

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(
        "cannot start {program}: {source} (is it installed? `cargo xtask deps` installs what vlx needs)"
    )]
    Start {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion; a nonzero exit is an error carrying stderr.
pub fn run(cmd: &mut Command) -> Result<Output, ToolError> {
    let out = cmd.output().map_err(|source| ToolError::Start {
        program: cmd.get_program().to_string_lossy().into_owned(),
        source,
    })?;
    if !out.status.success() {
        return Err(ToolError::Failed {
            command: describe(cmd),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out)
}
