//! Two origin slots on SAN image files: an upgrade writes the slot the
//! cluster does not boot and makes it current, nothing else of the SAN
//! moves; a rollback returns to the previous slot with the boot files kept
//! for it; a slot a node still runs over is refused; an upgrade cut short
//! (the process killed with SIGKILL half-way through writing the slot, or
//! aborted after the meta volume was made again) is finished by a rerun; a one-slot install
//! is refused with what to do. Judged by sgdisk -v, e2fsck -fn, `vlx-install
//! verify` and the bytes of each volume.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cluster::slots::{NodeRecord, Slot};
use cluster::{Locate, Role};
use common::*;

const MIB: u64 = 1 << 20;
const SAN: u64 = 700 * MIB;

/// The small profile with `storage.slots = slots`, with absolute paths to
/// the repository's host profile and overlays.
fn profile(dir: &Path, slots: u8) -> PathBuf {
    let text = small_profile_text()
        .replace("size = \"600MiB\"", "size = \"700MiB\"")
        .replace("[storage]\n", &format!("[storage]\nslots = {slots}\n"));
    let p = dir.join(format!("small-{slots}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

/// An image directory under `dir/<name>` whose origin holds `marker`.
fn image(dir: &Path, name: &str) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    image_dir(&d, name)
}

fn run(args: &[&str], san: &Path) -> Output {
    let mut a = args.to_vec();
    a.extend(["--san", san.to_str().unwrap()]);
    vlx_install(&a)
}

fn upgrade(img: &Path, san: &Path) -> Output {
    run(&["upgrade", "--image", img.to_str().unwrap()], san)
}

fn upgrade_faulted(img: &Path, san: &Path, fault: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vlx-install"))
        .args(["upgrade", "--image", img.to_str().unwrap(), "--san"])
        .arg(san)
        .env("VLX_INSTALL_FAULT", fault)
        .output()
        .unwrap()
}

fn ok(o: Output) -> String {
    let t = text(&o);
    assert!(o.status.success(), "failed:\n{t}");
    t
}

/// Exit code 3 (refused) and the message names `what`.
fn refused(o: Output, what: &str) -> String {
    let t = text(&o);
    assert_eq!(o.status.code(), Some(3), "{t}");
    assert!(t.contains(what), "the refusal does not say {what:?}:\n{t}");
    t
}

fn status(san: &Path) -> serde_json::Value {
    let o = run(&["status", "--json"], san);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {t}"))
}

fn manifest_sha(img: &Path) -> String {
    sha256_file(&img.join("manifest.json"))
}

/// sha256 of `len` bytes of the SAN from `at`.
fn range_sha(san: &Path, at: u64, len: u64) -> String {
    let f = std::fs::File::open(san).unwrap();
    installer::stream::hash_file_range(&f, san, at, len).unwrap()
}

fn at(plan: &cluster::Plan, role: &Role) -> (u64, u64) {
    let v = plan.volumes().locate(role).unwrap();
    (v.offset.get(), v.size.get())
}

/// The slot's first bytes hash to the image's origin.ext4.
fn slot_holds(san: &Path, plan: &cluster::Plan, slot: Slot, img: &Path) -> bool {
    let origin = img.join("origin.ext4");
    let len = std::fs::metadata(&origin).unwrap().len();
    range_sha(san, at(plan, &slot.role()).0, len) == sha256_file(&origin)
}

/// Node `node` booted on `slot` with image `img`, as its agent leaves it:
/// the record at the end of its store, and a store the kernel has used.
fn boot_node(san: &Path, plan: &cluster::Plan, node: &str, slot: Slot, img: &Path) {
    let f = std::fs::OpenOptions::new().write(true).open(san).unwrap();
    let rec = NodeRecord {
        node: node.into(),
        slot,
        image_sha256: manifest_sha(img),
    };
    f.write_all_at(&rec.encode(), at(plan, &cluster::locate::record(node)).0)
        .unwrap();
    let (store, _) = at(plan, &cluster::locate::cow(node));
    f.write_all_at(
        b"SnAp\x01\x00\x00\x00\x01\x00\x00\x00\x08\x00\x00\x00",
        store,
    )
    .unwrap();
    f.write_all_at(&[0x5a; 8192], store + 4096).unwrap();
}

/// One file of the meta volume.
fn meta_file(san: &Path, plan: &cluster::Plan, path: &str) -> Vec<u8> {
    installer::fs::read_file(san, cluster::Bytes(at(plan, &Role::Meta).0), path)
        .unwrap()
        .unwrap_or_else(|| panic!("no {path} on the meta volume"))
}

/// What outside tools say of the SAN: sgdisk verifies its table, e2fsck
/// each ext4 volume the install and upgrades write, and vlx-install
/// verify the layout and the current slot's origin.
fn outside_tools_agree(san: &Path, plan: &cluster::Plan) {
    let o = Command::new("sgdisk").arg("-v").arg(san).output().unwrap();
    let t = text(&o);
    assert!(o.status.success() && t.contains("No problems found"), "{t}");
    for role in [Role::Meta, Role::Origin, Role::OriginB] {
        let (off, _) = at(plan, &role);
        let first = {
            let f = std::fs::File::open(san).unwrap();
            let mut b = [0u8; 2048];
            f.read_exact_at(&mut b, off).unwrap();
            b
        };
        if installer::fs::ext4_uuid(&first).is_none() {
            continue; // an empty slot B
        }
        let dev = format!("{}?offset={off}", san.display());
        let o = Command::new("e2fsck").args(["-fn", &dev]).output().unwrap();
        let t = text(&o);
        assert!(o.status.success(), "e2fsck -fn {role:?}: {t}");
    }
    ok(run(&["verify"], san));
}

#[test]
fn an_upgrade_writes_the_other_slot_and_a_rollback_returns() {
    let d = tempfile::tempdir().unwrap();
    let (v1, v2, v3) = (
        image(d.path(), "one"),
        image(d.path(), "two"),
        image(d.path(), "three"),
    );
    let prof = profile(d.path(), 2);
    let san = san(d.path(), SAN);
    ok(apply(&prof, &v1, &san, &[]));
    let plan = plan(&prof, &san);
    assert!(plan.disk.has_slots());
    outside_tools_agree(&san, &plan);
    let st = status(&san);
    assert_eq!(st["slots"]["current"], "a", "{st:#}");
    assert_eq!(st["slots"]["a"]["image_sha256"], manifest_sha(&v1));
    assert!(st["slots"]["b"].is_null(), "{st:#}");
    assert!(st["nodes"][0]["slot"]["slot"].is_null(), "not booted yet");

    // s1 and s2 run on slot a; s3 has not booted.
    boot_node(&san, &plan, "s1", Slot::A, &v1);
    boot_node(&san, &plan, "s2", Slot::A, &v1);
    let store = |n: &str| {
        let (o, s) = at(&plan, &cluster::locate::cow(n));
        range_sha(&san, o, s + MIB)
    };
    let (s1, s2) = (store("s1"), store("s2"));
    let slot_a = range_sha(&san, at(&plan, &Role::Origin).0, at(&plan, &Role::Origin).1);

    let out = ok(upgrade(&v2, &san));
    assert!(out.contains("SNAPSHOT STORE IS RESET"), "{out}");
    assert!(out.contains("shared volume"), "{out}");
    outside_tools_agree(&san, &plan);
    assert!(slot_holds(&san, &plan, Slot::B, &v2));
    assert_eq!(
        range_sha(&san, at(&plan, &Role::Origin).0, at(&plan, &Role::Origin).1),
        slot_a,
        "slot a is not touched"
    );
    assert_eq!(
        (store("s1"), store("s2")),
        (s1.clone(), s2.clone()),
        "no store is touched"
    );
    let st = status(&san);
    assert_eq!(st["slots"]["current"], "b", "{st:#}");
    assert_eq!(st["slots"]["previous"], "a");
    assert_eq!(st["slots"]["b"]["image_sha256"], manifest_sha(&v2));
    assert_eq!(st["image"], "tiny 0.1.0");
    let s1st = &st["nodes"][0]["slot"];
    assert_eq!(
        (s1st["slot"].as_str(), s1st["moves_at_reboot"].as_bool()),
        (Some("a"), Some(true)),
        "{st:#}"
    );
    assert!(st["nodes"][2]["slot"]["slot"].is_null());
    // The meta volume: the new image's boot files current, both slots' kept.
    assert_eq!(
        meta_file(&san, &plan, "/tftp/vmlinuz"),
        std::fs::read(v2.join("vmlinuz")).unwrap()
    );
    assert_eq!(
        meta_file(&san, &plan, "/manifest.json"),
        std::fs::read(v2.join("manifest.json")).unwrap()
    );
    assert_eq!(
        meta_file(&san, &plan, "/slots/a/manifest.json"),
        std::fs::read(v1.join("manifest.json")).unwrap()
    );
    assert!(!meta_file(&san, &plan, "/nodes/s1/root/etc/ssh/ssh_host_ed25519_key").is_empty());
    let text_status = ok(run(&["status"], &san));
    assert!(text_status.contains("slot b: tiny 0.1.0"), "{text_status}");
    assert!(
        text_status.contains("MOVES at its next reboot"),
        "{text_status}"
    );

    // The same image again: nothing to do, nothing written.
    let whole = range_sha(&san, 0, SAN);
    let t = ok(upgrade(&v2, &san));
    assert!(t.contains("nothing was written"), "{t}");
    assert_eq!(range_sha(&san, 0, SAN), whole);

    // A third image would go to slot a, where s1 and s2 still run.
    refused(upgrade(&v3, &san), "s1, s2");
    assert_eq!(range_sha(&san, 0, SAN), whole, "a refusal writes nothing");
    // A one-slot apply of another image is no way around it.
    refused(
        apply(&prof, &v3, &san, &["--reset-all"]),
        "vlx-install upgrade",
    );

    let t = ok(run(&["rollback"], &san));
    assert!(t.contains("slot a"), "{t}");
    outside_tools_agree(&san, &plan);
    let st = status(&san);
    assert_eq!(
        (
            st["slots"]["current"].as_str(),
            st["slots"]["previous"].as_str()
        ),
        (Some("a"), Some("b"))
    );
    assert_eq!(
        meta_file(&san, &plan, "/tftp/vmlinuz"),
        std::fs::read(v1.join("vmlinuz")).unwrap()
    );
    assert_eq!(
        meta_file(&san, &plan, "/manifest.json"),
        std::fs::read(v1.join("manifest.json")).unwrap()
    );
    assert_eq!(
        st["nodes"][0]["slot"]["moves_at_reboot"], false,
        "s1 never left a"
    );
    assert!(slot_holds(&san, &plan, Slot::B, &v2), "slot b is kept");
    assert_eq!((store("s1"), store("s2")), (s1, s2));

    // s3 booted on b meanwhile; the next upgrade would overwrite b.
    boot_node(&san, &plan, "s3", Slot::B, &v2);
    refused(upgrade(&v3, &san), "s3");
    ok(run(&["reset-node", "s3", "--yes"], &san));
    ok(upgrade(&v3, &san));
    assert!(slot_holds(&san, &plan, Slot::B, &v3));
    assert!(slot_holds(&san, &plan, Slot::A, &v1));
    outside_tools_agree(&san, &plan);
}

#[test]
fn an_upgrade_cut_short_is_finished_by_a_rerun() {
    let d = tempfile::tempdir().unwrap();
    let (v1, v2, v3) = (
        image(d.path(), "one"),
        image(d.path(), "two"),
        image(d.path(), "three"),
    );
    let prof = profile(d.path(), 2);
    let san = san(d.path(), SAN);
    ok(apply(&prof, &v1, &san, &[]));
    let plan = plan(&prof, &san);

    // Killed (SIGKILL) half-way through writing slot b.
    let o = upgrade_faulted(&v2, &san, "kill:during:origin");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&o.status),
        Some(libc::SIGKILL),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("SIGKILL injected"), "{}", text(&o));
    assert_eq!(status(&san)["slots"]["current"], "a", "not switched yet");
    refused(upgrade(&v3, &san), "cut short");
    refused(apply(&prof, &v1, &san, &[]), "unfinished upgrade");
    refused(run(&["rollback"], &san), "cut short");
    ok(upgrade(&v2, &san));
    outside_tools_agree(&san, &plan);
    assert!(slot_holds(&san, &plan, Slot::B, &v2));
    assert_eq!(status(&san)["slots"]["current"], "b");

    // Rolled back, then an upgrade aborted after the meta volume switched.
    ok(run(&["rollback"], &san));
    let o = upgrade_faulted(&v3, &san, "after:slots-meta");
    assert!(!o.status.success(), "{}", text(&o));
    assert_eq!(status(&san)["slots"]["current"], "b");
    ok(upgrade(&v3, &san));
    outside_tools_agree(&san, &plan);
    let st = status(&san);
    assert_eq!(st["slots"]["b"]["image_sha256"], manifest_sha(&v3));

    // A change of the profile (a fourth node, on a grown LUN) keeps the
    // slot table and both slots' boot files.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&san)
        .unwrap()
        .set_len(SAN + 64 * MIB)
        .unwrap();
    let four = d.path().join("small-4.toml");
    std::fs::write(
        &four,
        std::fs::read_to_string(&prof)
            .unwrap()
            .replace("name = \"s[1-3]\"", "name = \"s[1-4]\""),
    )
    .unwrap();
    ok(apply(&four, &v3, &san, &[]));
    let plan4 = self::plan(&four, &san);
    assert_eq!(plan4.nodes.len(), 4);
    outside_tools_agree(&san, &plan4);
    let st = status(&san);
    assert_eq!(
        (
            st["slots"]["current"].as_str(),
            st["slots"]["previous"].as_str()
        ),
        (Some("b"), Some("a")),
        "{st:#}"
    );
    assert_eq!(
        meta_file(&san, &plan4, "/slots/a/manifest.json"),
        std::fs::read(v1.join("manifest.json")).unwrap()
    );
    assert!(slot_holds(&san, &plan4, Slot::A, &v1));
    assert!(slot_holds(&san, &plan4, Slot::B, &v3));
    ok(run(&["rollback"], &san));
    assert_eq!(status(&san)["slots"]["current"], "a");
    assert!(
        !meta_file(&san, &plan, "/journal.json")
            .windows(11)
            .any(|w| w == b"slot_change"),
        "the journal keeps no unfinished change"
    );
}

#[test]
fn one_slot_installs_are_refused_saying_what_to_do() {
    let d = tempfile::tempdir().unwrap();
    let (v1, v2) = (image(d.path(), "one"), image(d.path(), "two"));
    let prof = profile(d.path(), 1);
    let san = san(d.path(), SAN);
    ok(apply(&prof, &v1, &san, &[]));
    let whole = range_sha(&san, 0, SAN);
    let t = refused(upgrade(&v2, &san), "one origin slot");
    assert!(
        t.contains("storage.slots = 2") && t.contains("--reset-all"),
        "{t}"
    );
    refused(run(&["rollback"], &san), "one origin slot");
    assert_eq!(range_sha(&san, 0, SAN), whole);
    // A two-slot install with no upgrade yet has nothing to roll back to.
    let prof2 = profile(d.path(), 2);
    let san2 = d.path().join("san2.img");
    std::fs::File::create(&san2).unwrap().set_len(SAN).unwrap();
    ok(apply(&prof2, &v1, &san2, &[]));
    refused(run(&["rollback"], &san2), "no previous slot");
    // A profile cannot add the second slot to an installed SAN.
    refused(apply(&prof2, &v1, &san, &[]), "storage.slots");
    // A SAN that holds no cluster has nothing to upgrade.
    let blank = d.path().join("blank.img");
    std::fs::File::create(&blank).unwrap().set_len(SAN).unwrap();
    refused(upgrade(&v2, &blank), "holds no vlx cluster");
}
