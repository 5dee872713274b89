//! Rig tier: the host image the image builder makes from the repository's
//! tiny profile (`vlx-node` as its `/init`) boots in QEMU (TCG) with a small
//! SAN installed by `vlx-install apply` attached; the image's own init runs
//! on the node's snapshot, and the tests look at that root through the
//! image's check shell on ttyS1. Needs root (the installer's checks, loop
//! devices) and `vlx-install` built beside this test (`cargo build
//! --workspace --bins`).

// Test helpers unwrap like the tests do: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod fixture;

use std::path::PathBuf;

use cluster::Plan;
use fixture::{BOOT_TIMEOUT, CheckShell, Guest, Machine, San};

/// dm-snapshot's persistent store header (dm-snap-persistent.c): magic
/// "SnAp" (0x70416e53, little endian), valid, version 1, chunk size.
fn cow_header(bytes: &[u8]) -> (u32, u32, u32, u32) {
    let u = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
    (u(0), u(4), u(8), u(12))
}
const SNAP_MAGIC: u32 = 0x7041_6e53;

struct Rig {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    image: PathBuf,
    san: PathBuf,
    plan: Plan,
    sector: u32,
}

impl Rig {
    fn new(sector: u32, transport: San) -> Rig {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let image = fixture::host_image(&transport.host_profile());
        let (san, plan) = fixture::install(&dir, &image, sector, transport);
        Rig {
            _tmp: tmp,
            dir,
            image,
            san,
            plan,
            sector,
        }
    }

    /// A blade known by `mac` with the SAN as its disk.
    fn machine<'a>(&'a self, mac: &'a str) -> Machine<'a> {
        Machine {
            image: &self.image,
            cmdline: &self.plan.boot.cmdline,
            disk: Some((&self.san, self.sector)),
            mac,
            storage: None,
        }
    }

    fn boot(&self, mac: &str, log: &str) -> Guest {
        Guest::start(&self.machine(mac), &self.dir, log)
    }

    fn bytes(&self, label: &str, len: Option<u64>) -> Vec<u8> {
        fixture::partition_bytes(&self.san, &self.plan, label, len)
    }

    fn origin_sha(&self) -> String {
        fixture::sha256(&self.bytes("vlx-origin", None))
    }
}

/// What the tests ask a node's root on the check shell: who pid 1 is, the
/// node's files, the mounts and swap, and a boot counter the root keeps.
const PROBE: &str = r#"init=$(readlink -f /sbin/init)
[ "$(readlink /proc/1/exe)" = "$init" ] && echo "vlx-test: pid 1 is $(cat /proc/1/comm), the root's /sbin/init"
echo "vlx-test: hostname $(cat /etc/hostname)"
for f in /etc/ssh/ssh_host_*_key; do
	set -- $(ls -ln "$f")
	echo "vlx-test: host key $f $1 $3:$4"
done
while read dev dir fs opts rest; do
	echo "vlx-test: mount $dev $dir $fs ${opts%%,*}"
done < /proc/mounts
while read dev rest; do
	case "$dev" in /dev/*) echo "vlx-test: swap $dev";; esac
done < /proc/swaps
if [ -f /var/boots ]; then
	echo "vlx-test: boots before $(cat /var/boots)"
	echo "x$(cat /var/boots)" > /var/boots
else
	echo "vlx-test: first boot"
	echo x > /var/boots
fi
sync"#;

/// Waits for the agent to hand node `name`'s root to the image's init and
/// for that init to start the node's services, then asks the root
/// [`PROBE`] on the check shell; returns the shell and what the probe
/// printed.
fn probe_root(g: &mut Guest, name: &str) -> (CheckShell, String) {
    g.wait_for(&format!("vlx-node: ready {name}\n"), BOOT_TIMEOUT);
    // busybox init starts the check shell once rcS, which prints one of
    // these, has ended.
    let ready = format!("vlx: services ready {name}\n");
    let said = g.wait_for_any(&[&ready, "vlx: services failed"], BOOT_TIMEOUT);
    assert_eq!(said, ready, "console:\n{}", g.console());
    let mut shell = g.check_shell(BOOT_TIMEOUT);
    let root = shell.run(PROBE, BOOT_TIMEOUT);
    (shell, root)
}

/// Powers the guest off from its check shell; returns the console.
fn power_off(mut g: Guest, mut shell: CheckShell, what: &str) -> String {
    shell.send("poweroff -f");
    g.wait_exit(BOOT_TIMEOUT);
    // Shown with --nocapture, and with the failure otherwise.
    eprintln!("--- console of {what} ---\n{}", g.console());
    g.console()
}

/// What a node showed on one boot: its console, and its root's answers to
/// [`PROBE`].
struct Booted {
    console: String,
    root: String,
}

/// Boots node `name` to its own init, looks at its root, and powers it off.
fn boot_node(rig: &Rig, name: &str, log: &str) -> Booted {
    let mac = rig.plan.node(name).unwrap().macs[0].to_string();
    let mut g = rig.boot(&mac, log);
    let (shell, root) = probe_root(&mut g, name);
    eprintln!("--- root of {name} ({log}) ---\n{root}");
    let console = power_off(g, shell, &format!("{name} ({log})"));
    Booted { console, root }
}

fn assert_lines(text: &str, wanted: &[String]) {
    for w in wanted {
        assert!(
            text.lines().any(|l| l.trim_end() == w),
            "no line {w:?} in:\n{text}"
        );
    }
}

/// The iSCSI image is the tiny profile but for its name, its transports
/// and open-iscsi's daemon and the iBFT module on its root, so that the
/// iSCSI boots test the same root as the others.
#[test]
fn the_iscsi_fixture_is_the_tiny_profile_with_iscsi() {
    use imagebuilder::profile::{HostProfile, RootSource, Transport};
    let load = |san: San| {
        let mut p = HostProfile::load(&san.host_profile()).unwrap();
        p.overlays = p
            .overlays
            .iter()
            .map(|o| std::fs::canonicalize(o).unwrap())
            .collect();
        p
    };
    let tiny = load(San::Disk);
    let mut iscsi = load(San::Iscsi { dhcp: false });
    assert_eq!(tiny.transports, [Transport::Disk]);
    assert_eq!(iscsi.transports, [Transport::Disk, Transport::Iscsi]);
    assert_eq!(iscsi.name, "tiny-iscsi");
    iscsi.name = tiny.name.clone();
    iscsi.transports = tiny.transports.clone();
    iscsi.path = tiny.path.clone();
    iscsi.sha256 = tiny.sha256.clone();
    assert_eq!(iscsi.modules, ["iscsi_ibft"]);
    iscsi.modules = tiny.modules.clone();
    let RootSource::Host(root) = &mut iscsi.rootfs else {
        panic!("the iSCSI profile's root is not built from the host");
    };
    let only = |list: &mut Vec<String>, extra: &[&str]| {
        for e in extra {
            let at = list.iter().position(|x| x == e);
            assert!(at.is_some(), "{e} missing from {list:?}");
            list.retain(|x| x != e);
        }
    };
    only(&mut root.binaries, &["iscsid", "iscsiadm"]);
    let mut files: Vec<String> = root.files.iter().map(|p| p.display().to_string()).collect();
    only(&mut files, &["/etc/iscsi/iscsid.conf"]);
    root.files = files.into_iter().map(Into::into).collect();
    let mut dirs: Vec<String> = root.dirs.iter().map(|p| p.display().to_string()).collect();
    only(&mut dirs, &["/etc/iscsi", "/var/lib/iscsi"]);
    root.dirs = dirs.into_iter().map(Into::into).collect();
    assert_eq!(iscsi, tiny);
}

#[test]
fn rig_boots_its_snapshot_root_and_keeps_it() {
    let _one = fixture::one_guest_at_a_time();
    let rig = Rig::new(512, San::Disk);
    let origin = rig.origin_sha();
    assert_eq!(cow_header(&rig.bytes("vlx-cow-n2", Some(16))), (0, 0, 0, 0));

    let first = boot_node(&rig, "n2", "boot1.log");
    // n2: vlx-origin is partition 3, vlx-cow-n2 6, vlx-swap-n2 7; 448 MiB
    // of origin are 917504 sectors.
    assert_lines(
        &first.console,
        &[
            "vlx-node: SAN is /dev/vda (512-byte sectors)".into(),
            "vlx-node: mounted vlx-meta (/dev/vda2) read-only".into(),
            "vlx-node: this blade is n2 (MAC 52:54:00:88:00:02)".into(),
            "vlx-node: root is a snapshot of vlx-origin (/dev/vda3) with vlx-cow-n2 (/dev/vda6): \
             0 917504 snapshot /dev/vda3 /dev/vda6 P 8"
                .into(),
            "vlx-node: swap on vlx-swap-n2 (/dev/vda7)".into(),
            "vlx-node: ready n2".into(),
        ],
    );
    assert_lines(
        &first.root,
        &[
            // The agent handed pid 1 to the image's /sbin/init.
            "vlx-test: pid 1 is init, the root's /sbin/init".into(),
            "vlx-test: hostname n2".into(),
            // Rendered by the installer, copied with its mode and owner.
            "vlx-test: host key /etc/ssh/ssh_host_ed25519_key -rw------- 0:0".into(),
            "vlx-test: mount /dev/mapper/vlx-root / ext4 rw".into(),
            "vlx-test: mount /dev/vda2 /vlx/meta ext4 ro".into(),
            "vlx-test: swap /dev/vda7".into(),
            "vlx-test: first boot".into(),
        ],
    );
    assert_eq!(rig.origin_sha(), origin, "the origin changed");
    let (magic, valid, version, chunk) = cow_header(&rig.bytes("vlx-cow-n2", Some(16)));
    assert_eq!(
        (magic, valid, version, chunk),
        (SNAP_MAGIC, 1, 1, 8),
        "vlx-cow-n2 holds no persistent snapshot header"
    );
    for other in ["vlx-cow-n1", "vlx-cow-n3"] {
        assert_eq!(
            cow_header(&rig.bytes(other, Some(16))),
            (0, 0, 0, 0),
            "{other}"
        );
    }

    // The second boot finds what the first wrote: the store is persistent.
    let second = boot_node(&rig, "n2", "boot2.log");
    assert_lines(&second.root, &["vlx-test: boots before x".into()]);
    assert_eq!(rig.origin_sha(), origin, "the origin changed");
}

#[test]
fn rig_boots_on_4096_byte_sectors() {
    let _one = fixture::one_guest_at_a_time();
    let rig = Rig::new(4096, San::Disk);
    let origin = rig.origin_sha();
    let booted = boot_node(&rig, "n1", "boot.log");
    // With 4096-byte sectors the table still counts 512-byte sectors.
    assert_lines(
        &booted.console,
        &[
            "vlx-node: SAN is /dev/vda (4096-byte sectors)".into(),
            "vlx-node: root is a snapshot of vlx-origin (/dev/vda3) with vlx-cow-n1 (/dev/vda4): \
             0 917504 snapshot /dev/vda3 /dev/vda4 P 8"
                .into(),
        ],
    );
    assert_lines(
        &booted.root,
        &[
            "vlx-test: hostname n1".into(),
            "vlx-test: mount /dev/mapper/vlx-root / ext4 rw".into(),
        ],
    );
    assert_eq!(rig.origin_sha(), origin, "the origin changed");
    assert_eq!(cow_header(&rig.bytes("vlx-cow-n1", Some(16))).0, SNAP_MAGIC);
}

#[test]
fn rig_unknown_mac_gets_no_root_and_says_why() {
    let _one = fixture::one_guest_at_a_time();
    let rig = Rig::new(512, San::Disk);
    let origin = rig.origin_sha();
    let mut g = rig.boot("52:54:00:99:99:99", "unknown.log");
    g.wait_for("vlx-node: error: ", BOOT_TIMEOUT);
    g.wait_for("a shell follows on the console", BOOT_TIMEOUT);
    let uuid = rig.plan.cluster.uuid;
    assert_lines(
        &g.console(),
        &[format!(
            "vlx-node: error: no node of cluster {uuid} has any of this blade's MACs (52:54:00:99:99:99)"
        )],
    );
    assert!(
        g.console()
            .contains("vlx-node: hint: add one of these MACs")
    );
    assert!(!g.console().contains("vlx-node: ready"));

    // Ask the rescue shell what is mounted. The markers are computed so that
    // the echo of the typed line does not match them.
    g.type_line("echo MOUNTS-$((1+1)); cat /proc/mounts; ls /dev/mapper; echo MOUNTS-$((1+2))");
    g.wait_for("MOUNTS-3", BOOT_TIMEOUT);
    g.type_line("poweroff -f");
    g.wait_exit(BOOT_TIMEOUT);
    let console = g.console();
    eprintln!("--- console of the unknown blade ---\n{console}");
    let start = console.find("\nMOUNTS-2").expect("start marker");
    let end = console.find("\nMOUNTS-3").expect("end marker");
    let mounts = &console[start..end];
    assert!(
        mounts.contains("/run/vlx/meta"),
        "meta not mounted:\n{mounts}"
    );
    assert!(
        !mounts.contains("/newroot") && !mounts.contains("vlx-root"),
        "a root was assembled:\n{mounts}"
    );
    assert_eq!(rig.origin_sha(), origin, "the origin changed");
    for n in &rig.plan.nodes {
        assert_eq!(
            cow_header(&rig.bytes(&n.cow, Some(16))),
            (0, 0, 0, 0),
            "{} was touched",
            n.cow
        );
    }
}

/// The iSCSI transport against a real target: tgt serves the installed SAN
/// image in a private network namespace; the blade brings up its storage
/// NIC eth0 (with the profile's fixed address, or from a dnsmasq there),
/// logs in with iscsistart and boots as over a disk.
fn boot_over_iscsi(dhcp: bool) {
    let _one = fixture::one_guest_at_a_time();
    let rig = Rig::new(512, San::Iscsi { dhcp });
    let origin = rig.origin_sha();
    let target = fixture::IscsiTarget::start(&rig.san, dhcp, &rig.dir);
    let node = rig.plan.node("n3").unwrap();
    let mac = node.macs[0].to_string();
    let m = Machine {
        disk: None,
        storage: Some(fixture::StorageNic {
            mac: fixture::STORAGE_MAC,
            netns: &target.netns,
            tap: fixture::IscsiTarget::TAP,
        }),
        ..rig.machine(&mac)
    };
    let mut g = Guest::start(&m, &rig.dir, "iscsi.log");
    let (shell, root) = probe_root(&mut g, "n3");
    eprintln!("--- root of n3 over iSCSI ---\n{root}");
    let logged_in = target.show();
    let console = power_off(g, shell, "n3 over iSCSI");
    // The initiator is named after the storage NIC (vlx.sif).
    let initiator =
        agent::iscsi::initiator_name(rig.plan.cluster.uuid, fixture::STORAGE_MAC.parse().unwrap());
    let up = if dhcp {
        format!(
            "vlx-node: storage interface eth0 is up with {} netmask 255.255.255.0 (DHCP)",
            fixture::DHCP_ADDRESS
        )
    } else {
        format!(
            "vlx-node: storage interface eth0 is up with {} netmask 255.255.255.0 (a fixed address)",
            fixture::ISCSI_BLADE_IP
        )
    };
    assert_lines(
        &console,
        &[
            up,
            format!(
                "vlx-node: logged in to {} at {}:3260 as {initiator}",
                fixture::ISCSI_TARGET,
                fixture::ISCSI_PORTAL
            ),
            "vlx-node: SAN is /dev/sda (512-byte sectors)".into(),
            "vlx-node: this blade is n3 (MAC 52:54:00:88:00:03)".into(),
        ],
    );
    assert_lines(
        &root,
        &[
            "vlx-test: hostname n3".into(),
            "vlx-test: mount /dev/mapper/vlx-root / ext4 rw".into(),
            "vlx-test: mount /dev/sda2 /vlx/meta ext4 ro".into(),
        ],
    );
    assert!(
        logged_in.contains(&initiator),
        "tgtadm shows no {initiator}:\n{logged_in}"
    );
    drop(target);
    assert_eq!(rig.origin_sha(), origin, "the origin changed");
    assert_eq!(cow_header(&rig.bytes("vlx-cow-n3", Some(16))).0, SNAP_MAGIC);
}

#[test]
fn rig_boots_over_iscsi_with_a_fixed_address() {
    boot_over_iscsi(false);
}

#[test]
fn rig_boots_over_iscsi_with_dhcp() {
    boot_over_iscsi(true);
}

/// A blade that sees disks but not the SAN says so, names what each disk
/// holds, and waits at a shell.
#[test]
fn rig_missing_san_is_named_on_the_console() {
    let _one = fixture::one_guest_at_a_time();
    let rig = Rig::new(512, San::Disk);
    let blank = rig.dir.join("blank.img");
    std::fs::File::create(&blank)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let mac = rig.plan.nodes[0].macs[0].to_string();
    // As an admin would at the boot prompt: wait 5 s, not the default 60.
    let cmdline = format!("{} vlx.san_wait=5", rig.plan.boot.cmdline);
    let m = Machine {
        disk: Some((&blank, 512)),
        cmdline: &cmdline,
        ..rig.machine(&mac)
    };
    let mut g = Guest::start(&m, &rig.dir, "missing.log");
    g.wait_for("a shell follows on the console", BOOT_TIMEOUT);
    g.type_line("poweroff -f");
    g.wait_exit(BOOT_TIMEOUT);
    let console = g.console();
    eprintln!("--- console of a blade without the SAN ---\n{console}");
    let uuid = rig.plan.cluster.uuid;
    let guid = cluster::layout::derived_guid(uuid, "disk");
    assert_lines(
        &console,
        &[
            "vlx-node: waiting up to 5 s for the SAN to appear".into(),
            format!(
                "vlx-node: error: no disk holds the SAN of cluster {uuid} (GPT disk GUID {guid} \
                 with a vlx-meta partition); disks seen: vda: no valid GPT (primary: no GPT \
                 signature; backup: no GPT signature)"
            ),
        ],
    );
    assert!(console.contains("vlx-node: hint: look at ls /sys/block"));
    assert!(!console.contains("vlx-node: mounted"));
}

/// A snapshot store that the kernel refuses stops the boot at the dm step
/// with dmsetup's own words and the way out; `vlx-install reset-node`
/// returns the node to factory state and the next boot comes up.
#[test]
fn rig_broken_snapshot_store_stops_the_boot_until_reset() {
    let _one = fixture::one_guest_at_a_time();
    let rig = Rig::new(512, San::Disk);
    let origin = rig.origin_sha();
    // Not zero (a new store) and not dm-snapshot's magic: corrupt.
    fixture::write_partition(&rig.san, &rig.plan, "vlx-cow-n1", b"garbage!garbage!");

    let mac = rig.plan.node("n1").unwrap().macs[0].to_string();
    let mut g = rig.boot(&mac, "broken.log");
    g.wait_for("a shell follows on the console", BOOT_TIMEOUT);
    g.type_line("poweroff -f");
    g.wait_exit(BOOT_TIMEOUT);
    let console = g.console();
    eprintln!("--- console of n1 with a broken store ---\n{console}");
    let error = console
        .lines()
        .find(|l| l.starts_with("vlx-node: error: "))
        .expect("an error line");
    assert!(
        error.contains("dmsetup create vlx-root --noudevsync --table 0 917504 snapshot /dev/vda3 /dev/vda4 P 8 failed"),
        "{error}"
    );
    assert!(
        error.starts_with("vlx-node: error: assembling the root of n1: "),
        "{error}"
    );
    assert!(
        console.contains("with vlx-install reset-node n1\n"),
        "no way out on the console:\n{console}"
    );
    assert!(!console.contains("vlx-node: mounted /dev/mapper/vlx-root"));
    assert_eq!(rig.origin_sha(), origin, "the origin changed");

    let said = fixture::vlx_install(&[
        "reset-node",
        "n1",
        "--yes",
        "--san",
        &rig.san.to_string_lossy(),
    ]);
    eprintln!("vlx-install reset-node: {said}");
    let booted = boot_node(&rig, "n1", "after-reset.log");
    assert_lines(&booted.console, &["vlx-node: ready n1".into()]);
    assert_lines(&booted.root, &["vlx-test: first boot".into()]);
    assert_eq!(rig.origin_sha(), origin, "the origin changed");
}
