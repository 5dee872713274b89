//! The project's own programs the rehearsal runs, as an admin would:
//! `vlx-image build`, `vlx-install apply` and `vlx-install reset-node`,
//! from the same target directory as the rig.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The image builder's binary.
pub const VLX_IMAGE: &str = "vlx-image";
/// The installer's binary.
pub const VLX_INSTALL: &str = "vlx-install";

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(
        "{program} is not in {dir}; build the workspace's programs first (cargo build --workspace --bins, or cargo xtask rehearse)"
    )]
    Missing { program: String, dir: PathBuf },
    #[error("`{command}` is not available yet in this checkout: {said}")]
    NotAvailable { command: String, said: String },
    #[error("`{command}` failed ({status}); its output:\n{output}")]
    Failed {
        command: String,
        status: String,
        output: String,
    },
    #[error("cannot run `{command}`: {source}")]
    Start {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the workspace's programs (`{command}`): {detail}")]
    Build { command: String, detail: String },
}

/// Where the rig finds the project's programs: beside its own binary (a
/// test binary lives one level down, in `deps/`), or in `VLX_BIN_DIR`.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("VLX_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_owned).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "deps") {
        return dir.parent().map(Path::to_owned).unwrap_or(dir);
    }
    dir
}

/// Builds the workspace's programs with the rig's own profile, so that a
/// test run by `cargo test -p qemu-tests` finds `vlx-install`, `vlx-image`
/// and the node agent up to date. Uses `$CARGO`, which cargo sets for the
/// programs it runs; does nothing without it.
pub fn build_workspace_bins() -> Result<(), ToolError> {
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Ok(());
    };
    let dir = bin_dir();
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--workspace", "--bins", "--quiet"]);
    if dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    if let Some(target) = dir.parent() {
        cmd.arg("--target-dir").arg(target);
    }
    if let Some(ws) = workspace_root() {
        cmd.current_dir(ws);
    }
    let line = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| ToolError::Build {
        command: line.clone(),
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(ToolError::Build {
            command: line,
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// The workspace this crate was built from.
pub fn workspace_root() -> Option<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
}

fn program(name: &str) -> Result<PathBuf, ToolError> {
    let dir = bin_dir();
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ToolError::Missing {
            program: name.to_string(),
            dir,
        })
    }
}

/// Runs a program of the project; output goes to `log` as well as into
/// the error. A clap "unrecognized subcommand" or a "not built yet" from a
/// stub becomes [`ToolError::NotAvailable`].
fn run(name: &str, args: &[&std::ffi::OsStr], log: &Path) -> Result<String, ToolError> {
    run_out(name, args, log).map(|(_, text)| text)
}

/// [`run`], returning standard output alone as well (for `--json`).
fn run_out(
    name: &str,
    args: &[&std::ffi::OsStr],
    log: &Path,
) -> Result<(String, String), ToolError> {
    let path = program(name)?;
    let command = std::iter::once(name.to_string())
        .chain(
            args.iter()
                .map(|a| crate::qemu::shell_quote(&a.to_string_lossy())),
        )
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new(&path)
        .args(args)
        .output()
        .map_err(|source| ToolError::Start {
            command: command.clone(),
            source,
        })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::write(log, format!("$ {command}\n{text}"));
    if out.status.success() {
        return Ok((String::from_utf8_lossy(&out.stdout).into_owned(), text));
    }
    let lower = text.to_lowercase();
    if lower.contains("unrecognized subcommand")
        || lower.contains("not built yet")
        || lower.contains("unexpected argument")
    {
        return Err(ToolError::NotAvailable {
            command,
            said: text.lines().next().unwrap_or_default().trim().to_string(),
        });
    }
    Err(ToolError::Failed {
        command,
        status: out.status.to_string(),
        output: text.trim_end().to_string(),
    })
}

/// `vlx-image build --profile HOST --out DIR`.
pub fn build_image(host_profile: &Path, out: &Path, log: &Path) -> Result<String, ToolError> {
    run(
        VLX_IMAGE,
        &[
            "build".as_ref(),
            "--profile".as_ref(),
            host_profile.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
        ],
        log,
    )
}

/// `vlx-install apply --test-image --cluster PROFILE --image DIR --san SAN
/// --yes` (rigs rehearse with test images such as the tiny one; the flag
/// only allows one).
pub fn apply(profile: &Path, image: &Path, san: &Path, log: &Path) -> Result<String, ToolError> {
    run(
        VLX_INSTALL,
        &[
            "apply".as_ref(),
            "--test-image".as_ref(),
            "--cluster".as_ref(),
            profile.as_os_str(),
            "--image".as_ref(),
            image.as_os_str(),
            "--san".as_ref(),
            san.as_os_str(),
            "--yes".as_ref(),
        ],
        log,
    )
}

/// `vlx-image media --test-image --profile PROFILE --image DIR --out OUT`
/// (rigs rehearse with test images such as the tiny one).
pub fn build_media(
    profile: &Path,
    image: &Path,
    out: &Path,
    log: &Path,
) -> Result<String, ToolError> {
    run(
        VLX_IMAGE,
        &[
            "media".as_ref(),
            "--test-image".as_ref(),
            "--profile".as_ref(),
            profile.as_os_str(),
            "--image".as_ref(),
            image.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
        ],
        log,
    )
}

/// `vlx-install verify --san SAN`.
pub fn verify(san: &Path, log: &Path) -> Result<String, ToolError> {
    run(
        VLX_INSTALL,
        &["verify".as_ref(), "--san".as_ref(), san.as_os_str()],
        log,
    )
}

/// `vlx-install reset-node --yes --san SAN NODE`.
pub fn reset_node(node: &str, san: &Path, log: &Path) -> Result<String, ToolError> {
    run(
        VLX_INSTALL,
        &[
            "reset-node".as_ref(),
            "--yes".as_ref(),
            "--san".as_ref(),
            san.as_os_str(),
            node.as_ref(),
        ],
        log,
    )
}

/// `vlx-install upgrade --image DIR --san SAN`.
pub fn upgrade(image: &Path, san: &Path, log: &Path) -> Result<String, ToolError> {
    run(
        VLX_INSTALL,
        &[
            "upgrade".as_ref(),
            "--image".as_ref(),
            image.as_os_str(),
            "--san".as_ref(),
            san.as_os_str(),
        ],
        log,
    )
}

/// `vlx-install plan --cluster PROFILE --san SAN --diff [--json]`: its
/// standard output.
pub fn plan_diff(profile: &Path, san: &Path, json: bool, log: &Path) -> Result<String, ToolError> {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "plan".as_ref(),
        "--cluster".as_ref(),
        profile.as_os_str(),
        "--san".as_ref(),
        san.as_os_str(),
        "--diff".as_ref(),
    ];
    if json {
        args.push("--json".as_ref());
    }
    run_out(VLX_INSTALL, &args, log).map(|(stdout, _)| stdout)
}

/// `vlx-install rollback --san SAN`.
pub fn rollback(san: &Path, log: &Path) -> Result<String, ToolError> {
    run(
        VLX_INSTALL,
        &["rollback".as_ref(), "--san".as_ref(), san.as_os_str()],
        log,
    )
}

/// `vlx-install status --json --san SAN`: its standard output.
pub fn status_json(san: &Path, log: &Path) -> Result<String, ToolError> {
    run_out(
        VLX_INSTALL,
        &[
            "status".as_ref(),
            "--json".as_ref(),
            "--san".as_ref(),
            san.as_os_str(),
        ],
        log,
    )
    .map(|(stdout, _)| stdout)
}

/// The files an image directory holds (docs/contracts.md).
pub const IMAGE_FILES: &[&str] = &[
    contracts::image::ORIGIN,
    contracts::image::KERNEL,
    contracts::image::INITRAMFS,
    contracts::image::FILE,
];

/// The files of `dir` missing from an image directory.
pub fn missing_image_files(dir: &Path) -> Vec<&'static str> {
    IMAGE_FILES
        .iter()
        .copied()
        .filter(|f| !dir.join(f).is_file())
        .collect()
}
