//! Shared setup of the installer's image-tier tests: a synthetic host image
//! directory (a real ext4 origin; kernel and initramfs stand-ins) and SAN
//! image files.

#![allow(dead_code, clippy::unwrap_used)] // not every test uses every helper

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The `small.toml` fixture's text with its repository paths (the tiny
/// host profile, the node overlay) made absolute, so that a changed copy
/// written anywhere still finds them.
pub fn small_profile_text() -> String {
    let repo = repo().canonicalize().unwrap();
    std::fs::read_to_string(fixture("small.toml"))
        .unwrap()
        .replace(
            "../../../profiles/hosts/tiny.toml",
            &repo.join("profiles/hosts/tiny.toml").display().to_string(),
        )
        .replace(
            "../../../overlays/node",
            &repo.join("overlays/node").display().to_string(),
        )
}

/// The plan `vlx-install plan --json` prints for `profile` on `san`.
pub fn plan(profile: &Path, san: &Path) -> cluster::Plan {
    let o = vlx_install(&[
        "plan",
        "--cluster",
        profile.to_str().unwrap(),
        "--san",
        san.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    cluster::Plan::from_json(&String::from_utf8_lossy(&o.stdout)).unwrap()
}

pub fn sha256_file(path: &Path) -> String {
    let mut f = std::fs::File::open(path).unwrap();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Deterministic filler bytes.
fn filler(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// An image directory named like the tiny host profile: `origin.ext4` made
/// by mke2fs from a small tree holding `marker`, stand-in kernel and
/// initramfs, and a manifest.
pub fn image_dir(dir: &Path, marker: &str) -> PathBuf {
    let img = dir.join("image");
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::create_dir_all(&img).unwrap();
    std::fs::write(tree.join("etc/marker"), marker).unwrap();
    let st = Command::new("mke2fs")
        .env("E2FSPROGS_FAKE_TIME", "1700000000")
        .args([
            "-q",
            "-F",
            "-t",
            "ext4",
            "-b",
            "4096",
            "-U",
            "0e0e0e0e-0e0e-4e0e-8e0e-0e0e0e0e0e0e",
            "-d",
        ])
        .arg(&tree)
        .arg(img.join("origin.ext4"))
        .arg("32M")
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::write(img.join("vmlinuz"), filler(3 << 20, 7)).unwrap();
    std::fs::write(img.join("initramfs.img"), filler(2 << 20, 11)).unwrap();
    write_manifest(&img);
    img
}

/// Writes the manifest of the image in `img` with the image builder's own
/// type, as `vlx-image build` does.
pub fn write_manifest(img: &Path) {
    use contracts::image::{self as manifest, Manifest};
    let m = Manifest {
        format: manifest::FORMAT,
        name: "tiny".into(),
        version: "0.1.0".into(),
        profile_sha256: "0".repeat(64),
        source_date_epoch: 1_700_000_000,
        kernel_release: "6.1.0-test".into(),
        artifacts: manifest::describe(img, &["initramfs.img", "origin.ext4", "vmlinuz"]).unwrap(),
        packages: Default::default(),
        test_image: false,
    };
    std::fs::write(img.join(manifest::FILE), m.to_json()).unwrap();
}

/// A sparse SAN image file.
pub fn san(dir: &Path, size: u64) -> PathBuf {
    let p = dir.join("san.img");
    std::fs::File::create(&p).unwrap().set_len(size).unwrap();
    p
}

pub fn vlx_install(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vlx-install"))
        .args(args)
        .output()
        .unwrap()
}

pub fn apply(profile: &Path, image: &Path, san: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "apply",
        "--cluster",
        profile.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--san",
        san.to_str().unwrap(),
        "--yes",
    ];
    args.extend_from_slice(extra);
    vlx_install(&args)
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
