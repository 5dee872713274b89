//! A test image (`test_image` in its manifest, as the tiny image's) is
//! installed only with `--test-image`: without it `apply` refuses with exit
//! 3, naming the image and the flag, and writes nothing; `status` says
//! "test image" for a cluster installed with one, and only then.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::*;

const MIB: u64 = 1 << 20;

/// Marks the image in `img` as a test image, as `vlx-image build` does for
/// a host profile with `test_image = true`.
fn make_test_image(img: &Path) {
    let path = img.join(contracts::image::FILE);
    let mut m = contracts::image::Manifest::read(img).unwrap();
    m.test_image = true;
    std::fs::write(&path, m.to_json()).unwrap();
}

fn status(san: &Path) -> (String, serde_json::Value) {
    let o = vlx_install(&["status", "--san", san.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let human = String::from_utf8_lossy(&o.stdout).into_owned();
    let o = vlx_install(&["status", "--json", "--san", san.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    (human, serde_json::from_slice(&o.stdout).unwrap())
}

#[test]
fn a_test_image_needs_the_flag_and_status_says_so() {
    let d = tempfile::tempdir().unwrap();
    let img = image_dir(d.path(), "a");
    make_test_image(&img);
    let san = san(d.path(), 600 * MIB);

    let o = apply(&fixture("small.toml"), &img, &san, &[]);
    let said = text(&o);
    assert_eq!(o.status.code(), Some(3), "{said}");
    assert!(
        said.contains(&format!("image {} is `tiny`, a test image", img.display())),
        "{said}"
    );
    assert!(said.contains("--test-image"), "{said}");
    assert!(said.contains("nothing was written"), "{said}");
    // Not one byte: a write to a sparse file allocates.
    let meta = std::fs::metadata(&san).unwrap();
    assert_eq!(meta.blocks(), 0, "the refused target was written to");
    assert_eq!(meta.len(), 600 * MIB);

    let o = apply(&fixture("small.toml"), &img, &san, &["--test-image"]);
    assert!(o.status.success(), "{}", text(&o));
    let (human, json) = status(&san);
    let line = human.lines().find(|l| l.starts_with("image: ")).unwrap();
    assert!(line.starts_with("image: tiny 0.1.0 (test image"), "{human}");
    assert_eq!(json["test_image"], true, "{json}");
}

#[test]
fn an_image_for_real_clusters_needs_no_flag_and_is_no_test_image() {
    let d = tempfile::tempdir().unwrap();
    let img = image_dir(d.path(), "a");
    let san = san(d.path(), 600 * MIB);
    let o = apply(&fixture("small.toml"), &img, &san, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let (human, json) = status(&san);
    assert!(human.contains("\nimage: tiny 0.1.0\n"), "{human}");
    assert!(!human.contains("test image"), "{human}");
    assert_eq!(json["test_image"], false, "{json}");
}
