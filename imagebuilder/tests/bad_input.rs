//! Bad input: each is an error naming the thing, and the output folder
//! keeps no artifact under a final name (nor a temporary one).
// Helpers outside #[test] functions panic on purpose too.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use imagebuilder::image::host::{self, HostBuild};
use imagebuilder::profile::HostProfile;
use imagebuilder::progress::Quiet;

fn try_build(dir: &Path, text: &str, agent: PathBuf) -> (String, PathBuf) {
    let path = dir.join("p.toml");
    fs::write(&path, text).unwrap();
    let out = dir.join("out");
    let err = HostProfile::load(&path)
        .and_then(|p| {
            host::build(
                &p,
                &HostBuild {
                    agent,
                    out: out.clone(),
                    source_date_epoch: EPOCH,
                },
                &Quiet,
            )
        })
        .map(|_| ())
        .unwrap_err();
    (format!("{err}"), out)
}

fn assert_empty(out: &Path) {
    if out.exists() {
        assert_eq!(
            names(out),
            Vec::<String>::new(),
            "left behind in {}",
            out.display()
        );
    }
}

#[test]
fn missing_binary_is_named() {
    let d = tempfile::tempdir().unwrap();
    let text = tiny_profile_text(&[], "").replace(
        "binaries = [\n",
        "binaries = [\n    \"no-such-program-vlx\",\n",
    );
    let (err, out) = try_build(d.path(), &text, agent());
    assert!(err.contains("no-such-program-vlx"), "{err}");
    assert_empty(&out);
}

#[test]
fn missing_agent_is_named() {
    let d = tempfile::tempdir().unwrap();
    let (err, out) = try_build(
        d.path(),
        &tiny_profile_text(&[], ""),
        d.path().join("vlx-node"),
    );
    assert!(err.contains("vlx-node"), "{err}");
    assert_empty(&out);
}

#[test]
fn missing_overlay_variable_names_template_line_and_variable() {
    let d = tempfile::tempdir().unwrap();
    let ov = d.path().join("ov");
    fs::create_dir_all(ov.join("etc")).unwrap();
    fs::write(ov.join("etc/motd.hbs"), "welcome to\n{{image.nope}}\n").unwrap();
    let (err, out) = try_build(d.path(), &tiny_profile_text(&[ov], ""), agent());
    assert!(err.contains("etc/motd.hbs:2:"), "{err}");
    assert!(err.contains("image.nope"), "{err}");
    assert_empty(&out);
}

#[test]
fn missing_overlay_folder_is_named() {
    let d = tempfile::tempdir().unwrap();
    let (err, out) = try_build(
        d.path(),
        &tiny_profile_text(&[d.path().join("nope")], ""),
        agent(),
    );
    assert!(err.contains("nope") && err.contains("overlay"), "{err}");
    assert_empty(&out);
}

#[test]
fn kernel_without_a_needed_module_is_named_and_leaves_nothing() {
    let d = tempfile::tempdir().unwrap();
    let text = tiny_profile_text(&[], "modules = [\"no_such_module_vlx\"]");
    // This fails after origin.ext4 is written: its temporary must go too.
    let (err, out) = try_build(d.path(), &text, agent());
    assert!(err.contains("no_such_module_vlx"), "{err}");
    assert!(
        err.contains("cloud-amd64") || err.contains("kernel "),
        "{err}"
    );
    assert_empty(&out);
}

#[test]
fn tarball_with_another_sha256_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let tarball = d.path().join("root.tar");
    fs::write(&tarball, vec![0u8; 10240]).unwrap();
    let text = format!(
        "[image]\nname = \"t\"\nversion = \"1\"\n[rootfs]\nsource = \"tarball\"\ntarball = \"root.tar\"\nsha256 = \"{}\"\n[kernel]\npackage = \"linux-image-cloud-amd64\"\n",
        "0".repeat(64)
    );
    let (err, out) = try_build(d.path(), &text, agent());
    assert!(err.contains("root.tar") && err.contains("sha256"), "{err}");
    assert_empty(&out);
}
