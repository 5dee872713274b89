//! Whole-cluster rehearsals of the demo profile: the real image builder,
//! installer, node agent, boot assets and tiny runtime, under QEMU.
//!
//! Each builds the tiny host image, installs it onto a sparse SAN and boots
//! blades; the checks are the rig's own (see `vlx-rig rehearse`). A failing
//! rehearsal prints its checks table and names the failed checks.

use std::path::PathBuf;

use qemu_tests::plan::{MediaKind, Options, Scheme};
use qemu_tests::rehearse::{self, Outcome, Request};
use qemu_tests::report::Outcome as Result_;

fn demo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../profiles/clusters/demo.toml")
}

fn rehearse(options: Options, report: &std::path::Path) -> Outcome {
    rehearse_profile(demo(), options, report)
}

fn rehearse_profile(profile: PathBuf, options: Options, report: &std::path::Path) -> Outcome {
    let req = Request {
        profile,
        options,
        report_dir: report.to_owned(),
        keep: false,
        build_programs: true,
    };
    let outcome = rehearse::rehearse(&req, &|l| eprintln!("{l}")).expect("the rehearsal runs");
    eprintln!("{}", outcome.checks);
    outcome
}

/// Whether a check whose name starts with `name` passed (names end with
/// the blade they concern when that depends on the run, such as the one
/// that survives).
fn passed(o: &Outcome, name: &str) -> bool {
    o.checks
        .0
        .iter()
        .any(|c| c.name.starts_with(name) && c.outcome == Result_::Passed)
}

fn assert_all_passed(o: &Outcome) {
    let failed: Vec<String> = o
        .checks
        .0
        .iter()
        .filter(|c| c.outcome != Result_::Passed)
        .map(|c| format!("{} ({}): {}", c.name, c.outcome, c.detail))
        .collect();
    assert!(
        failed.is_empty(),
        "checks not passed:\n{}",
        failed.join("\n\n")
    );
}

/// Steps 1 to 8 on the four blades of the demo profile: cold start of
/// three, checks, losing the VIP holder and the first DHCP server, the
/// fourth PXE-booting from the survivors, a factory reset; and before the
/// shutdown the day-2 steps on the running cluster (`--day2`, two origin
/// slots): blade05 added and PXE-booted, blade02's board replaced,
/// blade04 removed, the image upgraded onto the second slot and rolled
/// back, and the shared volume's holder killed under a blade's hard NFS
/// mount of it, which must resume.
#[test]
fn rig_rehearse_demo_cluster() {
    let report = tempfile::tempdir().unwrap();
    let o = rehearse(
        Options {
            day2: true,
            ..Options::default()
        },
        report.path(),
    );
    assert_all_passed(&o);
    for part in [
        " mounts the shared volume over NFS",
        "'s watchdog resets it once it hangs",
        "the shared volume is served again within ",
        " moves after ",
        "'s hard NFS mount resumes after ",
    ] {
        assert!(
            o.checks
                .0
                .iter()
                .any(|c| c.step == 13 && c.name.contains(part) && c.outcome == Result_::Passed),
            "step 13 has no passed check with {part:?}: {:?}",
            o.checks.0.iter().map(|c| &c.name).collect::<Vec<_>>()
        );
    }
    for name in [
        "dhcp from several blades",
        "dns from several blades",
        "vip held by one blade",
        "vip moves within 10 s",
        "blade04 network-booted from survivors",
        "reset wiped ",
        "vlx-install reset-node ",
        "origin unchanged",
        "vlx-install plan --diff shows blade05 and nothing else",
        "vlx-install apply adds blade05",
        "vlx-install plan --diff after the apply shows nothing",
        "blade05 network-booted from running blades",
        "vlx-install apply gives blade02 the board 52:54:00:78:00:02",
        "blade02 runs on the board 52:54:00:78:00:02",
        "blade02's file survived the board swap",
        "vlx-install apply removes blade04",
        "vlx-install status no longer lists blade04",
        "vlx-install upgrade",
        "vlx-install rollback",
    ] {
        assert!(passed(&o, name), "{name} is missing from the checks");
    }
    // Every running blade served each change, and the slots moved.
    for (step, name, at_least) in [
        (9, " resolves blade05.demo.vlx.test", 2),
        (11, " no longer resolves blade04.demo.vlx.test", 3),
        (12, " on slot b after the upgrade and its reboot", 2),
        (12, " on slot a after the upgrade and its reboot", 1),
        (12, " on slot a after the rollback", 2),
    ] {
        let n = o
            .checks
            .0
            .iter()
            .filter(|c| c.step == step && c.name.contains(name) && c.outcome == Result_::Passed)
            .count();
        assert!(n >= at_least, "{n} checks `{name}`, not {at_least}");
    }
    let svg = std::fs::read_to_string(&o.files.timeline_svg).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains(">blade04</text>"));
    assert!(o.files.consoles().join("blade01.ttyS0.log").is_file());
}

/// The demo rehearsal (steps 1 to 8) on the Debian host image: step 1
/// builds it with mmdebstrap from this machine's apt sources (the image
/// builder's package cache under `$VLX_CACHE` spares the downloads after
/// the first build); every check runs as root over SSH with the rig's key;
/// systemd is `running` on every blade, or the check names each failed
/// unit.
#[test]
fn rig_rehearse_debian_host() {
    let report = tempfile::tempdir().unwrap();
    let host =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../profiles/hosts/debian-bookworm.toml");
    let o = rehearse(
        Options {
            host: Some(host.clone()),
            memory_mib: qemu_tests::plan::DEBIAN_MEMORY_MIB,
            timeouts: qemu_tests::plan::Timeouts {
                ready: qemu_tests::plan::DEBIAN_READY,
                ..Default::default()
            },
            ..Options::default()
        },
        report.path(),
    );
    assert_all_passed(&o);
    for name in [
        "host image complete",
        "dhcp from several blades",
        "dns from several blades",
        "vip held by one blade",
        "vip moves within 10 s",
        "blade04 network-booted from survivors",
        "reset wiped ",
        "vlx-install reset-node ",
        "origin unchanged",
        // A virtual cluster on the blades: the image carries vlx-vcd.
        "vlx-vcd registered on every blade",
        "guest tiny imported from ",
        "VC of 2 VMs placed Cyclic on 2 blades",
        "VM rig/vm1 ready on ",
        "VM rig/vm2 ready on ",
        "VC rig destroyed, no QEMU left",
    ] {
        assert!(passed(&o, name), "{name} is missing from the checks");
    }
    // etcd is checked once the Debian image carries it (its profile
    // installs etcd-server); until then the rig says it does not check.
    let profile: toml::Table = toml::from_str(&std::fs::read_to_string(&host).unwrap()).unwrap();
    let has_etcd = profile["rootfs"]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p.as_str() == Some("etcd-server"));
    assert_eq!(
        passed(&o, "etcd put on "),
        has_etcd,
        "etcd checked (it should be: {has_etcd})"
    );
    for b in ["blade01", "blade02", "blade03"] {
        for what in [
            "systemd running",
            "journal on its own root",
            "NFS server only with the shared volume",
        ] {
            let name = format!("{b} {what}");
            assert!(passed(&o, &name), "{name} is missing from the checks");
        }
    }
}

/// The same steps in the pool layout (`profiles/clusters/demo-pool.toml`):
/// every blade maps its store and swap extents of `vlx-pool` with linear
/// tables, and reset-node finds the store inside the pool. A blade whose
/// MAC is not in the cluster table boots the same SAN with the cold start,
/// gets no root (no extent of the pool is its), and says why on its
/// console.
#[test]
fn rig_rehearse_pool_layout() {
    let report = tempfile::tempdir().unwrap();
    let profile =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../profiles/clusters/demo-pool.toml");
    let options = Options {
        strangers: vec!["52:54:00:77:ff:01".parse().unwrap()],
        ..Options::default()
    };
    let o = rehearse_profile(profile, options, report.path());
    assert_all_passed(&o);
    for name in [
        "reset wiped ",
        "vlx-install reset-node ",
        "origin unchanged",
        "stranger1 (52:54:00:77:ff:01) refused a root",
        "stranger1 never got a root",
    ] {
        assert!(passed(&o, name), "{name} is missing from the checks");
    }
    for b in ["blade01", "blade02", "blade03", "blade04"] {
        let console =
            std::fs::read_to_string(o.files.consoles().join(format!("{b}.ttyS0.log"))).unwrap();
        for want in [
            format!("vlx-cow-{b} is an extent of vlx-pool (/dev/mapper/vlx-cow)"),
            format!("swap on vlx-swap-{b} (/dev/mapper/vlx-swap)"),
        ] {
            assert!(console.contains(&want), "{b}: no `{want}` on its console");
        }
    }
}

/// Every blade boots from the network, served by the first blade, which
/// alone boots from the SAN.
#[test]
fn rig_rehearse_pxe_only() {
    let report = tempfile::tempdir().unwrap();
    let o = rehearse(
        Options {
            scheme: Scheme::PxeOnly,
            ..Options::default()
        },
        report.path(),
    );
    assert_all_passed(&o);
    for b in ["blade02", "blade03", "blade04"] {
        let boot = &o
            .timeline
            .blades
            .iter()
            .find(|t| t.blade == b)
            .unwrap()
            .boots[0];
        assert_eq!(boot.from, "network", "{b}");
        assert!(boot.services_ready.is_some(), "{b}");
    }
}

/// The demo profile with snapshot stores small enough to fill from the
/// root's free space (the tiny image has 256 MiB of it), and absolute
/// paths to this checkout's image profile and overlay.
fn small_store_profile(dir: &std::path::Path) -> PathBuf {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the checkout");
    let text = std::fs::read_to_string(demo()).expect("demo.toml");
    let want = [
        "cow = \"1GiB\"",
        "\"../hosts/tiny.toml\"",
        "\"../../overlays/node\"",
    ];
    for w in want {
        assert!(text.contains(w), "demo.toml has no {w}");
    }
    let text = text
        .replace("cow = \"1GiB\"", "cow = \"160MiB\"")
        .replace(
            "\"../hosts/tiny.toml\"",
            &format!("\"{}\"", repo.join("profiles/hosts/tiny.toml").display()),
        )
        .replace(
            "\"../../overlays/node\"",
            &format!("\"{}\"", repo.join("overlays/node").display()),
        );
    let p = dir.join("demo-small-stores.toml");
    std::fs::write(&p, text).expect("writing the profile");
    p
}

/// A blade whose snapshot store fills: a file written to its root takes
/// the store to 83 %, and the node's store watcher warns on the console
/// and in `/var/lib/vlx/store-fill` while the store is still valid.
#[test]
fn rig_store_watch_warns_before_the_store_fills() {
    let report = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let o = rehearse_profile(
        small_store_profile(dir.path()),
        Options {
            nodes: Some(1),
            stop_after: Some(4),
            fill_store: true,
            ..Options::default()
        },
        report.path(),
    );
    assert_all_passed(&o);
    assert!(passed(&o, "blade01 warns at 80 % of its snapshot store"));
    let console = std::fs::read_to_string(o.files.consoles().join("blade01.ttyS0.log")).unwrap();
    assert!(
        !console.contains("overflowed and is invalid"),
        "the store failed: {console}"
    );
}

/// Install media (issue 6): blade01 boots the USB image under OVMF with the
/// SAN attached, installs unattended and powers off; `vlx-install verify`
/// accepts the SAN; then three blades boot the cluster to ready and the
/// checks of the running cluster pass.
#[test]
fn rig_rehearse_from_media() {
    let report = tempfile::tempdir().unwrap();
    let o = rehearse(
        Options {
            nodes: Some(3),
            stop_after: Some(5),
            from_media: Some(MediaKind::Usb),
            ..Options::default()
        },
        report.path(),
    );
    assert_all_passed(&o);
    for name in [
        "install media built",
        "blade01-installer installed from the USB image",
        "vlx-install verify",
        "outside tools accept the SAN",
        "blade01 ready",
        "blade02 ready",
        "blade03 ready",
        "origin unchanged",
    ] {
        assert!(passed(&o, name), "{name} is missing from the checks");
    }
    // What the installer showed: its mode, and the SAN among the disks,
    // by the serial number the rig gave it, blank before the install.
    let console =
        std::fs::read_to_string(o.files.consoles().join("blade01-installer.ttyS0.log")).unwrap();
    assert!(
        console.contains("vlx-install: payload checked"),
        "{console}"
    );
    assert!(console.contains("unattended"), "{console}");
    assert!(
        console.lines().any(
            |l| l.contains(&format!("serial {}", qemu_tests::qemu::SAN_SERIAL))
                && l.contains("blank")
        ),
        "the disk list shows the SAN:\n{console}"
    );
}

/// The BIOS variant: blade01 boots the ISO in a CD drive under SeaBIOS,
/// installs unattended and powers off; the SAN verifies.
#[test]
fn rig_rehearse_from_iso_media() {
    let report = tempfile::tempdir().unwrap();
    let o = rehearse(
        Options {
            nodes: Some(1),
            stop_after: Some(1),
            from_media: Some(MediaKind::Iso),
            ..Options::default()
        },
        report.path(),
    );
    assert_all_passed(&o);
    assert!(passed(&o, "blade01-installer installed from the ISO"));
    assert!(passed(&o, "vlx-install verify"));
    assert!(passed(&o, "outside tools accept the SAN"));
}

/// The seed's testbed over iSCSI (`profiles/clusters/eurotech-4u.toml`,
/// on the tiny image with the iSCSI transport): tgt serves the SAN on a
/// storage network of its own; the first blade boots an installer
/// environment and installs the cluster through its iSCSI login; three of
/// the four blades cold-start from the target through their boot ROM (iPXE
/// `sanboot` from stored settings: no DHCP anywhere) and log in from its
/// iBFT; the disk rehearsal's checks of the running cluster pass, tgtd is
/// killed and started again while they run, and then the first of the two
/// storage paths (two portals of the target on two storage networks, a
/// storage NIC on each in every blade) is cut: every blade's multipath map
/// fails it and the blade keeps its root on the other, and once the link is
/// back the node's paths watcher puts the path back in the map. Then the disk rehearsal's
/// steps 6 and 7: the VIP holder and the first DHCP server die, the VIP
/// moves, the fourth blade cold-starts from the target as the others did
/// (its boot ROM, not the survivors, is its boot path: see
/// `rehearse::target::late_from_target`), and a blade is reset through
/// the installer environment's iSCSI login and comes back with a fresh
/// store. The target asks for mutual CHAP: the blades' boot ROMs store
/// the secrets and publish them in the iBFT, the agent logs in with them;
/// the installer's login without CHAP is refused, and the fourth blade,
/// tried first with a wrong stored secret, is refused and gets no root.
#[test]
fn rig_rehearse_eurotech_over_iscsi() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let report = tempfile::tempdir().unwrap();
    let options = Options {
        host: Some(repo.join("profiles/hosts/tiny-iscsi.toml")),
        ..Options::default()
    };
    let o = rehearse_profile(
        repo.join("profiles/clusters/eurotech-4u.toml"),
        options,
        report.path(),
    );
    assert_all_passed(&o);
    for name in [
        "iSCSI target up",
        "node1-installer installed through iSCSI",
        "the target refuses a login without CHAP",
        "no iSCSI session left by the installer",
        "node4-wrong-chap refused by the target, no root",
        "vlx-install verify",
        "outside tools accept the SAN",
        "dhcp from several blades",
        "dns from several blades",
        "vip held by one blade",
        "etcd put on ",
        "root of node3 is its own",
        "tgtd restarted",
        "every blade logged in again",
        "second portal up",
        "storage path cut for 10 s",
        "node1 kept its root on the second path",
        "node3 kept its root on the second path",
        "node1 kept its root",
        "node3 kept its root",
        "node1 uses both paths again",
        "node3 uses both paths again",
        "vip moves within 10 s",
        "node4 cold-started from the target with two blades lost",
        "no CHAP secret on the SAN",
        "vlx-install reset-node ",
        "reset wiped ",
        "origin unchanged",
    ] {
        assert!(passed(&o, name), "{name} is missing from the checks");
    }
    let installer =
        std::fs::read_to_string(o.files.consoles().join("node1-installer.ttyS0.log")).unwrap();
    assert!(
        installer.contains(
            "installed on iscsi://10.10.0.250:3260/iqn.2007-01.it.unipi.di:virtualinux.san0/1 (/dev/sd"
        ),
        "the installer's console says no install through iSCSI"
    );
    let chap = qemu_tests::iscsi::RigChap::rig();
    for (i, b) in ["node1", "node2", "node3", "node4"].iter().enumerate() {
        let console =
            std::fs::read_to_string(o.files.consoles().join(format!("{b}.ttyS0.log"))).unwrap();
        for want in [
            // iPXE's sanboot hooked the LUN as the BIOS's first disk.
            "Registered SAN device 0x80".to_string(),
            " rd.iscsi.firmware=1 ".to_string(),
            "vlx-node: the firmware's iBFT names iqn.2007-01.it.unipi.di:virtualinux.san0 at \
             10.10.0.250:3260 (mutual CHAP)"
                .to_string(),
            format!(
                "vlx-node: storage interface eth1 is up with 10.10.0.{} netmask 255.255.255.0 (iBFT)",
                i + 1
            ),
            // Both portals: a NIC and a target each in the iBFT, one
            // multipath map over the two disks.
            "vlx-node: the firmware's iBFT names iqn.2007-01.it.unipi.di:virtualinux.san0 at \
             10.10.1.250:3260 (mutual CHAP)"
                .to_string(),
            format!(
                "vlx-node: second storage interface eth2 is up with 10.10.1.{}",
                i + 1
            ),
            "vlx-node: multipath map vlx-san over ".to_string(),
            "vlx-node: SAN is /dev/mapper/vlx-san ".to_string(),
            format!("vlx-node: ready {b}"),
        ] {
            assert!(console.contains(&want), "{b}: no `{want}` on its console");
        }
        // The secrets are the boot ROM's: not on the kernel's command
        // line, nowhere in what the blade printed (the rig's own line
        // before each boot shows QEMU's command, the ROM's settings in it).
        let printed: Vec<&str> = console
            .lines()
            .filter(|l| !l.contains("] --- power on"))
            .collect();
        for secret in [&chap.password, &chap.reverse_password] {
            assert!(
                !printed.iter().any(|l| l.contains(secret.as_str())),
                "{b}: a CHAP secret on its console"
            );
        }
    }
}
