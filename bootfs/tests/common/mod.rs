//! Helpers shared by the image and rig tests.
// Test fixtures: a failure here is a failed test, and panics say where.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs a program, panicking with its output when it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

/// `fsck.vfat -n` on a volume at `offset` of `file` (fsck.vfat has no
/// offset option, so a volume inside a disk image goes through a loop
/// device... or, simpler and rootless, a copy of its bytes).
pub fn fsck_vfat(file: &Path, offset: u64, size: u64) -> String {
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("part.img");
    if offset == 0 {
        std::fs::copy(file, &part).unwrap();
    } else {
        run(Command::new("dd")
            .arg(format!("if={}", file.display()))
            .arg(format!("of={}", part.display()))
            .args([
                "bs=1M",
                "conv=sparse",
                "status=none",
                "iflag=skip_bytes,count_bytes",
            ])
            .arg(format!("skip={offset}"))
            .arg(format!("count={size}")));
    }
    stdout(Command::new("fsck.vfat").arg("-n").arg(&part))
}

/// An mtools image argument: `file@@offset`.
pub fn mimg(file: &Path, offset: u64) -> String {
    format!("{}@@{offset}", file.display())
}

/// `mdir -/ -a -b`: every path on the volume, one a line.
pub fn mdir_all(file: &Path, offset: u64) -> Vec<String> {
    let out = stdout(
        Command::new("mdir")
            .args(["-/", "-a", "-b", "-i", &mimg(file, offset), "::/"])
            .env("MTOOLS_SKIP_CHECK", "0"),
    );
    let mut v: Vec<String> = out
        .lines()
        .map(|l| l.trim_start_matches("::").to_owned())
        .collect();
    v.sort();
    v
}

/// A file's bytes as mtools reads them.
pub fn mread(file: &Path, offset: u64, path: &str) -> Vec<u8> {
    run(Command::new("mtype")
        .args(["-i", &mimg(file, offset)])
        .arg(format!("::{path}")))
    .stdout
}

pub mod rig;

use bootfs::Epoch;
use bootfs::esp::{self, EspSpec};
use cluster::{Plan, SanFacts, SectorSize, Source, Trusting};
use std::os::unix::fs::FileExt;

pub const EPOCH: Epoch = Epoch(1_700_000_000);

/// The demo cluster's plan, at `sector`-byte sectors and with `firmware`
/// (the profile's own SAN size: 8 GiB, a sparse file here).
pub fn demo_plan(sector: SectorSize, firmware: &str) -> Plan {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../profiles/clusters/demo.toml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let text = text
        .replace(
            "sector_size = 512",
            &format!("sector_size = {}", sector.bytes()),
        )
        .replace("firmware = \"both\"", &format!("firmware = \"{firmware}\""));
    assert!(
        text.contains(&format!("firmware = \"{firmware}\"")),
        "demo.toml changed"
    );
    let (_, plan) = cluster::load(&Source::new(path, text), &Trusting, SanFacts::default())
        .unwrap_or_else(|d| panic!("demo plan: {d:?}"));
    plan
}

/// A SAN image of `plan`: its GPT, the ESP in `vlx-esp`, and for BIOS the
/// MBR boot code. Returns the image's path.
pub fn san_image(dir: &Path, plan: &Plan, kernel: &Path, initrd: &Path) -> std::path::PathBuf {
    let disk = dir.join("san.img");
    let f = std::fs::File::create(&disk).unwrap();
    f.set_len(plan.disk.size.get()).unwrap();
    for w in cluster::gpt::encode(&plan.disk) {
        f.write_all_at(&w.data, w.offset.get()).unwrap();
    }
    drop(f);
    let spec = EspSpec::for_plan(plan, kernel, vec![initrd.to_owned()], EPOCH).unwrap();
    let esp_part = plan.disk.by_label("vlx-esp").unwrap();
    let planned = esp::plan(&spec).unwrap();
    planned
        .write(&disk, esp_part.offset(plan.disk.sector_size))
        .unwrap();
    if plan.boot.firmware.bios() {
        let code = esp::mbr_boot_code(&spec.assets).unwrap();
        esp::write_mbr_boot_code(&disk, &code).unwrap();
    }
    disk
}
