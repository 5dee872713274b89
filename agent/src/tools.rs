//! Running the few programs the initramfs carries (busybox applets,
//! `dmsetup`, `iscsistart`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::failure::Failure;

/// The search path of the initramfs; the kernel starts `/init` without one.
pub const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// Where `name` is on [`PATH`].
pub fn find(name: &str) -> Option<PathBuf> {
    PATH.split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

/// A command for `name`: the program on [`PATH`], else busybox's applet of
/// that name (an initramfs need not carry the applet links).
pub fn command(name: &str) -> Command {
    let mut c = match find(name) {
        Some(p) => Command::new(p),
        None => {
            let mut c = Command::new(find("busybox").unwrap_or_else(|| "busybox".into()));
            c.arg(name);
            c
        }
    };
    c.env("PATH", PATH);
    c
}

/// The command as one might type it, for messages.
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to the end; its output comes back, or a failure that holds
/// what it printed on error.
pub fn run(cmd: &mut Command) -> Result<String, Failure> {
    let command = describe(cmd);
    let out = cmd.output().map_err(|e| Failure::Tool {
        command: command.clone(),
        detail: format!("could not start it: {e}"),
    })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let said = said.trim();
    Err(Failure::Tool {
        command,
        detail: if said.is_empty() {
            out.status.to_string()
        } else {
            format!("{}: {said}", out.status)
        },
    })
}
