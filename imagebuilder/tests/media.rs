//! Image tier: install media from `vlx-image media`, judged by sgdisk,
//! fsck.vfat, mtools, xorriso and sha256 of every payload file against the
//! manifest; their license texts and source offer read off the ESP and the
//! ISO; built twice for reproducibility; bad inputs refused at build time
//! with nothing left behind.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::media::{self, extract, partition};
use common::*;
use sha2::{Digest, Sha256};

fn sha256(path: &Path) -> String {
    contracts::hash::sha256_file(path).unwrap().1
}

/// A guest made by `vlx-image guest` from a small folder.
fn fake_guest(dir: &Path) -> PathBuf {
    let tree = dir.join("guest-tree");
    std::fs::create_dir_all(tree.join("boot")).unwrap();
    std::fs::write(tree.join("boot/kernel"), vec![9u8; 100_000]).unwrap();
    let profile = dir.join("fake.toml");
    std::fs::write(
        &profile,
        format!(
            "[guest]\nname = \"fake\"\ndistribution = \"test\"\nkernel = \"boot/kernel\"\n\
             [rootfs]\nsource = \"directory\"\npath = {:?}\n",
            tree.display().to_string()
        ),
    )
    .unwrap();
    let out = dir.join("guests/fake");
    run(Command::new(media::vlx_image())
        .args(["guest", "--profile"])
        .arg(&profile)
        .arg("--out")
        .arg(&out)
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string()));
    dir.join("guests")
}

/// Checks every file the manifest lists under `root` (an extracted
/// payload), and that `root/vlx-media.json` is `json`.
fn payload_matches(root: &Path, json: &[u8]) {
    assert_eq!(std::fs::read(root.join("vlx-media.json")).unwrap(), json);
    let m: serde_json::Value = serde_json::from_slice(json).unwrap();
    let files = m["files"].as_array().unwrap();
    assert!(files.len() > 10, "{m}");
    for f in files {
        let path = root.join(f["path"].as_str().unwrap());
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, f["size"].as_u64().unwrap(), "{path:?}");
        assert_eq!(
            cluster::plan::hex(&Sha256::digest(&bytes)),
            f["sha256"].as_str().unwrap(),
            "{path:?}"
        );
    }
}

/// The license texts and source offer of the media, as read off the ESP
/// (mtools) and the ISO (xorriso): the same files in both; every GPL
/// package of the image's SBOM, and the loaders, busybox and the kernel,
/// has its copyright file, and the offer names its source package.
fn licenses_are_shipped(esp: &Path, from_iso: &Path, dir: &Path) {
    let from_esp = dir.join("esp-licenses");
    run(Command::new("mcopy")
        .args(["-s", "-n", "-i"])
        .arg(esp)
        .arg("::/LICENSES")
        .arg(&from_esp));
    let on_iso = from_iso.join("LICENSES");
    let listing = |root: &Path| {
        run(Command::new("find")
            .arg(".")
            .args(["-type", "f"])
            .current_dir(root))
        .lines()
        .map(str::to_owned)
        .collect::<std::collections::BTreeSet<_>>()
    };
    let files = listing(&on_iso);
    assert_eq!(listing(&from_esp), files, "the ESP and the ISO differ");
    for f in &files {
        run(Command::new("cmp")
            .arg(from_esp.join(f))
            .arg(on_iso.join(f)));
    }
    let readme = std::fs::read_to_string(on_iso.join("README")).unwrap();
    let offer = std::fs::read_to_string(on_iso.join("SOURCE-OFFER")).unwrap();
    assert!(offer.contains("Written offer for source code"), "{offer}");
    // No address of anyone's: the offer names packages and versions.
    for url in ["://", "www."] {
        assert!(!offer.contains(url), "an address in the offer: {offer}");
        assert!(!readme.contains(url), "an address in the index: {readme}");
    }
    let has = |package: &str| {
        let copyright = on_iso.join(package).join("copyright");
        assert!(
            std::fs::metadata(&copyright).is_ok_and(|m| m.len() > 100),
            "no copyright file of {package} on the media: {files:?}"
        );
        assert!(
            readme
                .lines()
                .any(|l| l.starts_with(&format!("{package} "))),
            "{package} not in the index:\n{readme}"
        );
    };
    // The SBOM of the image on the media: every package under a GPL (or
    // LGPL, AGPL) has its notice, and the offer names it at its version.
    let sbom: serde_json::Value =
        serde_json::from_slice(&std::fs::read(from_iso.join("image/sbom.spdx.json")).unwrap())
            .unwrap();
    let mut gpl = 0;
    for p in sbom["packages"].as_array().unwrap() {
        let license = p["licenseDeclared"].as_str().unwrap();
        if p["SPDXID"] == "SPDXRef-Image" || !license.contains("GPL") {
            continue;
        }
        gpl += 1;
        let name = p["name"].as_str().unwrap();
        has(name);
        let line = format!("    {name} {}\n", p["versionInfo"].as_str().unwrap());
        assert!(offer.contains(&line), "{line:?} not in the offer:\n{offer}");
    }
    assert!(gpl > 5, "only {gpl} GPL packages in the SBOM");
    // What the media ship besides the image: busybox, the loaders, iPXE.
    for package in [
        "busybox-static",
        "syslinux",
        "syslinux-common",
        "isolinux",
        "systemd-boot-efi",
        "ipxe",
        "e2fsprogs",
        "mtools",
    ] {
        has(package);
    }
    let kernel = files
        .iter()
        .find(|f| f.starts_with("./linux-image-"))
        .unwrap_or_else(|| panic!("no kernel package: {files:?}"));
    assert!(kernel.ends_with("/copyright"), "{kernel}");
    assert!(offer.contains("\nlinux "), "{offer}");
    // busybox-static has the C library inside: the offer names its source.
    assert!(
        offer
            .lines()
            .any(|l| l.starts_with("    busybox-static ") && l.ends_with(" (built with it)")),
        "{offer}"
    );
    // The texts the copyright files point at.
    for text in ["GPL-2", "LGPL-2.1"] {
        let f = on_iso.join("common-licenses").join(text);
        let t = std::fs::read_to_string(&f).unwrap();
        assert!(t.contains("GNU"), "{f:?}");
    }
}

fn xorriso_extract(iso: &Path, to: &Path) {
    run(Command::new("xorriso")
        .args(["-abort_on", "WARNING", "-osirrox", "on", "-indev"])
        .arg(iso)
        .args(["-extract", "/"])
        .arg(to));
}

#[test]
fn media_pass_their_checks_carry_their_manifest_and_reproduce() {
    let d = tempfile::tempdir().unwrap();
    let image = media::tiny_image(d.path());
    let guests = fake_guest(d.path());
    let profile = media::profile(d.path(), "vlx-test", None, "guests = [\"fake\"]");
    let out = d.path().join("a");
    let o = media::try_build(
        &profile,
        &image,
        &out,
        &["--guests", guests.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let img = out.join("vlx-test.img");
    let iso = out.join("vlx-test.iso");
    let json = std::fs::read(out.join("vlx-test.json")).unwrap();
    let sha = cluster::plan::hex(&Sha256::digest(&json));
    let m: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(m["image"]["name"], "tiny");
    assert_eq!(m["clusters"][0]["name"], "demo");
    assert_eq!(m["guests"][0]["name"], "fake");
    assert_eq!(
        m["image"]["manifest_sha256"],
        sha256(&image.join("manifest.json"))
    );

    // The USB image: its GPT, its ESP, its payload partition.
    let v = run(Command::new("sgdisk").arg("-v").arg(&img));
    assert!(v.contains("No problems found"), "{v}");
    let (esp_at, esp_len) = partition(&img, 1);
    let esp = d.path().join("esp.img");
    extract(&img, esp_at, esp_len, &esp);
    let fsck = Command::new("fsck.vfat")
        .arg("-n")
        .arg(&esp)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "{}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    let list = run(Command::new("mdir")
        .args(["-/", "-a", "-b", "-i"])
        .arg(&esp)
        .arg("::"));
    for want in [
        "::/EFI/BOOT/BOOTX64.EFI",
        "::/loader/entries/install.conf",
        "::/syslinux/ldlinux.sys",
        "::/syslinux/syslinux.cfg",
        "::/vlx/install/vmlinuz",
        "::/vlx/install/installer.img",
    ] {
        assert!(list.lines().any(|l| l == want), "{want} not in {list}");
    }
    let entry = run(Command::new("mtype")
        .arg("-i")
        .arg(&esp)
        .arg("::/loader/entries/install.conf"));
    assert!(entry.contains(&format!("vlx.media={sha} ")), "{entry}");
    let mbr = std::fs::read(&img).unwrap()[..440].to_vec();
    let gptmbr = std::fs::read("/usr/lib/SYSLINUX/gptmbr.bin").unwrap();
    assert_eq!(mbr, gptmbr[..440], "the MBR boot code is gptmbr.bin");
    let (p_at, p_len) = partition(&img, 2);
    let part = d.path().join("payload.iso");
    extract(&img, p_at, p_len, &part);
    let from_usb = d.path().join("usb");
    xorriso_extract(&part, &from_usb);
    payload_matches(&from_usb, &json);

    // The ISO: both El Torito entries, the same payload, the same cmdline.
    let report = run(Command::new("xorriso")
        .args(["-abort_on", "WARNING", "-indev"])
        .arg(&iso)
        .args(["-report_el_torito", "plain"]));
    let norm: Vec<String> = report
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert!(
        norm.iter()
            .any(|l| l.starts_with("El Torito boot img : 1 BIOS y none")),
        "{report}"
    );
    assert!(
        norm.iter()
            .any(|l| l.starts_with("El Torito boot img : 2 UEFI y none")),
        "{report}"
    );
    let from_iso = d.path().join("iso");
    xorriso_extract(&iso, &from_iso);
    payload_matches(&from_iso, &json);
    let cfg = std::fs::read_to_string(from_iso.join("isolinux/isolinux.cfg")).unwrap();
    assert!(cfg.contains(&format!("vlx.media={sha} ")), "{cfg}");
    assert!(cfg.contains("LINUX /boot/vmlinuz"), "{cfg}");
    let efi = from_iso.join("boot/efi.img");
    let fsck = Command::new("fsck.vfat")
        .arg("-n")
        .arg(&efi)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    let entry = run(Command::new("mtype")
        .arg("-i")
        .arg(&efi)
        .arg("::/loader/entries/install.conf"));
    assert!(entry.contains(&format!("vlx.media={sha} ")), "{entry}");
    licenses_are_shipped(&esp, &from_iso, d.path());
    // The installer's initramfs holds what the install runs.
    let listing = run(Command::new("cpio")
        .args(["-t", "--quiet", "-F"])
        .arg(from_iso.join("boot/installer.img")));
    for want in [
        "init",
        "usr/sbin/vlx-install",
        "usr/sbin/mke2fs",
        "usr/bin/ssh-keygen",
        "usr/bin/syslinux",
        "usr/lib/ipxe/undionly.kpxe",
        "etc/vlx/modules.load",
    ] {
        assert!(
            listing.lines().any(|l| l == want),
            "{want} not in the initramfs"
        );
    }

    // The same inputs again: the same bytes.
    let out_b = d.path().join("b");
    let o = media::try_build(
        &profile,
        &image,
        &out_b,
        &["--guests", guests.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in ["vlx-test.img", "vlx-test.iso", "vlx-test.json"] {
        run(Command::new("cmp").arg(out.join(f)).arg(out_b.join(f)));
    }
}

/// Fails the build with `more` arguments, expects `needles` in its error,
/// and no output (nor temporary file) left in `out`.
fn refused(profile: &Path, image: &Path, out: &Path, more: &[&str], needles: &[&str]) {
    let o = media::try_build(profile, image, out, more);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "built, but should not have");
    for n in needles {
        assert!(err.contains(n), "`{n}` not in: {err}");
    }
    if out.exists() {
        assert_eq!(names(out), Vec::<String>::new(), "left behind in {out:?}");
    }
}

#[test]
fn bad_inputs_are_refused_at_build_time() {
    let d = tempfile::tempdir().unwrap();
    let image = media::tiny_image(d.path());
    let good = media::profile(d.path(), "good", None, "");

    // An image whose origin differs from its manifest (same size).
    let bad_image = d.path().join("bad-image");
    run(Command::new("cp").arg("-a").arg(&image).arg(&bad_image));
    let origin = bad_image.join("origin.ext4");
    let mut bytes = std::fs::read(&origin).unwrap();
    bytes[5_000_000] ^= 0x40;
    std::fs::write(&origin, bytes).unwrap();
    refused(
        &good,
        &bad_image,
        &d.path().join("out1"),
        &[],
        &["origin.ext4", "sha256", "(manifest.json) says"],
    );

    // A guest that is not there.
    let guests = media::profile(d.path(), "guests", None, "guests = [\"debian-bookworm\"]");
    refused(
        &guests,
        &image,
        &d.path().join("out2"),
        &[],
        &["media.guests", "debian-bookworm"],
    );

    // A payload that does not fit the stick.
    let small = media::profile(d.path(), "small", None, "size = \"64MiB\"");
    refused(
        &small,
        &image,
        &d.path().join("out3"),
        &[],
        &["does not fit", "media.size"],
    );

    // A cluster profile whose host image is another one.
    let hosts = d.path().join("hosts");
    let clusters = d.path().join("clusters");
    std::fs::create_dir_all(&hosts).unwrap();
    std::fs::create_dir_all(&clusters).unwrap();
    std::fs::write(
        hosts.join("other.toml"),
        "[image]\nname = \"other\"\nversion = \"1\"\n",
    )
    .unwrap();
    let demo = std::fs::read_to_string(workspace().join("profiles/clusters/demo.toml")).unwrap();
    let overlays = workspace().join("overlays/node");
    let text = demo
        .replace(
            "host = \"../hosts/tiny.toml\"",
            "host = \"../hosts/other.toml\"",
        )
        .replace(
            "overlays = [\"../../overlays/node\"]",
            &format!("overlays = [{:?}]", overlays.display().to_string()),
        );
    assert_ne!(text, demo);
    std::fs::write(clusters.join("other.toml"), text).unwrap();
    let other = d.path().join("other-media.toml");
    std::fs::write(
        &other,
        "[media]\nname = \"other\"\nclusters = [\"clusters/other.toml\"]\n",
    )
    .unwrap();
    refused(
        &other,
        &image,
        &d.path().join("out4"),
        &[],
        &["other.toml", "`other`", "`tiny`"],
    );

    // The tiny image is a test image: media of it without the
    // acknowledgement are refused (exit 3), and nothing is written.
    let out5 = d.path().join("out5");
    let o = Command::new(media::vlx_image())
        .args(["media", "--profile"])
        .arg(&good)
        .arg("--image")
        .arg(&image)
        .arg("--out")
        .arg(&out5)
        .arg("--installer")
        .arg(media::vlx_install())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("is a test image") && err.contains("--test-image"),
        "{err}"
    );
    assert!(!out5.exists(), "{out5:?} was made");
}

/// The shipped profile, as the README builds it: without `--image`, the
/// host image its cluster profile names is built first; its
/// `test_image = true` acknowledges the tiny test image, which a copy
/// without that key is refused for, before anything is built.
#[test]
fn the_shipped_profile_builds_its_image_first() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    let media_of = |profile: &Path| {
        let mut c = Command::new(media::vlx_image());
        c.args(["media", "--profile"])
            .arg(profile)
            .arg("--out")
            .arg(&out)
            .arg("--agent")
            .arg(agent())
            .arg("--installer")
            .arg(media::vlx_install())
            .env("SOURCE_DATE_EPOCH", EPOCH.to_string());
        c
    };
    let shipped = workspace().join("isos/vlx-installer.toml");
    let text = std::fs::read_to_string(&shipped).unwrap();
    assert!(text.contains("\ntest_image = true\n"), "{text}");
    let demo = workspace().join("profiles/clusters/demo.toml");
    let unacknowledged = d.path().join("unacknowledged.toml");
    std::fs::write(
        &unacknowledged,
        text.replace("\ntest_image = true\n", "\n").replace(
            "\"../profiles/clusters/demo.toml\"",
            &format!("{:?}", demo.display().to_string()),
        ),
    )
    .unwrap();
    let o = media_of(&unacknowledged).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("tiny.toml is a test image"), "{err}");
    assert!(!out.exists(), "{out:?} was made");
    run(&mut media_of(&shipped));
    let v = run(Command::new("sgdisk")
        .arg("-v")
        .arg(out.join("vlx-installer.img")));
    assert!(v.contains("No problems found"), "{v}");
    let m = contracts::image::verify_dir(&out.join("image")).unwrap();
    assert_eq!(m.name, "tiny");
    assert!(m.test_image);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("vlx-installer.json")).unwrap()).unwrap();
    assert_eq!(json["image"]["name"], "tiny");
    assert_eq!(json["source_date_epoch"], EPOCH);
    assert!(out.join("vlx-installer.iso").is_file());
}
