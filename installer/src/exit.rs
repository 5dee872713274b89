//! How `vlx-install` ends: which errors are refusals (exit 3: the target or
//! the image was refused and nothing was written), which are bad input
//! (exit 2: the profile, or a node name the cluster lacks), and the error
//! text with each cause once.

use std::error::Error;

use crate::apply::ApplyError;
use crate::device::{DeviceError, Refusal};
use crate::image::ImageError;
use crate::installed::InstalledError;
use crate::lock::LockError;
use crate::prepare::PrepareError;
use crate::reset::ResetError;

/// Bad input: the profile is invalid, or an argument names nothing.
pub const BAD_INPUT: u8 = crate::prepare::EXIT_BAD_INPUT;
/// Refused: the target (or the image for it) was refused before any write.
pub const REFUSED: u8 = crate::prepare::EXIT_REFUSED;

/// Whether `e`, or any error it was caused by, refuses the install: the
/// target is of the wrong type, not writable, locked, in use, too small, of
/// another sector size, holds something else; the image does not verify;
/// or the install itself refused to go on.
pub fn is_refusal(e: &anyhow::Error) -> bool {
    e.chain().any(refuses)
}

fn refuses(e: &(dyn Error + 'static)) -> bool {
    if e.is::<Refusal>() || e.is::<DeviceError>() || e.is::<LockError>() || e.is::<ImageError>() {
        return true;
    }
    if let Some(e) = e.downcast_ref::<ApplyError>() {
        // Not `ApplyError::Image`: it comes from a step, after writes; the
        // image was checked (a refusal) before the target was touched.
        return matches!(e, ApplyError::Refused(_));
    }
    if let Some(e) = e.downcast_ref::<ResetError>() {
        return matches!(
            e,
            ResetError::Refused(_) | ResetError::Installed(InstalledError::Device(_))
        );
    }
    if let Some(e) = e.downcast_ref::<InstalledError>() {
        return matches!(e, InstalledError::Device(_));
    }
    e.downcast_ref::<PrepareError>()
        .is_some_and(|e| e.exit_code() == crate::prepare::EXIT_REFUSED)
}

/// Whether `e` is bad input on the command line (besides an invalid
/// profile): a node name the installed cluster does not have.
pub fn is_bad_input(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<ResetError>(),
            Some(ResetError::UnknownNode { .. })
        )
    })
}

/// The error and its causes joined by ": ", leaving out a cause whose text
/// the message before it already ends with (an error that prints its source
/// and also returns it, as most of ours do, would otherwise print it twice:
/// "X (os error 2): X (os error 2)").
pub fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_printed_is_left_out() {
        let io = std::io::Error::from_raw_os_error(libc::ENOENT);
        let e = anyhow::Error::from(DeviceError::Open {
            path: "/nonexistent".into(),
            source: io,
        })
        .context("inspecting SAN /nonexistent");
        let m = message(&e);
        assert_eq!(
            m,
            "inspecting SAN /nonexistent: cannot open /nonexistent: No such file or directory (os error 2)"
        );
        assert!(is_refusal(&e));
    }

    #[test]
    fn a_failed_write_is_not_a_refusal() {
        let e = anyhow::Error::from(ApplyError::Step {
            step: crate::journal::Step::Origin,
            message: "short write".into(),
        });
        assert!(!is_refusal(&e));
    }
}
