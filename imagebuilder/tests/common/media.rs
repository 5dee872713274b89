//! Install media for the tests: the tiny image, a media profile carrying
//! the demo cluster, and `vlx-image media` run on them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{EPOCH, agent, run, workspace};

pub fn vlx_image() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vlx-image"))
}

/// `vlx-install` of the workspace, which the media's environment runs
/// (`cargo build --workspace --bins` leaves it beside vlx-image).
pub fn vlx_install() -> PathBuf {
    let p = vlx_image().with_file_name("vlx-install");
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first",
        p.display()
    );
    p
}

/// Builds the tiny host image of the repository into `dir/image`.
pub fn tiny_image(dir: &Path) -> PathBuf {
    let out = dir.join("image");
    run(Command::new(vlx_image())
        .arg("build")
        .arg("--profile")
        .arg(workspace().join("profiles/hosts/tiny.toml"))
        .arg("--out")
        .arg(&out)
        .arg("--agent")
        .arg(agent())
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string()));
    out
}

/// A media profile `dir/NAME.toml` carrying the demo cluster; `unattended`
/// names the target of unattended media; `extra` goes into `[media]`.
pub fn profile(dir: &Path, name: &str, unattended: Option<&str>, extra: &str) -> PathBuf {
    let demo = workspace().join("profiles/clusters/demo.toml");
    let mut text = format!(
        "[media]\nname = {name:?}\nclusters = [{:?}]\nconsole = [\"ttyS0,115200\"]\n{extra}\n",
        demo.display().to_string()
    );
    if let Some(t) = unattended {
        text.push_str(&format!(
            "[unattended]\nprofile = \"demo\"\ntarget = {t:?}\n"
        ));
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `vlx-image media` (acknowledging that the tiny image is a test
/// image); the caller checks the outcome.
pub fn try_build(profile: &Path, image: &Path, out: &Path, more: &[&str]) -> Output {
    Command::new(vlx_image())
        .arg("media")
        .arg("--test-image")
        .arg("--profile")
        .arg(profile)
        .arg("--image")
        .arg(image)
        .arg("--out")
        .arg(out)
        .arg("--installer")
        .arg(vlx_install())
        .args(more)
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .output()
        .unwrap()
}

/// Runs `vlx-image media` and expects it to succeed.
pub fn build(profile: &Path, image: &Path, out: &Path) {
    let o = try_build(profile, image, out, &[]);
    assert!(
        o.status.success(),
        "vlx-image media failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Copies `len` bytes at `offset` of `file` into a new file.
pub fn extract(file: &Path, offset: u64, len: u64, to: &Path) {
    run(Command::new("dd")
        .arg(format!("if={}", file.display()))
        .arg(format!("of={}", to.display()))
        .args([
            "bs=1M",
            "conv=sparse",
            "status=none",
            "iflag=skip_bytes,count_bytes",
        ])
        .arg(format!("skip={offset}"))
        .arg(format!("count={len}")));
}

/// A partition of a disk image, by number: (offset, length) in bytes, from
/// `sfdisk --json`.
pub fn partition(image: &Path, number: usize) -> (u64, u64) {
    let v: serde_json::Value =
        serde_json::from_str(&run(Command::new("sfdisk").arg("--json").arg(image))).unwrap();
    let p = &v["partitiontable"]["partitions"][number - 1];
    let sector = v["partitiontable"]["sectorsize"].as_u64().unwrap_or(512);
    (
        p["start"].as_u64().unwrap() * sector,
        p["size"].as_u64().unwrap() * sector,
    )
}
