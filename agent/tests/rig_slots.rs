//! Rig tier: two origin slots on a real boot. A blade of a two-slot
//! install boots slot A and records it; after `vlx-install upgrade` its
//! next boot resets its store and builds its root on slot B (whose origin
//! carries a file slot A lacks); after `vlx-install rollback` it is reset
//! again onto slot A. What the root holds is asked on the image's check
//! shell; what the installer reads of the node's record, with `status`.
//! Needs root and the workspace's binaries, as `rig_boot` does.

#![allow(clippy::unwrap_used)]

mod fixture;

use std::path::{Path, PathBuf};
use std::process::Command;

use fixture::{BOOT_TIMEOUT, Guest, Machine, San};

/// The marker the second image's origin carries.
const MARKER: &str = "/etc/vlx-slot-test";

/// A copy of `image` under `dir` whose origin holds [`MARKER`], with its
/// manifest written again (a newer build of the same host image).
fn second_image(image: &Path, dir: &Path) -> PathBuf {
    let out = dir.join("image-2");
    std::fs::create_dir_all(&out).unwrap();
    let m = contracts::image::Manifest::read(image).unwrap();
    for f in m
        .artifacts
        .iter()
        .map(|a| a.file.as_str())
        .chain(["manifest.json"])
    {
        std::fs::copy(image.join(f), out.join(f)).unwrap();
    }
    let src = dir.join("marker");
    std::fs::write(&src, "image two\n").unwrap();
    let o = Command::new("debugfs")
        .arg("-w")
        .arg("-R")
        .arg(format!("write {} {MARKER}", src.display()))
        .arg(out.join("origin.ext4"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let mut m = contracts::image::Manifest::read(&out).unwrap();
    m.version = format!("{}+2", m.version);
    m.artifacts = contracts::image::describe(
        &out,
        &m.artifacts
            .iter()
            .map(|a| a.file.as_str())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    std::fs::write(out.join(contracts::image::FILE), m.to_json()).unwrap();
    out
}

/// Boots node `name`, asks its root whether it carries [`MARKER`] and
/// whether an earlier boot left its counter, and powers it off; returns the
/// console and the answers.
#[allow(clippy::too_many_arguments)] // each is one fact of the boot
fn boot(
    image: &Path,
    san: &Path,
    cmdline: &str,
    mac: &str,
    dir: &Path,
    log: &str,
    name: &str,
    while_up: &dyn Fn(),
) -> (String, String) {
    let mut g = Guest::start(
        &Machine {
            image,
            cmdline,
            disk: Some((san, 512)),
            mac,
            storage: None,
        },
        dir,
        log,
    );
    g.wait_for(&format!("vlx-node: ready {name}\n"), BOOT_TIMEOUT);
    let ready = format!("vlx: services ready {name}\n");
    let said = g.wait_for_any(&[&ready, "vlx: services failed"], BOOT_TIMEOUT);
    assert_eq!(said, ready, "console:\n{}", g.console());
    let mut shell = g.check_shell(BOOT_TIMEOUT);
    let root = shell.run(
        &format!(
            "if [ -f {MARKER} ]; then echo vlx-test: marker; else echo vlx-test: no marker; fi\n\
             if [ -f /var/boots ]; then echo vlx-test: booted before; else echo vlx-test: first boot; fi\n\
             echo x > /var/boots; sync"
        ),
        BOOT_TIMEOUT,
    );
    while_up();
    shell.send("poweroff -f");
    g.wait_exit(BOOT_TIMEOUT);
    let console = g.console();
    eprintln!("--- console of {name} ({log}) ---\n{console}\n--- root ---\n{root}");
    (console, root)
}

fn has(text: &str, line: &str) -> bool {
    text.lines().any(|l| l.trim_end() == line)
}

fn node_slot(san: &Path, node: usize) -> serde_json::Value {
    let out = fixture::vlx_install(&["status", "--json", "--san", san.to_str().unwrap()]);
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    st["nodes"][node]["slot"].clone()
}

/// Waits until `status --live` says `node` is up on slot b and holds
/// `vip`; panics with the last answer when that does not come.
fn wait_live(san: &Path, node: &str, vip: &str) {
    let deadline = std::time::Instant::now() + BOOT_TIMEOUT;
    loop {
        let out =
            fixture::vlx_install(&["status", "--live", "--json", "--san", san.to_str().unwrap()]);
        let live: serde_json::Value = serde_json::from_str(&out).unwrap();
        let n = live["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == node)
            .unwrap()
            .clone();
        let holds = live["vips"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["vip"] == vip && v["holders"] == serde_json::json!([node]));
        if n["up"] == true && n["slot"] == "b" && holds {
            eprintln!("--- status --live ---\n{live:#}");
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "status --live never showed {node} up on slot b holding {vip}:\n{live:#}"
        );
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
}

#[test]
fn rig_a_blade_moves_to_the_upgraded_slot_at_its_reboot_and_back() {
    let _one = fixture::one_guest_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let image = fixture::host_image(&San::Disk.host_profile());
    let two = second_image(&image, dir);
    // Two slots keep two kernels and initramfs on the meta volume.
    let text = fixture::profile(512, San::Disk, &San::Disk.host_profile())
        .replace("[storage]\n", "[storage]\nslots = 2\n")
        .replace("meta = \"64MiB\"", "meta = \"128MiB\"");
    let profile = dir.join("rig.toml");
    std::fs::write(&profile, &text).unwrap();
    let san = dir.join("san.img");
    std::fs::File::create(&san)
        .unwrap()
        .set_len(2 * fixture::SAN_SIZE)
        .unwrap();
    let s = san.to_str().unwrap();
    fixture::vlx_install(&[
        "apply",
        "--yes",
        "--test-image",
        "--cluster",
        profile.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--san",
        s,
    ]);
    let plan_json = fixture::vlx_install(&[
        "plan",
        "--json",
        "--cluster",
        profile.to_str().unwrap(),
        "--san",
        s,
    ]);
    let plan = cluster::Plan::from_json(&plan_json).unwrap();
    let n2 = plan.node("n2").unwrap();
    let mac = n2.macs[0].to_string();
    // vlx-origin is partition 3, vlx-origin-b 4; n2's store is partition 7,
    // mapped but for its last MiB (the record): 15 MiB are 30720 sectors.
    let (console, root) = boot(
        &image,
        &san,
        &plan.boot.cmdline,
        &mac,
        dir,
        "slot-a.log",
        "n2",
        &|| {},
    );
    assert!(
        console.contains("vlx-node: origin slot a (tiny "),
        "{console}"
    );
    assert!(
        console.contains("a fresh store, recorded on slot a"),
        "{console}"
    );
    assert!(
        has(
            &console,
            "vlx-node: vlx-cow-n2 is its partition but for the slot record at its end (/dev/mapper/vlx-cow): 0 30720 linear /dev/vda7 0"
        ),
        "{console}"
    );
    assert!(console.contains("vlx-node: root is a snapshot of vlx-origin (/dev/vda3) with vlx-cow-n2 (/dev/mapper/vlx-cow)"), "{console}");
    assert!(
        has(&root, "vlx-test: no marker") && has(&root, "vlx-test: first boot"),
        "{root}"
    );
    assert_eq!(node_slot(&san, 1)["slot"], "a");

    let out = fixture::vlx_install(&["upgrade", "--image", two.to_str().unwrap(), "--san", s]);
    assert!(out.contains("SNAPSHOT STORE IS RESET"), "{out}");
    assert_eq!(node_slot(&san, 1)["moves_at_reboot"], true);
    let (console, root) = boot(
        &image,
        &san,
        &plan.boot.cmdline,
        &mac,
        dir,
        "slot-b.log",
        "n2",
        &|| {},
    );
    assert!(console.contains("STORE OF n2 RESET"), "{console}");
    assert!(console.contains("it was started on slot a"), "{console}");
    assert!(
        console.contains("vlx-node: root is a snapshot of vlx-origin-b (/dev/vda4)"),
        "{console}"
    );
    assert!(
        has(&root, "vlx-test: marker") && has(&root, "vlx-test: first boot"),
        "{root}"
    );
    assert_eq!(node_slot(&san, 1)["slot"], "b");
    assert_eq!(node_slot(&san, 1)["moves_at_reboot"], false);

    // The store is kept across boots on the same slot; while n2 runs,
    // status --live on the SAN sees it up, on slot b, holding the VIP
    // (keepalived makes the only node master within a few VRRP adverts).
    let live = || wait_live(&san, "n2", "10.88.0.250");
    let (_, root) = boot(
        &image,
        &san,
        &plan.boot.cmdline,
        &mac,
        dir,
        "slot-b2.log",
        "n2",
        &live,
    );
    assert!(has(&root, "vlx-test: booted before"), "{root}");

    fixture::vlx_install(&["rollback", "--san", s]);
    let (console, root) = boot(
        &image,
        &san,
        &plan.boot.cmdline,
        &mac,
        dir,
        "back-a.log",
        "n2",
        &|| {},
    );
    assert!(console.contains("STORE OF n2 RESET"), "{console}");
    assert!(
        console.contains("vlx-node: root is a snapshot of vlx-origin (/dev/vda3)"),
        "{console}"
    );
    assert!(
        has(&root, "vlx-test: no marker") && has(&root, "vlx-test: first boot"),
        "{root}"
    );
}
