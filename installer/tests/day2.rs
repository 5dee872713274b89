//! Changes of an installed cluster on SAN image files: nodes added,
//! removed and swapped, settings changed, in place, with every other
//! node's volumes hashed before and after; `plan --diff`; crashes finished
//! by a rerun; changes that cannot be made in place refused by key. The
//! partition table is judged by sgdisk and sfdisk, the meta volume's
//! files read with debugfs, swap headers with blkid.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const MIB: u64 = 1 << 20;
const SAN: u64 = 600 * MIB;

/// The small profile with `nodes` (name, MAC, IP) and `extra` appended,
/// written into `dir` as `name`, with absolute paths to the repository's
/// host profile and overlays.
fn profile(dir: &Path, name: &str, nodes: &[(&str, &str, &str)], extra: &str) -> PathBuf {
    let text = small_profile_text();
    let block = "[[nodes]]\nname = \"s[1-3]\"\nmac = \"52:54:00:66:00:01\"\nip = \"10.66.0.11\"\n";
    assert!(text.contains(block), "the fixture's nodes changed");
    let nodes: String = nodes
        .iter()
        .map(|(n, m, i)| format!("[[nodes]]\nname = \"{n}\"\nmac = \"{m}\"\nip = \"{i}\"\n"))
        .collect();
    let text = text.replace(block, &nodes);
    let p = dir.join(name);
    std::fs::write(&p, format!("{text}{extra}")).unwrap();
    p
}

const S1: (&str, &str, &str) = ("s1", "52:54:00:66:00:01", "10.66.0.11");
const S2: (&str, &str, &str) = ("s2", "52:54:00:66:00:02", "10.66.0.12");
const S3: (&str, &str, &str) = ("s3", "52:54:00:66:00:03", "10.66.0.13");
const S4: (&str, &str, &str) = ("s4", "52:54:00:66:00:04", "10.66.0.14");

fn diff(profile: &Path, san: &Path, json: bool) -> std::process::Output {
    let mut args = vec![
        "plan",
        "--cluster",
        profile.to_str().unwrap(),
        "--san",
        san.to_str().unwrap(),
        "--diff",
    ];
    if json {
        args.push("--json");
    }
    vlx_install(&args)
}

fn offset(plan: &cluster::Plan, label: &str) -> u64 {
    plan.disk
        .by_label(label)
        .unwrap_or_else(|| panic!("no {label} in the plan"))
        .offset(plan.disk.sector_size)
        .get()
}

/// Fills every node's snapshot store as a running node would: the
/// snapshot magic, then its name over the whole store.
fn use_stores(san: &Path, plan: &cluster::Plan) {
    let f = std::fs::OpenOptions::new().write(true).open(san).unwrap();
    for n in &plan.nodes {
        let p = plan.disk.by_label(&n.cow).unwrap();
        let mut data = n
            .name
            .as_str()
            .repeat((p.size.get() as usize) / 2 + 1)
            .into_bytes();
        data.truncate(p.size.get() as usize);
        data[..8].copy_from_slice(b"SnAp\x01\x00\x00\x00");
        std::os::unix::fs::FileExt::write_all_at(&f, &data, offset(plan, &n.cow)).unwrap();
    }
}

/// sha256 of every partition of `plan` but the meta volume and the ESP
/// (which a change rewrites), by label.
fn hashes(san: &Path, plan: &cluster::Plan) -> Vec<(String, String)> {
    let f = std::fs::File::open(san).unwrap();
    plan.disk
        .partitions
        .iter()
        .filter(|p| p.label != "vlx-meta" && p.label != "vlx-esp")
        .map(|p| {
            let at = p.offset(plan.disk.sector_size).get();
            let h = installer::stream::hash_file_range(&f, san, at, p.size.get()).unwrap();
            (p.label.clone(), h)
        })
        .collect()
}

fn ok(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    let t = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{cmd:?} failed:\n{t}");
    t
}

/// A read-only loop device over the SAN, detached on drop.
struct Loop(String);

impl Loop {
    fn new(file: &Path) -> Loop {
        let o = Command::new("losetup")
            .args(["--find", "--show", "--read-only"])
            .arg(file)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Loop(String::from_utf8_lossy(&o.stdout).trim().to_owned())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

/// sgdisk finds no problem, and sfdisk lists exactly the plan's partitions.
fn table_matches(san: &Path, plan: &cluster::Plan) {
    let lp = Loop::new(san);
    let v = ok(Command::new("sgdisk").arg("-v").arg(&lp.0));
    assert!(v.contains("No problems found"), "{v}");
    let j: serde_json::Value =
        serde_json::from_str(&ok(Command::new("sfdisk").arg("--json").arg(&lp.0))).unwrap();
    let mut got: Vec<(String, u64)> = j["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["start"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut want: Vec<(String, u64)> = plan
        .disk
        .partitions
        .iter()
        .map(|p| (p.label.clone(), p.first_lba.0))
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

/// A file on the meta volume, read by debugfs.
fn meta_file(san: &Path, plan: &cluster::Plan, path: &str) -> String {
    ok(Command::new("debugfs")
        .args(["-R", &format!("cat {path}")])
        .arg(format!(
            "{}?offset={}",
            san.display(),
            offset(plan, "vlx-meta")
        )))
}

fn verifies(san: &Path) {
    let o = vlx_install(&["verify", "--san", san.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn a_node_added_on_a_grown_lun_gets_a_store_and_its_entries_and_nothing_else_moves() {
    let d = tempfile::tempdir().unwrap();
    let img = image_dir(d.path(), "x");
    let three = profile(d.path(), "three.toml", &[S1, S2, S3], "");
    let san = san(d.path(), SAN);
    let o = apply(&three, &img, &san, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let before_plan = plan(&three, &san);
    use_stores(&san, &before_plan);
    let before = hashes(&san, &before_plan);

    // The LUN grows by 100 MiB; the profile gains s4.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&san)
        .unwrap()
        .set_len(SAN + 100 * MIB)
        .unwrap();
    let four = profile(d.path(), "four.toml", &[S1, S2, S3, S4], "");
    let o = diff(&four, &san, false);
    assert!(o.status.success(), "{}", text(&o));
    let shown = String::from_utf8_lossy(&o.stdout).into_owned();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 10, "{shown}");
    assert_eq!(lines[0], "nodes:", "{shown}");
    assert!(
        lines[1].contains("+ s4") && lines[1].contains("10.66.0.14"),
        "{shown}"
    );
    assert_eq!(lines[2], "partitions:", "{shown}");
    assert!(
        lines[3].contains("+") && lines[3].contains("vlx-cow-s4"),
        "{shown}"
    );
    assert!(
        lines[4].contains("+") && lines[4].contains("vlx-swap-s4"),
        "{shown}"
    );
    assert!(lines[5].starts_with("disk: 600MiB -> 700MiB"), "{shown}");
    // Every kept node's tables name the new node; s2 and s3 also get it
    // as a resolver (a node's resolvers are itself and the next two, in
    // a ring), and the VC network settings list every blade's address.
    // Nothing else of theirs changes.
    assert_eq!(lines[6], "configs:", "{shown}");
    let tables = "etc/chrony/chrony.conf, etc/dnsmasq.conf, etc/hosts";
    let vc = "etc/vlx/vc-net.toml";
    assert_eq!(lines[7].split_whitespace().nth(1), Some("s1"), "{shown}");
    assert!(
        lines[7].ends_with(&format!("s1           {tables}, {vc}")),
        "{shown}"
    );
    for (line, node) in lines[8..].iter().zip(["s2", "s3"]) {
        assert!(
            line.ends_with(&format!("{node}           {tables}, etc/resolv.conf, {vc}")),
            "{shown}"
        );
    }
    let o = diff(&four, &san, true);
    assert!(o.status.success(), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["nodes"][0]["name"], "s4");
    assert_eq!(j["nodes"][0]["change"], "added");
    assert_eq!(j["partitions"].as_array().unwrap().len(), 2);
    assert_eq!(j["settings"].as_array().unwrap().len(), 0);
    assert_eq!(j["configs"].as_array().unwrap().len(), 3, "{j}");

    let o = apply(&four, &img, &san, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("changed in place"), "{}", text(&o));

    // Nothing of the three kept nodes, the origin or the shared volume
    // was written.
    let after_plan = plan(&four, &san);
    assert_eq!(hashes(&san, &before_plan), before);
    for p in &before_plan.disk.partitions {
        assert_eq!(
            after_plan.disk.by_role(&p.role),
            Some(p),
            "{} moved",
            p.label
        );
    }
    // s4's store starts fresh; its swap is a swap area labelled s4.
    let f = std::fs::File::open(&san).unwrap();
    let head = installer::device::read_at(&f, offset(&after_plan, "vlx-cow-s4"), 4096).unwrap();
    assert!(head.iter().all(|b| *b == 0));
    let swap = after_plan.disk.by_label("vlx-swap-s4").unwrap();
    let probe = ok(Command::new("blkid")
        .args(["--probe", "--output", "export", "--offset"])
        .arg(swap.offset(after_plan.disk.sector_size).get().to_string())
        .arg("--size")
        .arg(swap.size.get().to_string())
        .arg(&san));
    assert!(
        probe.contains("TYPE=swap") && probe.contains("LABEL=s4"),
        "{probe}"
    );

    table_matches(&san, &after_plan);
    verifies(&san);
    // Every node's tables name s4.
    for n in ["s1", "s2", "s3", "s4"] {
        let hosts = meta_file(&san, &after_plan, &format!("/nodes/{n}/root/etc/hosts"));
        assert!(hosts.contains("10.66.0.14"), "{n}: {hosts}");
        let dns = meta_file(
            &san,
            &after_plan,
            &format!("/nodes/{n}/root/etc/dnsmasq.conf"),
        );
        assert!(dns.contains("52:54:00:66:00:04"), "{n}: {dns}");
    }
    let o = vlx_install(&["status", "--san", san.to_str().unwrap(), "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["nodes"].as_array().unwrap().len(), 4, "{st}");
    assert_eq!(st["complete"], true, "{st}");

    // Now the profile matches: the diff is empty and a rerun writes nothing.
    let o = diff(&four, &san, false);
    assert!(o.status.success() && o.stdout.is_empty(), "{}", text(&o));
    let whole = sha256_file(&san);
    let o = apply(&four, &img, &san, &[]);
    assert!(text(&o).contains("already installed"), "{}", text(&o));
    assert_eq!(sha256_file(&san), whole);
}

#[test]
fn remove_swap_and_add_with_a_crash_between_finish_on_a_rerun() {
    let d = tempfile::tempdir().unwrap();
    let img = image_dir(d.path(), "x");
    let three = profile(d.path(), "three.toml", &[S1, S2, S3], "");
    let san = san(d.path(), SAN);
    assert!(apply(&three, &img, &san, &[]).status.success());
    let before_plan = plan(&three, &san);
    use_stores(&san, &before_plan);
    let kept = |h: Vec<(String, String)>| -> Vec<(String, String)> {
        h.into_iter().filter(|(l, _)| !l.ends_with("-s2")).collect()
    };
    let before = kept(hashes(&san, &before_plan));

    // s2 retired, s4 added in its room, s3's board swapped, a kernel
    // argument added.
    let new_board = ("s3", "52:54:00:66:99:03", "10.66.0.13");
    let changed = profile(
        d.path(),
        "changed.toml",
        &[S1, new_board, S4],
        "\n[boot]\nkernel_args = [\"quiet\"]\n",
    );
    let o = diff(&changed, &san, true);
    assert!(o.status.success(), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let nodes: Vec<(String, String)> = j["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["change"].as_str().unwrap().into(),
                n["name"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        nodes,
        [
            ("changed".to_owned(), "s3".to_owned()),
            ("added".into(), "s4".into()),
            ("removed".into(), "s2".into())
        ],
        "{j}"
    );
    assert_eq!(j["settings"][0]["key"], "boot.cmdline", "{j}");

    let o = Command::new(env!("CARGO_BIN_EXE_vlx-install"))
        .env("VLX_INSTALL_FAULT", "after:gpt")
        .args(["apply", "--yes", "--cluster"])
        .arg(&changed)
        .arg("--image")
        .arg(&img)
        .arg("--san")
        .arg(&san)
        .output()
        .unwrap();
    assert!(!o.status.success(), "the fault did not fire: {}", text(&o));
    assert!(
        text(&o).contains("fault injected at after:gpt"),
        "{}",
        text(&o)
    );
    // Cut short after the new partition table, the SAN still boots: the
    // ESP the blades boot from is left until the boot step replaces it.
    let esp = before_plan.disk.by_label("vlx-esp").unwrap();
    let probe = ok(Command::new("blkid")
        .args(["--probe", "--output", "export", "--offset"])
        .arg(esp.offset(before_plan.disk.sector_size).get().to_string())
        .arg(&san));
    assert!(probe.contains("TYPE=vfat"), "{probe}");

    let o = apply(&changed, &img, &san, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let after_plan = plan(&changed, &san);
    assert_eq!(kept(hashes(&san, &before_plan)), before);
    // s4 took s2's room and number, and its store starts fresh, not as
    // the store s2 left there.
    let (old, new) = (
        before_plan.disk.by_label("vlx-cow-s2").unwrap(),
        after_plan.disk.by_label("vlx-cow-s4").unwrap(),
    );
    assert_eq!((old.number, old.first_lba), (new.number, new.first_lba));
    let f = std::fs::File::open(&san).unwrap();
    let head = installer::device::read_at(&f, offset(&after_plan, "vlx-cow-s4"), 4096).unwrap();
    assert!(head.iter().all(|b| *b == 0), "s4 inherited s2's store");
    table_matches(&san, &after_plan);
    verifies(&san);
    let dns = meta_file(&san, &after_plan, "/nodes/s1/root/etc/dnsmasq.conf");
    assert!(dns.contains("52:54:00:66:99:03"), "{dns}");
    assert!(
        !dns.contains("52:54:00:66:00:03") && !dns.contains("10.66.0.12"),
        "{dns}"
    );
    let plan_json = meta_file(&san, &after_plan, "/plan.json");
    assert!(plan_json.contains("quiet"), "{plan_json}");
    let o = diff(&changed, &san, false);
    assert!(o.status.success() && o.stdout.is_empty(), "{}", text(&o));
}

#[test]
fn changes_that_cannot_be_made_in_place_are_refused_by_key_and_write_nothing() {
    let d = tempfile::tempdir().unwrap();
    let img = image_dir(d.path(), "x");
    let three = profile(d.path(), "three.toml", &[S1, S2, S3], "");
    let san = san(d.path(), SAN);
    assert!(apply(&three, &img, &san, &[]).status.success());
    let before = sha256_file(&san);

    let text3 = std::fs::read_to_string(&three).unwrap();
    let bigger = d.path().join("bigger.toml");
    std::fs::write(
        &bigger,
        text3.replace("origin = \"64MiB\"", "origin = \"80MiB\""),
    )
    .unwrap();
    // A fourth node finds no free space on a LUN that did not grow.
    let four = profile(d.path(), "four.toml", &[S1, S2, S3, S4], "");
    for (prof, key) in [(&bigger, "storage.origin"), (&four, "nodes")] {
        let o = apply(prof, &img, &san, &[]);
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
        assert!(text(&o).contains(key), "{key}: {}", text(&o));
        assert!(text(&o).contains("--wipe"), "{}", text(&o));
        assert_eq!(sha256_file(&san), before, "{key}: the SAN was written");
        let o = diff(prof, &san, false);
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
        assert!(text(&o).contains(key), "{key}: {}", text(&o));
    }

    // A diff against a SAN without this cluster is refused too.
    let blank = d.path().join("blank.img");
    std::fs::File::create(&blank).unwrap().set_len(SAN).unwrap();
    let o = diff(&three, &blank, false);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        text(&o).contains("holds no install of cluster small"),
        "{}",
        text(&o)
    );
}

/// `/usr/lib/vlx/meta-generation` of the node overlay on `dev`.
fn generation(dev: &str) -> std::process::Output {
    Command::new("sh")
        .arg(repo().join("overlays/node/usr/lib/vlx/meta-generation"))
        .arg(dev)
        .output()
        .unwrap()
}

fn blkid_uuid(san: &Path, offset: u64) -> String {
    ok(Command::new("blkid")
        .args([
            "--probe",
            "--match-tag",
            "UUID",
            "--output",
            "value",
            "--offset",
        ])
        .arg(offset.to_string())
        .arg(san))
    .trim()
    .to_owned()
}

/// The generation of the meta volume at `at` of `san`, read by
/// meta-generation through a read-only loop device as a blade's block
/// device (detached before the installer runs: it refuses a SAN in use).
fn generation_at(san: &Path, at: u64, size: u64) -> String {
    let o = Command::new("losetup")
        .args(["--find", "--show", "--read-only", "--offset"])
        .arg(at.to_string())
        .arg("--sizelimit")
        .arg(size.to_string())
        .arg(san)
        .output()
        .unwrap();
    assert!(o.status.success(), "losetup: {}", text(&o));
    let lp = Loop(String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let g = generation(&lp.0);
    assert!(g.status.success(), "{}", text(&g));
    String::from_utf8_lossy(&g.stdout).trim().to_owned()
}

/// What a running node polls: the generation, read with O_DIRECT, is the
/// meta file system's UUID as blkid reads it; it changes with every change
/// and stays with a rerun. (That the read passes a blade's stale cache is
/// for a rig: here the installer refuses a SAN that a loop device holds.)
#[test]
fn the_meta_generation_changes_with_every_change_and_only_then() {
    let d = tempfile::tempdir().unwrap();
    let img = image_dir(d.path(), "x");
    let three = profile(d.path(), "three.toml", &[S1, S2, S3], "");
    let san = san(d.path(), SAN);
    assert!(apply(&three, &img, &san, &[]).status.success());
    let p = plan(&three, &san);
    let meta = p.disk.by_label("vlx-meta").unwrap();
    let (at, size) = (meta.offset(p.disk.sector_size).get(), meta.size.get());
    let first = generation_at(&san, at, size);
    assert_eq!(first, blkid_uuid(&san, at));

    let new_board = ("s2", "52:54:00:66:99:02", "10.66.0.12");
    let changed = profile(d.path(), "changed.toml", &[S1, new_board, S3], "");
    let o = apply(&changed, &img, &san, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let second = generation_at(&san, at, size);
    assert_ne!(second, first, "the change did not change the generation");
    assert_eq!(second, blkid_uuid(&san, at));

    let o = apply(&changed, &img, &san, &[]);
    assert!(text(&o).contains("already installed"), "{}", text(&o));
    assert_eq!(generation_at(&san, at, size), second);

    // Anything but ext4 is no generation.
    let blank = d.path().join("blank.img");
    std::fs::File::create(&blank).unwrap().set_len(MIB).unwrap();
    let o = generation(blank.to_str().unwrap());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("holds no ext4 file system"),
        "{}",
        text(&o)
    );
}
