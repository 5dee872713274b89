//! Image tier: ISO 9660 volumes from the native writer, judged by xorriso
//! (libisofs), sfdisk and mtools. (The kernel's isofs driver reads them in
//! the rig tier: the build machine's kernel may lack it.)

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use imagebuilder::formats::iso::{self, BootSpec, IsoSpec, IsoTree, Source};

fn sample(dir: &Path) -> IsoTree {
    let big: Vec<u8> = (0..5_000_003u32).map(|i| (i * 13 % 251) as u8).collect();
    std::fs::write(dir.join("big.bin"), &big).unwrap();
    let mut t = IsoTree::new();
    t.add(
        "image/origin.ext4",
        Source::file(dir.join("big.bin")).unwrap(),
    )
    .unwrap();
    t.add("image/manifest.json", Source::Bytes(b"{}\n".to_vec()))
        .unwrap();
    t.add("empty", Source::Bytes(Vec::new())).unwrap();
    t.add(
        "config/overlays/node/etc/keepalived/keepalived.conf.hbs",
        Source::Bytes(b"vrrp\n".to_vec()),
    )
    .unwrap();
    t.add(
        "guests/debian-bookworm/debian-bookworm.tar.gz",
        Source::Bytes(vec![7; 3000]),
    )
    .unwrap();
    // Names that mangle to the same ISO 9660 identifier.
    for n in ["a-b.txt", "a_b.txt", "A-B.TXT", ".hidden"] {
        t.add(&format!("same/{n}"), Source::Bytes(n.as_bytes().to_vec()))
            .unwrap();
    }
    // Enough entries that a folder spans several blocks.
    for i in 0..80 {
        t.add(
            &format!("many/a rather long file name number {i:03}.toml"),
            Source::Bytes(format!("{i}\n").into_bytes()),
        )
        .unwrap();
    }
    t
}

fn build(dir: &Path, tree: &IsoTree, boot: Option<BootSpec>, name: &str) -> PathBuf {
    let spec = IsoSpec {
        volume_id: "VLX_TEST".into(),
        epoch: EPOCH,
        boot,
    };
    let img = iso::plan(&spec, tree).unwrap();
    let path = dir.join(name);
    img.write(&path, 0).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), img.size());
    path
}

/// Extracts `iso` with xorriso (libisofs reads it, Rock Ridge names
/// included) and checks every file of `tree` byte for byte, and the mode
/// and time of one.
fn extract_and_compare(iso: &Path, tree: &IsoTree) {
    let out = tempfile::tempdir().unwrap();
    let root = out.path().join("x");
    run(Command::new("xorriso")
        .args(["-abort_on", "WARNING", "-osirrox", "on", "-indev"])
        .arg(iso)
        .args(["-extract", "/"])
        .arg(&root));
    for (path, source) in tree.files() {
        let got = std::fs::read(root.join(path))
            .unwrap_or_else(|e| panic!("{path} extracted from the volume: {e}"));
        let want = match source {
            Source::Bytes(b) => b.clone(),
            Source::File { path, .. } => std::fs::read(path).unwrap(),
        };
        if path.ends_with("isolinux.bin") {
            // Its boot information table (bytes 8 to 64) is filled in: the
            // primary volume descriptor at block 16, its length.
            assert_eq!(got.len(), want.len());
            assert!(got[..8] == want[..8] && got[64..] == want[64..], "{path}");
            assert_eq!(&got[8..12], &16u32.to_le_bytes());
            assert_eq!(&got[16..20], &(want.len() as u32).to_le_bytes());
            continue;
        }
        assert!(got == want, "{path} differs in the volume");
    }
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(root.join("image/manifest.json")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o644);
    assert_eq!(meta.mtime(), EPOCH as i64);
    assert_eq!(
        names(&root.join("same")),
        [".hidden", "A-B.TXT", "a-b.txt", "a_b.txt"]
    );
}

#[test]
fn plain_volume_reads_back_with_xorriso() {
    let d = tempfile::tempdir().unwrap();
    let tree = sample(d.path());
    let iso = build(d.path(), &tree, None, "plain.iso");
    extract_and_compare(&iso, &tree);
    let list = run(Command::new("xorriso")
        .args(["-abort_on", "WARNING", "-indev"])
        .arg(&iso)
        .args(["-find", "/", "-type", "f", "-exec", "lsdl"]));
    for want in [
        "'/image/origin.ext4'",
        "'/guests/debian-bookworm/debian-bookworm.tar.gz'",
        "'/config/overlays/node/etc/keepalived/keepalived.conf.hbs'",
    ] {
        assert!(list.contains(want), "{want} not in {list}");
    }
    assert!(list.contains(" 5000003 "), "{list}");
    // xorriso reads every block of the volume without complaint.
    let check = Command::new("xorriso")
        .args(["-abort_on", "WARNING", "-indev"])
        .arg(&iso)
        .args(["-check_media", "--"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&check.stdout).to_string()
        + &String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{text}");
    assert!(
        text.contains("Media region") && !text.contains("damaged"),
        "{text}"
    );
}

#[test]
fn same_inputs_give_the_same_bytes() {
    let d = tempfile::tempdir().unwrap();
    let tree = sample(d.path());
    let a = build(d.path(), &tree, None, "a.iso");
    let b = build(d.path(), &tree, None, "b.iso");
    run(Command::new("cmp").arg(&a).arg(&b));
}

/// A FAT image for the UEFI El Torito entry, made by bootfs.
fn efi_image(dir: &Path) -> PathBuf {
    use bootfs::fat::{self, FatSpec, Source as FatSource, Tree};
    let mut t = Tree::new();
    t.add_file(
        "/EFI/BOOT/BOOTX64.EFI",
        FatSource::file("/usr/lib/systemd/boot/efi/systemd-bootx64.efi").unwrap(),
    )
    .unwrap();
    let spec = FatSpec {
        sector_size: cluster::SectorSize::B512,
        size: cluster::Bytes::mib(34),
        volume_id: 1,
        label: Some("VLX-EFI".into()),
        partition_lba: cluster::Lba(0),
        epoch: bootfs::Epoch(EPOCH),
    };
    let img = fat::plan(&spec, &t).unwrap();
    let path = dir.join("efi.img");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(spec.size.get())
        .unwrap();
    img.write(&path, cluster::Bytes(0)).unwrap();
    path
}

#[test]
fn bootable_hybrid_shows_both_el_torito_entries() {
    let d = tempfile::tempdir().unwrap();
    let mut tree = sample(d.path());
    tree.add(
        "isolinux/isolinux.bin",
        Source::file(Path::new("/usr/lib/ISOLINUX/isolinux.bin")).unwrap(),
    )
    .unwrap();
    tree.add(
        "isolinux/ldlinux.c32",
        Source::file(Path::new("/usr/lib/syslinux/modules/bios/ldlinux.c32")).unwrap(),
    )
    .unwrap();
    tree.add("boot/efi.img", Source::file(efi_image(d.path())).unwrap())
        .unwrap();
    let boot = BootSpec {
        bios: Some("isolinux/isolinux.bin".into()),
        efi: Some("boot/efi.img".into()),
        catalog: "isolinux/boot.cat".into(),
        hybrid_mbr: Some(std::fs::read("/usr/lib/ISOLINUX/isohdpfx.bin").unwrap()),
    };
    let iso = build(d.path(), &tree, Some(boot), "boot.iso");
    let report = run(Command::new("xorriso")
        .args(["-abort_on", "WARNING", "-indev"])
        .arg(&iso)
        .args(["-report_el_torito", "plain", "-report_system_area", "plain"]));
    let line = |prefix: &str| -> Vec<String> {
        report
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|l| l.starts_with(prefix))
            .collect()
    };
    let imgs = line("El Torito boot img :");
    assert_eq!(imgs.len(), 2, "{report}");
    assert!(
        imgs[0].contains(" BIOS y none ") && imgs[0].contains(" 4 "),
        "{report}"
    );
    assert!(imgs[1].contains(" UEFI y none "), "{report}");
    let paths = line("El Torito img path :");
    assert!(
        paths.iter().any(|p| p.ends_with("/isolinux/isolinux.bin")),
        "{report}"
    );
    assert!(
        paths.iter().any(|p| p.ends_with("/boot/efi.img")),
        "{report}"
    );
    let opts = line("El Torito img opts :");
    assert!(
        opts.iter()
            .any(|o| o.contains("boot-info-table") && o.contains("isohybrid-suitable")),
        "{report}"
    );
    assert_eq!(
        line("El Torito cat path :"),
        ["El Torito cat path : /isolinux/boot.cat"]
    );
    let parts = line("MBR partition :");
    assert!(
        parts.iter().any(|p| p.contains(" 0x80 0x00 0 ")),
        "{report}"
    );
    assert!(parts.iter().any(|p| p.contains(" 0x00 0xef ")), "{report}");
    assert_eq!(
        line("MBR partition path :"),
        ["MBR partition path : 2 /boot/efi.img"]
    );
    assert!(
        line("System area summary:")
            .iter()
            .any(|l| l.contains("MBR isohybrid cyl-align-on")),
        "{report}"
    );
    // The EFI partition of the MBR is the FAT image itself.
    let fdisk = run(Command::new("sfdisk").args(["--json"]).arg(&iso));
    let v: serde_json::Value = serde_json::from_str(&fdisk).unwrap();
    let p2 = &v["partitiontable"]["partitions"][1];
    assert_eq!(p2["type"], "ef", "{fdisk}");
    let start = p2["start"].as_u64().unwrap() * 512;
    let efi = run(Command::new("mdir")
        .arg("-i")
        .arg(format!("{}@@{start}", iso.display()))
        .arg("::/EFI/BOOT"));
    assert!(efi.contains("BOOTX64  EFI"), "{efi}");
    extract_and_compare(&iso, &tree);
}
