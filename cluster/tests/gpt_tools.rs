//! The GPT the plan encodes, judged by sgdisk, which nobody here wrote.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup errors

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

use cluster::{FsEnv, SanFacts, Source};

fn plan_of(name: &str, size: &str) -> cluster::Plan {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../profiles/clusters")
        .join(name);
    let source = Source::new(name, std::fs::read_to_string(&path).unwrap());
    let san = SanFacts {
        size: Some(size.parse().unwrap()),
        sector_size: None,
    };
    cluster::load(
        &source,
        &FsEnv {
            base: path.parent().unwrap().to_owned(),
        },
        san,
    )
    .unwrap()
    .1
}

fn write_gpt(plan: &cluster::Plan, file: &Path) {
    let mut f = std::fs::File::create(file).unwrap();
    f.set_len(plan.disk.size.get()).unwrap();
    for w in cluster::gpt::encode(&plan.disk) {
        f.seek(SeekFrom::Start(w.offset.get())).unwrap();
        f.write_all(&w.data).unwrap();
    }
    f.sync_all().unwrap();
}

#[test]
fn sgdisk_verifies_the_demo_gpt_and_reads_our_labels() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("san.img");
    let plan = plan_of("demo.toml", "8GiB");
    write_gpt(&plan, &img);
    let out = Command::new("sgdisk")
        .arg("-v")
        .arg(&img)
        .output()
        .expect("sgdisk runs (package gdisk)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("No problems found"),
        "sgdisk -v:\n{text}"
    );
    for p in &plan.disk.partitions {
        let out = Command::new("sgdisk")
            .arg(format!("-i{}", p.number))
            .arg(&img)
            .output()
            .unwrap();
        let info = String::from_utf8_lossy(&out.stdout);
        assert!(
            info.contains(&format!("Partition name: '{}'", p.label)),
            "{info}"
        );
        assert!(
            info.contains(&format!("First sector: {} ", p.first_lba.0)),
            "{info}"
        );
        assert!(
            info.contains(&format!("Last sector: {} ", p.last_lba.0)),
            "{info}"
        );
        assert!(info.to_lowercase().contains(&p.guid.to_string()), "{info}");
    }
}

#[test]
fn sgdisk_verifies_a_gpt_with_more_than_128_entries() {
    // 64 nodes with swap at 512-byte sectors: 132 partitions.
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("san.img");
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/clusters/rack-64.toml"),
    )
    .unwrap()
    .replace("sector_size = 4096", "sector_size = 512");
    let source = Source::new("rack-64.toml", text);
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/clusters");
    let plan = cluster::load(&source, &FsEnv { base }, SanFacts::default())
        .unwrap()
        .1;
    assert_eq!(plan.disk.partitions.len(), 132);
    write_gpt(&plan, &img);
    let out = Command::new("sgdisk").arg("-v").arg(&img).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("No problems found"),
        "sgdisk -v:\n{text}"
    );
    let out = Command::new("sgdisk").arg("-p").arg(&img).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("vlx-swap-r64"), "{table}");
}

/// A loop device over a file with a given logical sector size (sgdisk
/// reads a plain file as 512-byte sectors), detached on drop.
struct Loop(String);

impl Loop {
    fn new(file: &Path, sector: u64) -> Loop {
        let out = Command::new("losetup")
            .args(["--find", "--show", "--read-only", "--sector-size"])
            .arg(sector.to_string())
            .arg(file)
            .output()
            .expect("losetup runs (package mount)");
        assert!(
            out.status.success(),
            "losetup (needs root and loop devices): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Loop(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

/// The golden plans (512- and 4096-byte sectors), encoded and read by
/// sgdisk through a loop device of the plan's sector size: the table
/// verifies, and every partition has the plan's name, LBAs, unique GUID,
/// type GUID and attribute flags.
#[test]
fn sgdisk_reads_every_golden_gpt_at_its_sector_size_with_types_and_attributes() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut sectors = Vec::new();
    for name in ["demo", "eurotech-4u", "rack-64"] {
        let text = std::fs::read_to_string(golden.join(format!("{name}.json"))).unwrap();
        let plan = cluster::Plan::from_json(&text).unwrap();
        let sector = plan.disk.sector_size.bytes();
        sectors.push(sector);
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("san.img");
        write_gpt(&plan, &img);
        let lp = Loop::new(&img, sector);
        let out = Command::new("sgdisk")
            .arg("-v")
            .arg(&lp.0)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("No problems found"),
            "{name}: sgdisk -v:\n{text}"
        );
        let out = Command::new("sgdisk")
            .arg("-p")
            .arg(&lp.0)
            .output()
            .unwrap();
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(
            table.contains(&format!("Sector size (logical/physical): {sector}/")),
            "{name}: sgdisk read another sector size:\n{table}"
        );
        for p in &plan.disk.partitions {
            let out = Command::new("sgdisk")
                .arg(format!("-i{}", p.number))
                .arg(&lp.0)
                .output()
                .unwrap();
            let info = String::from_utf8_lossy(&out.stdout).to_lowercase();
            for want in [
                format!("partition name: '{}'", p.label),
                format!("first sector: {} ", p.first_lba.0),
                format!("last sector: {} ", p.last_lba.0),
                format!("partition unique guid: {}", p.guid),
                format!("partition guid code: {}", p.type_guid),
                format!("attribute flags: {:016x}", p.attributes),
            ] {
                assert!(
                    info.contains(&want),
                    "{name} partition {}: no {want:?} in\n{info}",
                    p.number
                );
            }
        }
    }
    assert!(
        sectors.contains(&512) && sectors.contains(&4096),
        "{sectors:?}"
    );
}
