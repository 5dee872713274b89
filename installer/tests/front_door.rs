//! One front door: the installer environment of the media and
//! `vlx-install apply` prepare an install with the same checks, so they
//! refuse the same target with the same message and exit code.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use installer::media::cmdline::{MediaArgs, Target};
use installer::media::prompt::Prompt;

const MIB: u64 = 1 << 20;

#[test]
fn a_san_size_larger_than_the_disk_is_refused_by_apply_and_the_media_alike() {
    let d = tempfile::tempdir().unwrap();
    // The payload's layout: `image/` beside the profile's folder would be
    // `config/`; the profile is read where it lies.
    let img = image_dir(d.path(), "a");
    let profile = fixture("small.toml");
    // small.toml says san.size = "600MiB"; its layout fits in 580 MiB, so
    // only the san.size check can refuse this disk.
    let san = san(d.path(), 580 * MIB);
    let before = sha256_file(&san);
    let want = format!(
        "{} is 580MiB, smaller than the profile's san.size of 600MiB ({})",
        san.display(),
        profile.display()
    );

    let o = apply(&profile, &img, &san, &[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains("san.size"))
        .unwrap_or_else(|| panic!("no san.size refusal in:\n{}", text(&o)));
    assert_eq!(
        line,
        format!("vlx-install: error: {want}; nothing was written to the target")
    );
    assert_eq!(
        sha256_file(&san),
        before,
        "apply changed the refused target"
    );

    let args = MediaArgs {
        media: "0".repeat(64),
        profile: Some("small".into()),
        target: Some(Target::Disk(san.display().to_string())),
        storage: None,
        unattended: true,
        wipe: false,
    };
    let mut input: &[u8] = b"";
    let mut out = Vec::new();
    let mut ask = Prompt::new(&mut input, &mut out);
    let err = installer::media::install(&args, d.path(), &profile, &san, &mut ask).unwrap_err();
    assert_eq!(err.exit_code(), 3, "{err}");
    assert_eq!(err.to_string(), want);
    assert!(
        out.is_empty(),
        "the media asked: {}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(
        sha256_file(&san),
        before,
        "the media changed the refused target"
    );
}

#[test]
fn an_invalid_profile_is_bad_input_to_apply_and_the_media_alike() {
    let d = tempfile::tempdir().unwrap();
    let img = image_dir(d.path(), "a");
    // small.toml with a typo'd key; its host profile and overlays named by
    // absolute paths, as it no longer lies beside them.
    let profile = d.path().join("typo.toml");
    let repo = repo().canonicalize().unwrap();
    let typo = std::fs::read_to_string(fixture("small.toml"))
        .unwrap()
        .replace("cow = \"16MiB\"", "cowe = \"16MiB\"")
        .replace("\"../../../", &format!("\"{}/", repo.display()));
    std::fs::write(&profile, typo).unwrap();
    let san = san(d.path(), 600 * MIB);
    let before = sha256_file(&san);

    let o = apply(&profile, &img, &san, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(stderr.contains("storage.cowe"), "{stderr}");

    let args = MediaArgs {
        media: "0".repeat(64),
        profile: Some("small".into()),
        target: Some(Target::Disk(san.display().to_string())),
        storage: None,
        unattended: true,
        wipe: false,
    };
    let mut input: &[u8] = b"";
    let mut out = Vec::new();
    let mut ask = Prompt::new(&mut input, &mut out);
    let err = installer::media::install(&args, d.path(), &profile, &san, &mut ask).unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
    // The same diagnostics, each in the one error form of every binary.
    let said = err.to_string();
    let diags: Vec<&str> = said.lines().filter(|l| l.contains("typo.toml:")).collect();
    assert!(!diags.is_empty(), "{said}");
    for d in diags {
        assert!(
            stderr
                .lines()
                .any(|l| l == format!("vlx-install: error: {d}")),
            "{d} not in:\n{stderr}"
        );
    }
    assert_eq!(sha256_file(&san), before);
}

#[test]
fn an_install_not_confirmed_is_refused_with_3_and_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let img = image_dir(d.path(), "a");
    let profile = fixture("small.toml");
    let san = san(d.path(), 600 * MIB);
    let before = sha256_file(&san);
    // Standard input is not a terminal and there is no --yes.
    let o = vlx_install(&[
        "apply",
        "--cluster",
        profile.to_str().unwrap(),
        "--image",
        img.to_str().unwrap(),
        "--san",
        san.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let said: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("vlx-install: "))
        .collect();
    assert_eq!(
        said,
        [
            format!(
                "vlx-install: error: {}: install not confirmed: standard input is not a terminal; nothing was written to the target",
                san.display()
            ),
            "vlx-install: hint: pass --yes to install without asking".to_owned(),
        ],
        "{stderr}"
    );
    assert!(
        stderr.contains("holds nothing: it will be installed"),
        "{stderr}"
    );
    assert_eq!(sha256_file(&san), before);
}
