//! Whole installs onto SAN image files, judged by tools nobody here wrote
//! (sgdisk, sfdisk, fsck.vfat, e2fsck, blkid), reruns, crashes, resets and
//! upgrades.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

const MIB: u64 = 1 << 20;
const SAN: u64 = 600 * MIB;

/// The small profile at `sector` bytes, written into `dir` with absolute
/// paths to the repository's host profile and overlays.
fn profile(dir: &Path, sector: u32) -> PathBuf {
    let mut text =
        small_profile_text().replace("[san]\n", &format!("[san]\nsector_size = {sector}\n"));
    if sector == 4096 {
        text.push_str("\n[boot]\nfirmware = \"uefi\"\n");
    }
    let p = dir.join(format!("small-{sector}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

fn offset(plan: &cluster::Plan, label: &str) -> u64 {
    plan.disk
        .by_label(label)
        .unwrap()
        .offset(plan.disk.sector_size)
        .get()
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

/// A read-only loop device with the given logical sector size, detached on
/// drop.
struct Loop(String);

impl Loop {
    fn new(file: &Path, sector: u32) -> Loop {
        let o = Command::new("losetup")
            .args([
                "--find",
                "--show",
                "--read-only",
                "--sector-size",
                &sector.to_string(),
            ])
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

fn e2fsck(san: &Path, off: u64) {
    let dev = format!("{}?offset={off}", san.display());
    let t = ok(Command::new("e2fsck").args(["-fn", &dev]));
    assert!(!t.contains("UNEXPECTED") && !t.contains("Fix?"), "{t}");
}

#[test]
fn installs_at_both_sector_sizes_and_outside_tools_agree() {
    for sector in [512u32, 4096] {
        let d = tempfile::tempdir().unwrap();
        let img = image_dir(d.path(), "origin-marker");
        let prof = profile(d.path(), sector);
        let san = san(d.path(), SAN);
        let o = apply(&prof, &img, &san, &[]);
        assert!(o.status.success(), "{sector}: {}", text(&o));
        let plan = plan(&prof, &san);

        // The partition table: sgdisk verifies it; sfdisk's JSON names the
        // same labels, starts and sizes as the plan.
        let lp = Loop::new(&san, sector);
        let v = ok(Command::new("sgdisk").arg("-v").arg(&lp.0));
        assert!(v.contains("No problems found"), "{sector}: {v}");
        let j: serde_json::Value =
            serde_json::from_str(&ok(Command::new("sfdisk").arg("--json").arg(&lp.0))).unwrap();
        let parts = j["partitiontable"]["partitions"].as_array().unwrap();
        assert_eq!(
            j["partitiontable"]["sectorsize"].as_u64(),
            Some(u64::from(sector))
        );
        assert_eq!(parts.len(), plan.disk.partitions.len());
        for (p, want) in parts.iter().zip(&plan.disk.partitions) {
            assert_eq!(p["name"].as_str(), Some(want.label.as_str()));
            assert_eq!(p["start"].as_u64(), Some(want.first_lba.0));
            assert_eq!(
                p["size"].as_u64(),
                Some(want.last_lba.0 - want.first_lba.0 + 1)
            );
            assert_eq!(
                p["uuid"].as_str().unwrap().to_lowercase(),
                want.guid.to_string()
            );
        }
        drop(lp);

        // The ESP: fsck.vfat on a copy of the partition.
        let esp = plan.disk.by_label("vlx-esp").unwrap();
        let esp_img = d.path().join("esp.img");
        ok(Command::new("dd")
            .arg(format!("if={}", san.display()))
            .arg(format!("of={}", esp_img.display()))
            .arg("bs=1M")
            .arg(format!("skip={}", offset(&plan, "vlx-esp") / MIB))
            .arg(format!("count={}", esp.size.get() / MIB))
            .arg("status=none"));
        let f = ok(Command::new("fsck.vfat").arg("-n").arg(&esp_img));
        assert!(f.contains("files,"), "{f}");
        let dir = ok(Command::new("mdir")
            .args(["-i"])
            .arg(&esp_img)
            .arg("::/EFI/BOOT"));
        assert!(dir.contains("BOOTX64"), "{dir}");

        // ext4 volumes, checked by e2fsck at their offsets. The shared one
        // ends a MiB before its partition, which holds its lease (zeros:
        // never held), and has no multiple-mount protection (the lease
        // fences it instead).
        for label in ["vlx-meta", "vlx-origin", "vlx-shared"] {
            e2fsck(&san, offset(&plan, label));
        }
        let shared = plan.disk.by_label("vlx-shared").unwrap();
        let at = offset(&plan, "vlx-shared");
        let dump = ok(Command::new("dumpe2fs")
            .arg("-h")
            .arg(format!("{}?offset={at}", san.display())));
        assert!(
            !dump.contains("mmp"),
            "vlx-shared has multiple-mount protection:\n{dump}"
        );
        let blocks: u64 = dump
            .lines()
            .find_map(|l| l.strip_prefix("Block count:"))
            .map(|v| v.trim().parse().unwrap())
            .expect("dumpe2fs says the block count");
        let lease = installer::steps::shared::LEASE_BYTES.get();
        assert_eq!(
            blocks * 4096,
            shared.size.get() - lease,
            "vlx-shared's file system leaves its partition's last MiB to the lease"
        );
        let f = std::fs::File::open(&san).unwrap();
        let record = installer::device::read_at(
            &f,
            at + shared.size.get() - lease,
            installer::steps::shared::LEASE_RECORD,
        )
        .unwrap();
        assert!(record.iter().all(|b| *b == 0), "the lease is not free");

        // The meta volume: every node's files, host keys 0600, and no
        // private key in the boot tree served to the network.
        let meta_dev = format!("{}?offset={}", san.display(), offset(&plan, "vlx-meta"));
        let rd = d.path().join("meta");
        std::fs::create_dir(&rd).unwrap();
        ok(Command::new("debugfs")
            .args(["-R", &format!("rdump / {}", rd.display())])
            .arg(&meta_dev));
        for n in &plan.nodes {
            let root = rd.join("nodes").join(n.name.as_str()).join("root");
            assert_eq!(
                std::fs::read_to_string(root.join("etc/hostname"))
                    .unwrap()
                    .trim(),
                n.name.as_str()
            );
            let st = ok(Command::new("debugfs")
                .args([
                    "-R",
                    &format!("stat /nodes/{}/root/etc/ssh/ssh_host_ed25519_key", n.name),
                ])
                .arg(&meta_dev));
            assert!(
                st.contains("Mode:  0600") && st.contains("User:     0"),
                "{st}"
            );
            let conf = root.join("etc/dnsmasq.conf");
            let t = ok(Command::new("dnsmasq").arg("--test").arg("-C").arg(&conf));
            assert!(t.contains("syntax check OK"), "{t}");
            ok(Command::new("chronyd")
                .arg("-p")
                .arg("-f")
                .arg(root.join("etc/chrony/chrony.conf")));
        }
        let mut tftp = Vec::new();
        let mut stack = vec![rd.join("tftp")];
        while let Some(p) = stack.pop() {
            for e in std::fs::read_dir(&p).unwrap() {
                let e = e.unwrap().path();
                if e.is_dir() {
                    stack.push(e);
                } else {
                    tftp.push(e);
                }
            }
        }
        assert!(tftp.iter().any(|p| p.ends_with("boot.ipxe")), "{tftp:?}");
        for f in &tftp {
            let bytes = std::fs::read(f).unwrap();
            assert!(
                !bytes.windows(11).any(|w| w == b"PRIVATE KEY"),
                "{} holds a private key",
                f.display()
            );
        }
        // The origin holds origin.ext4's bytes: debugfs reads the marker.
        let cat = ok(Command::new("debugfs")
            .args(["-R", "cat /etc/marker"])
            .arg(format!(
                "{}?offset={}",
                san.display(),
                offset(&plan, "vlx-origin")
            )));
        assert!(cat.contains("origin-marker"), "{cat}");
        // Swap areas carry their node's label, as blkid reads them.
        for n in &plan.nodes {
            let b = ok(Command::new("blkid")
                .args([
                    "-p",
                    "-o",
                    "export",
                    "-O",
                    &offset(&plan, n.swap.as_ref().unwrap()).to_string(),
                ])
                .arg(&san));
            assert!(
                b.contains("TYPE=swap") && b.contains(&format!("LABEL={}", n.name)),
                "{b}"
            );
        }
        let v = ok(Command::new(env!("CARGO_BIN_EXE_vlx-install"))
            .args(["verify", "--san"])
            .arg(&san));
        assert!(v.contains("verifies"), "{v}");
    }
}

#[test]
fn a_rerun_verifies_says_installed_and_changes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let img = image_dir(d.path(), "x");
    let prof = profile(d.path(), 512);
    let san = san(d.path(), SAN);
    assert!(apply(&prof, &img, &san, &[]).status.success());
    let before = sha256_file(&san);
    let o = apply(&prof, &img, &san, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("already installed"), "{}", text(&o));
    assert_eq!(sha256_file(&san), before);
}

/// Hashes of every partition but the meta volume (whose per-node host keys
/// are new on every install), and of the meta volume's plan.
fn fingerprint(san: &Path, plan: &cluster::Plan) -> Vec<(String, String)> {
    let f = std::fs::File::open(san).unwrap();
    let mut out = Vec::new();
    for p in &plan.disk.partitions {
        if p.label == "vlx-meta" {
            continue;
        }
        let start = p.offset(plan.disk.sector_size).get();
        let h = installer::stream::hash_file_range(&f, san, start, p.size.get()).unwrap();
        out.push((p.label.clone(), h));
    }
    let s = plan.disk.sector_size.bytes();
    let gpt_end = plan.disk.first_usable.0 * s;
    out.push((
        "gpt".into(),
        installer::stream::hash_file_range(&f, san, 0, gpt_end).unwrap(),
    ));
    let tail = (plan.disk.last_usable.0 + 1) * s;
    out.push((
        "backup gpt".into(),
        installer::stream::hash_file_range(&f, san, tail, plan.disk.size.get() - tail).unwrap(),
    ));
    out.extend(meta_files(san, plan));
    out
}

/// Every file, folder and link on `vlx-meta` (as `debugfs rdump` copies
/// them out, with owners, modes and mtimes) and its content's sha256. The
/// ext4 bytes themselves differ by design after a rerun (debugfs rewrites
/// the journal file in other blocks), what it holds must not.
fn meta_files(san: &Path, plan: &cluster::Plan) -> Vec<(String, String)> {
    use std::os::unix::fs::MetadataExt;
    let d = tempfile::tempdir().unwrap();
    let meta_dev = format!("{}?offset={}", san.display(), offset(plan, "vlx-meta"));
    ok(Command::new("debugfs")
        .args(["-R", &format!("rdump / {}", d.path().display())])
        .arg(&meta_dev));
    let mut out = Vec::new();
    let mut todo = vec![d.path().to_owned()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let what = if m.is_dir() {
                todo.push(p.clone());
                "dir".to_owned()
            } else if m.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else if is_host_key(&p) {
                // Made anew by every install, by design: its content may
                // differ, but it must be a key whose public half is the
                // .pub beside it.
                let derived = ok(Command::new("ssh-keygen").arg("-y").arg("-f").arg(&p));
                let public = std::fs::read_to_string(p.with_extension("pub")).unwrap();
                let fields = |s: &str| s.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
                assert_eq!(fields(&derived), fields(&public), "{}", p.display());
                "a host key matching its .pub".to_owned()
            } else if p.extension().is_some_and(|e| e == "pub")
                && is_host_key(&p.with_extension(""))
            {
                "the public half of the host key beside it".to_owned()
            } else {
                sha256_file(&p)
            };
            let rel = p.strip_prefix(d.path()).unwrap().display().to_string();
            out.push((
                format!("meta:/{rel}"),
                format!(
                    "{:o} {}:{} mtime {} {what}",
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    m.mtime()
                ),
            ));
        }
    }
    out.sort();
    assert!(
        out.iter().any(|(k, _)| k == "meta:/plan.json"),
        "vlx-meta holds no plan.json: {out:?}"
    );
    out
}

/// `etc/ssh/ssh_host_<type>_key`: a node's host key.
fn is_host_key(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("ssh_host_") && n.ends_with("_key"))
}

/// Asserts that two fingerprints agree, naming only the entries that differ.
fn assert_same(got: &[(String, String)], want: &[(String, String)], what: &str) {
    let diff: Vec<String> = want
        .iter()
        .filter(|w| !got.contains(w))
        .map(|(k, v)| {
            format!(
                "{k}: want {v}, got {:?}",
                got.iter().find(|(g, _)| g == k).map(|(_, v)| v)
            )
        })
        .chain(
            got.iter()
                .filter(|(k, _)| !want.iter().any(|(w, _)| w == k))
                .map(|(k, v)| format!("{k}: not in a clean install ({v})")),
        )
        .collect();
    assert!(
        diff.is_empty(),
        "{what}: the finished install differs from a clean one:\n{}",
        diff.join("\n")
    );
}

/// What a recovered install must pass besides matching a clean one:
/// `vlx-install verify`, and e2fsck on each ext4 volume.
fn check_recovered(san: &Path, plan: &cluster::Plan, what: &str) {
    let v = vlx_install(&["verify", "--san", san.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(0), "{what}: {}", text(&v));
    for label in ["vlx-meta", "vlx-origin", "vlx-shared"] {
        e2fsck(san, offset(plan, label));
    }
}

fn apply_with_fault(prof: &Path, img: &Path, san: &Path, fault: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vlx-install"))
        .env("VLX_INSTALL_FAULT", fault)
        .args(["apply", "--yes", "--cluster"])
        .arg(prof)
        .arg("--image")
        .arg(img)
        .arg("--san")
        .arg(san)
        .output()
        .unwrap()
}

#[test]
fn a_crash_after_any_step_is_finished_by_a_rerun() {
    let d = tempfile::tempdir().unwrap();
    let img = image_dir(d.path(), "x");
    let prof = profile(d.path(), 512);
    let clean = san(d.path(), SAN);
    assert!(apply(&prof, &img, &clean, &[]).status.success());
    let plan = plan(&prof, &clean);
    let want = fingerprint(&clean, &plan);
    std::fs::remove_file(&clean).unwrap();
    for fault in [
        "after:gpt",
        "after:meta",
        "during:origin",
        "after:origin",
        "after:cow",
        "after:swap",
        "after:shared",
        "after:content",
    ] {
        let san = san(d.path(), SAN);
        let o = apply_with_fault(&prof, &img, &san, fault);
        assert!(
            o.status.code().is_none() && text(&o).contains("fault injected"),
            "{fault}: {}",
            text(&o)
        );
        if fault == "after:gpt" {
            // No meta volume yet: status and verify say which step was cut
            // and that a rerun finishes it, and exit 1.
            for cmd in ["status", "verify"] {
                let o = vlx_install(&[cmd, "--san", san.to_str().unwrap()]);
                assert_eq!(o.status.code(), Some(1), "{cmd}: {}", text(&o));
                assert!(
                    text(&o).contains("cut after its first step (gpt)")
                        && text(&o).contains("run `vlx-install apply` again")
                        && !text(&o).contains("debugfs"),
                    "{cmd}: {}",
                    text(&o)
                );
            }
        }
        let o = apply(&prof, &img, &san, &[]);
        assert!(o.status.success(), "{fault}: rerun failed: {}", text(&o));
        assert_same(&fingerprint(&san, &plan), &want, fault);
        check_recovered(&san, &plan, fault);
        std::fs::remove_file(&san).unwrap();
    }
}

#[test]
fn sigkill_at_random_times_then_rerun_gives_a_clean_install() {
    let d = tempfile::tempdir().unwrap();
    let img = image_dir(d.path(), "x");
    let prof = profile(d.path(), 512);
    let clean = san(d.path(), SAN);
    let t0 = std::time::Instant::now();
    assert!(apply(&prof, &img, &clean, &[]).status.success());
    let full = t0.elapsed();
    let plan = plan(&prof, &clean);
    let want = fingerprint(&clean, &plan);
    std::fs::remove_file(&clean).unwrap();
    // Kills spread over the length of a whole install. A kill that comes
    // after the install ended (a faster run), or once it had recorded
    // itself complete and was on its way out, is tried again earlier, so
    // that every round kills an unfinished install.
    let mut mid_install = 0;
    for round in 1..=4u32 {
        let mut at = full * round / 5;
        let mut tries = 0;
        let (san, t) = loop {
            tries += 1;
            let san = san(d.path(), SAN);
            let mut child = Command::new(env!("CARGO_BIN_EXE_vlx-install"))
                .args(["apply", "--yes", "--cluster"])
                .arg(&prof)
                .arg("--image")
                .arg(&img)
                .arg("--san")
                .arg(&san)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(at);
            let running = child.try_wait().unwrap().is_none();
            child.kill().unwrap(); // SIGKILL (a no-op on a child that has ended)
            let st = child.wait().unwrap();
            if running && std::os::unix::process::ExitStatusExt::signal(&st) == Some(9) {
                let t = text(&vlx_install(&["status", "--san", san.to_str().unwrap()]));
                if !t.contains("install: complete") {
                    break (san, t);
                }
            }
            assert!(tries < 8, "round {round}: no kill landed in {tries} tries");
            at /= 2;
        };
        // Mid-install: a partition table is there, the install is not
        // complete (a kill before the first write leaves a blank target).
        if t.contains("NOT complete") || t.contains("was cut") {
            mid_install += 1;
        }
        let o = apply(&prof, &img, &san, &[]);
        assert!(
            o.status.success(),
            "round {round}, killed at {at:?}: rerun failed: {}",
            text(&o)
        );
        assert_same(
            &fingerprint(&san, &plan),
            &want,
            &format!("round {round}, killed at {at:?}"),
        );
        check_recovered(&san, &plan, &format!("round {round}, killed at {at:?}"));
        std::fs::remove_file(&san).unwrap();
    }
    assert!(
        mid_install >= 2,
        "only {mid_install} of 4 kills landed after the first write"
    );
}

/// Stands in for booted nodes: a dm-snapshot header on every node's store.
fn mark_stores_used(san: &Path, plan: &cluster::Plan) {
    let f = std::fs::OpenOptions::new().write(true).open(san).unwrap();
    for n in &plan.nodes {
        std::os::unix::fs::FileExt::write_all_at(&f, b"SnAp\x01\x00\x00\x00", offset(plan, &n.cow))
            .unwrap();
    }
}

#[test]
fn reset_node_zeroes_that_nodes_store_only() {
    let d = tempfile::tempdir().unwrap();
    let img = image_dir(d.path(), "x");
    let prof = profile(d.path(), 512);
    let san = san(d.path(), SAN);
    assert!(apply(&prof, &img, &san, &[]).status.success());
    let plan = plan(&prof, &san);
    mark_stores_used(&san, &plan);
    // Not confirmed (no terminal, no --yes): refused, nothing reset.
    let o = vlx_install(&["reset-node", "s2", "--san", san.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        text(&o).contains("reset not confirmed: standard input is not a terminal"),
        "{}",
        text(&o)
    );
    let f = std::fs::File::open(&san).unwrap();
    let s2 = plan.node("s2").unwrap();
    let head = installer::device::read_at(&f, offset(&plan, &s2.cow), 8).unwrap();
    assert_eq!(&head[..4], b"SnAp", "an unconfirmed reset reset s2");
    let o = vlx_install(&["reset-node", "s2", "--yes", "--san", san.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let f = std::fs::File::open(&san).unwrap();
    for n in &plan.nodes {
        let head = installer::device::read_at(&f, offset(&plan, &n.cow), 8).unwrap();
        if n.name.as_str() == "s2" {
            assert!(head.iter().all(|b| *b == 0), "s2's store was not reset");
        } else {
            assert_eq!(&head[..4], b"SnAp", "{}'s store was touched", n.name);
        }
    }
    // A list with a node the cluster lacks is bad input, and resets none.
    let o = vlx_install(&[
        "reset-node",
        "s[1,9]",
        "--yes",
        "--san",
        san.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim_end(),
        "vlx-install: error: cluster small has no node s9; its nodes are s[1-3]"
    );
    let head = installer::device::read_at(&f, offset(&plan, &plan.nodes[0].cow), 8).unwrap();
    assert_eq!(
        &head[..4],
        b"SnAp",
        "s1's store was reset by a refused list"
    );
}

#[test]
fn status_reports_cluster_steps_and_origin() {
    let d = tempfile::tempdir().unwrap();
    let img = image_dir(d.path(), "x");
    let prof = profile(d.path(), 512);
    let san = san(d.path(), SAN);
    let o = apply_with_fault(&prof, &img, &san, "after:swap");
    assert!(
        o.status.code().is_none() && text(&o).contains("fault injected"),
        "{}",
        text(&o)
    );
    let o = vlx_install(&[
        "status",
        "--san",
        san.to_str().unwrap(),
        "--json",
        "--check-origin",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["cluster"], "small");
    assert_eq!(st["complete"], false);
    let done: Vec<&str> = st["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["done"] == true)
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(done, ["gpt", "meta", "origin", "cow", "swap"]);
    assert!(st["origin_problem"].is_null(), "{st}");
    assert_eq!(st["origin_checked"], true, "{st}");
    assert_eq!(st["nodes"].as_array().unwrap().len(), 3);
    // verify names what is missing, and fails.
    let v = vlx_install(&["verify", "--san", san.to_str().unwrap()]);
    assert!(
        v.status.code() == Some(1) && text(&v).contains("pending shared, content, boot"),
        "{}",
        text(&v)
    );
    // With --json: the result on stdout, the error as one object on stderr.
    let v = vlx_install(&["verify", "--san", san.to_str().unwrap(), "--json"]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    let r: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(r["verifies"], false, "{r}");
    assert_eq!(r["cluster"], "small", "{r}");
    assert!(
        r["problems"].as_array().unwrap().iter().any(|p| p
            .as_str()
            .unwrap()
            .contains("pending shared, content, boot")),
        "{r}"
    );
    let e: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&v.stderr).trim()).unwrap();
    assert_eq!(e["program"], "vlx-install", "{e}");
    assert_eq!(e["exit_code"], 1, "{e}");
}

#[test]
fn replacing_the_origin_needs_every_node_reset() {
    let d = tempfile::tempdir().unwrap();
    let old = image_dir(&d.path().join("old"), "old");
    let new = image_dir(&d.path().join("new"), "new");
    let prof = profile(d.path(), 512);
    let san = san(d.path(), SAN);
    assert!(apply(&prof, &old, &san, &[]).status.success());
    let plan = plan(&prof, &san);
    mark_stores_used(&san, &plan);
    let before = sha256_file(&san);
    let o = apply(&prof, &new, &san, &[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("--reset-all"), "{}", text(&o));
    assert_eq!(sha256_file(&san), before);
    let o = apply(&prof, &new, &san, &["--reset-all"]);
    assert!(o.status.success(), "{}", text(&o));
    let f = std::fs::File::open(&san).unwrap();
    for n in &plan.nodes {
        assert!(
            installer::device::read_at(&f, offset(&plan, &n.cow), 8)
                .unwrap()
                .iter()
                .all(|b| *b == 0),
            "{} not reset",
            n.name
        );
    }
    let cat = ok(Command::new("debugfs")
        .args(["-R", "cat /etc/marker"])
        .arg(format!(
            "{}?offset={}",
            san.display(),
            offset(&plan, "vlx-origin")
        )));
    assert!(cat.contains("new"), "{cat}");
    assert!(
        vlx_install(&["verify", "--san", san.to_str().unwrap()])
            .status
            .success()
    );
}

#[test]
fn status_after_a_cut_before_meta_says_so_and_how_to_finish() {
    let d = tempfile::tempdir().unwrap();
    let img = image_dir(d.path(), "x");
    let prof = profile(d.path(), 512);
    let san = san(d.path(), SAN);
    assert!(
        !apply_with_fault(&prof, &img, &san, "after:gpt")
            .status
            .success()
    );
    let o = vlx_install(&["status", "--san", san.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with(&format!(
            "vlx-install: error: the install on {} was cut after its first step (gpt)",
            san.display()
        )) && err.contains("vlx-meta holds no file system yet")
            && err.contains("run `vlx-install apply` again with the same profile and image"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // And so it does.
    assert!(apply(&prof, &img, &san, &[]).status.success());
    let o = vlx_install(&["status", "--san", san.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
}
