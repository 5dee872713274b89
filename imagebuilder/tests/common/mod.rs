//! Helpers shared by the image-tier tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A fixed SOURCE_DATE_EPOCH for every test build.
pub const EPOCH: u64 = 1_700_000_000;

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The node agent for the initramfs: the real `vlx-node` when the
/// workspace has built it, else a small dynamically linked stand-in (the
/// initramfs tests check packing, not the agent's behaviour).
pub fn agent() -> PathBuf {
    if let Some(a) = imagebuilder::image::host::default_agent().filter(|a| a.is_file()) {
        return a;
    }
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_vlx-image"));
    let beside = exe.with_file_name("vlx-node");
    if beside.is_file() {
        return beside;
    }
    eprintln!("vlx-node is not built: packing /usr/bin/true as the initramfs's /init");
    PathBuf::from("/usr/bin/true")
}

/// Runs a command, panicking with its stderr on failure; returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Names in a folder, sorted (hidden ones included).
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// The tiny profile's text with its overlays replaced by `overlays`
/// (absolute paths), and further TOML appended to `[initramfs]`.
pub fn tiny_profile_text(overlays: &[PathBuf], initramfs_extra: &str) -> String {
    let text = std::fs::read_to_string(workspace().join("profiles/hosts/tiny.toml")).unwrap();
    let list: Vec<String> = overlays
        .iter()
        .map(|o| format!("{:?}", o.display().to_string()))
        .collect();
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("overlays") {
            out.push_str(&format!("overlays = [{}]\n", list.join(", ")));
        } else {
            out.push_str(line);
            out.push('\n');
        }
        if line == "[initramfs]" {
            out.push_str(initramfs_extra);
            out.push('\n');
        }
    }
    out
}

pub mod media;
pub mod spdx;
