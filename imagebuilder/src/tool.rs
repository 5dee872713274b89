//! Running the outside programs the builder drives (mke2fs, mmdebstrap,
//! apt-get, dpkg-deb, depmod), with errors that say what was being done.

use std::process::{Command, Output, Stdio};

use crate::error::{Error, Result};

/// Runs `cmd` to completion, capturing its output; a failure carries the
/// program's stderr and `doing` (what it was asked to do).
pub fn run(cmd: &mut Command, doing: &str) -> Result<Output> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            program: program.clone(),
            source,
        })?;
    if !out.status.success() {
        let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        if stderr.is_empty() {
            stderr = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        }
        // The end of a long log says what went wrong; keep that part.
        if stderr.len() > 4000 {
            let cut = stderr.len() - 4000;
            let cut = (cut..stderr.len())
                .find(|i| stderr.is_char_boundary(*i))
                .unwrap_or(stderr.len());
            stderr = format!("...{}", &stderr[cut..]);
        }
        return Err(Error::Tool {
            program,
            doing: doing.to_owned(),
            status: out.status,
            stderr,
        });
    }
    Ok(out)
}

/// Runs `cmd` and returns its standard output as text.
pub fn stdout(cmd: &mut Command, doing: &str) -> Result<String> {
    let out = run(cmd, doing)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
