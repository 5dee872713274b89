//! Image tier: FAT32 volumes checked by `fsck.vfat -n` and read back with
//! mtools.
// Fixtures and helpers outside #[test] functions unwrap too: a failure is
// a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs::File;
use std::path::Path;

use bootfs::Epoch;
use bootfs::fat::{self, FatSpec, Source, Tree};
use cluster::{Bytes, Lba, SectorSize};
use common::*;

fn sample_tree(dir: &Path) -> Tree {
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(dir.join("big.bin"), &big).unwrap();
    let mut t = Tree::new();
    t.add_file(
        "/EFI/BOOT/BOOTX64.EFI",
        Source::Bytes(b"MZ not really".to_vec()),
    )
    .unwrap();
    t.add_file("loader/loader.conf", Source::Bytes(b"timeout 1\n".to_vec()))
        .unwrap();
    t.add_file(
        "loader/entries/vlx.conf",
        Source::Bytes(b"title vlx\n".to_vec()),
    )
    .unwrap();
    t.add_file("vlx/vmlinuz", Source::file(dir.join("big.bin")).unwrap())
        .unwrap();
    t.add_file("vlx/empty", Source::Bytes(Vec::new())).unwrap();
    t.add_dir("syslinux").unwrap();
    // Many long names: the folder spans more than one cluster.
    for i in 0..150 {
        t.add_file(
            &format!("many/a rather long file name number {i:03}.txt"),
            Source::Bytes(format!("{i}\n").into_bytes()),
        )
        .unwrap();
    }
    t
}

fn spec(sector: SectorSize, size: Bytes, lba: u64) -> FatSpec {
    FatSpec {
        sector_size: sector,
        size,
        volume_id: 0x1234_abcd,
        label: Some("VLX-ESP".into()),
        partition_lba: Lba(lba),
        epoch: Epoch(1_700_000_000),
    }
}

fn build(
    dir: &Path,
    name: &str,
    sector: SectorSize,
    size: Bytes,
    offset: u64,
) -> std::path::PathBuf {
    let tree = sample_tree(dir);
    let img = fat::plan(&spec(sector, size, offset / sector.bytes()), &tree).unwrap();
    let path = dir.join(name);
    File::create(&path)
        .unwrap()
        .set_len(offset + size.get() + 4096)
        .unwrap();
    img.write(&path, Bytes(offset)).unwrap();
    path
}

#[test]
fn fsck_and_mtools_accept_the_volume_at_both_sector_sizes() {
    for sector in [SectorSize::B512, SectorSize::B4096] {
        for (size, offset) in [(Bytes::mib(260), 0), (Bytes::mib(300), 1 << 20)] {
            let dir = tempfile::tempdir().unwrap();
            let img = build(dir.path(), "esp.img", sector, size, offset);
            let fsck = fsck_vfat(&img, offset, size.get());
            assert!(!fsck.contains("differences"), "{fsck}");
            let list = mdir_all(&img, offset);
            for want in [
                "/EFI/BOOT/BOOTX64.EFI",
                "/loader/loader.conf",
                "/loader/entries/vlx.conf",
                "/vlx/vmlinuz",
                "/vlx/empty",
                "/syslinux/",
                "/many/a rather long file name number 149.txt",
            ] {
                assert!(
                    list.iter().any(|l| l == want),
                    "{want} missing from {list:?}"
                );
            }
            assert_eq!(
                mread(&img, offset, "/vlx/vmlinuz"),
                std::fs::read(dir.path().join("big.bin")).unwrap()
            );
            assert_eq!(mread(&img, offset, "/loader/loader.conf"), b"timeout 1\n");
            assert_eq!(
                mread(&img, offset, "/many/a rather long file name number 077.txt"),
                b"77\n"
            );
            let info =
                stdout(std::process::Command::new("minfo").args(["-i", &mimg(&img, offset), "::"]));
            assert!(
                info.contains(&format!("sector size: {} bytes", sector.bytes())),
                "{info}"
            );
            assert!(info.contains("serial number: 1234ABCD"), "{info}");
            assert!(
                info.contains(&format!("hidden sectors: {}", offset / sector.bytes())),
                "{info}"
            );
        }
    }
}

#[test]
fn same_inputs_give_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let a = build(dir.path(), "a.img", SectorSize::B512, Bytes::mib(270), 0);
    let b = build(dir.path(), "b.img", SectorSize::B512, Bytes::mib(270), 0);
    run(std::process::Command::new("cmp").arg(&a).arg(&b));
}

#[test]
fn timestamps_come_from_the_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let img = build(dir.path(), "esp.img", SectorSize::B512, Bytes::mib(260), 0);
    // mdir shows local time; the volume holds UTC.
    let out = stdout(
        std::process::Command::new("mdir")
            .args(["-i", &mimg(&img, 0), "::/loader"])
            .env("TZ", "UTC"),
    );
    assert!(out.contains("2023-11-14  22:13"), "{out}");
}

#[test]
fn refuses_what_does_not_fit() {
    let mut t = Tree::new();
    t.add_file("big", Source::Bytes(vec![1; 1 << 20])).unwrap();
    let err = fat::plan(&spec(SectorSize::B512, Bytes::mib(30), 0), &t).unwrap_err();
    assert!(
        err.to_string().contains("FAT32 needs at least 65525"),
        "{err}"
    );
    let huge = Source::File {
        path: "/nonexistent".into(),
        len: 300 << 20,
    };
    let mut t2 = Tree::new();
    t2.add_file("huge", huge).unwrap();
    let err = fat::plan(&spec(SectorSize::B4096, Bytes::mib(260), 0), &t2).unwrap_err();
    assert!(matches!(err, fat::FatError::NoRoom { .. }), "{err}");
    assert!(t.add_file("BIG", Source::Bytes(vec![])).is_err());
    assert!(t.add_file("big/x", Source::Bytes(vec![])).is_err());
    assert!(t.add_file("a/b?c", Source::Bytes(vec![])).is_err());
}

#[test]
fn small_volumes_with_small_clusters_pass_fsck() {
    // An install medium's El Torito boot image is a few tens of MiB: FAT32
    // with clusters of one to four sectors.
    for mib in [40, 100] {
        let dir = tempfile::tempdir().unwrap();
        let img = build(
            dir.path(),
            "small.img",
            SectorSize::B512,
            Bytes::mib(mib),
            0,
        );
        let fsck = fsck_vfat(&img, 0, mib << 20);
        assert!(!fsck.contains("differences"), "{fsck}");
        assert_eq!(
            mread(&img, 0, "/vlx/vmlinuz"),
            std::fs::read(dir.path().join("big.bin")).unwrap()
        );
        let info = stdout(std::process::Command::new("minfo").args(["-i", &mimg(&img, 0), "::"]));
        let want = if mib == 40 { 1 } else { 2 };
        assert!(
            info.contains(&format!("cluster size: {want} sectors\n")),
            "{info}"
        );
    }
}
