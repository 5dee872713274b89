//! Rig tier: `vlx-install --san iscsi://...` against a real target. The
//! host kernel here is no iSCSI initiator (no `iscsi_tcp`, no
//! `/lib/modules`), so the installer runs inside a QEMU guest (TCG): the
//! Debian cloud kernel with `iscsi_tcp` and `sd_mod`, busybox, open-iscsi's
//! `iscsid` and `iscsiadm`, and this build's `vlx-install`. tgt serves two
//! LUNs from files in a private network namespace; the guest's NIC is a tap
//! there. Every case runs the installer and then asks `iscsiadm -m
//! session` and the node records: the installer must leave no session and
//! no record behind, whatever happened; the LUNs' bytes must be as they
//! were. Needs root (network namespaces, tgtd) and `vlx-install` built
//! beside this test (`cargo build --workspace --bins`).

// Test helpers unwrap like the tests do: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod fixture;

use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use fixture::{BOOT_TIMEOUT, Guest, ISCSI_PORTAL, ISCSI_TARGET, IscsiTarget, Machine};
use imagebuilder::image::kernel::{self as kernels, ModuleIndex};
use imagebuilder::image::libs::Resolver;
use imagebuilder::image::tree::{Content, Entry, Tree};

/// A second target that asks for CHAP: the blade's name and secret, and
/// its own for mutual CHAP.
const CHAP_TARGET: &str = "iqn.2026-01.test.vlx:rig.chap";
const CHAP_USER: &str = "blade";
const CHAP_SECRET: &str = "Blade-Secret-0042";
const CHAP_TARGET_USER: &str = "san";
const CHAP_TARGET_SECRET: &str = "San-Secret-0043";
const WRONG_SECRET: &str = "Not-The-Secret-44";

/// The CHAP files the guest carries, each mode 0600 but `chap-open`.
fn chap_files() -> Vec<(&'static str, String, u32)> {
    let one = |p: &str| format!("username={CHAP_USER}\npassword={p}\n");
    let mutual = |p: &str| {
        format!(
            "{}username_in={CHAP_TARGET_USER}\npassword_in={p}\n",
            one(CHAP_SECRET)
        )
    };
    vec![
        ("chap", one(CHAP_SECRET), 0o600),
        ("chap-wrong", one(WRONG_SECRET), 0o600),
        ("chap-mutual", mutual(CHAP_TARGET_SECRET), 0o600),
        ("chap-mutual-wrong", mutual(WRONG_SECRET), 0o600),
        ("chap-open", one(CHAP_SECRET), 0o644),
    ]
}

/// The guest's address on the storage network.
const GUEST_IP: &str = "10.99.0.21";

/// What the guest runs: each case's output, exit code, the sessions and
/// node records after it, each line prefixed with the case's name.
fn steps() -> String {
    let p = ISCSI_PORTAL;
    let t = ISCSI_TARGET;
    let chap_target = CHAP_TARGET;
    format!(
        r#"
P={p}
T={t}
step() {{
    name=$1; shift
    "$@" >/tmp/out 2>&1
    rc=$?
    sed "s/^/vlx-test: $name: /" /tmp/out
    echo "vlx-test: $name rc=$rc"
    echo "vlx-test: $name sessions=[$(iscsiadm -m session 2>/dev/null | tr '\n' ' ')]"
    echo "vlx-test: $name records=[$(ls /etc/iscsi/nodes 2>/dev/null | tr '\n' ' ')]"
}}
apply="vlx-install apply --yes --cluster /test/cluster.toml --image /test/no-image"
step refused $apply --san iscsi://$P/$T/1
step small $apply --san iscsi://$P:3260/$T/2
step several vlx-install status --san iscsi://$P/$T
step status vlx-install status --san iscsi://$P/$T/1
step verify vlx-install verify --san iscsi://$P/$T/1
step wrong-iqn vlx-install status --san iscsi://$P/iqn.2026-01.test.vlx:nothing/1
step no-portal vlx-install status --san iscsi://10.99.0.2/$T/1
step no-lun vlx-install verify --san iscsi://$P/$T/7
iscsiadm -m node -T $T -p $P -o new >/dev/null
iscsiadm -m node -T $T -p $P --login >/dev/null
step busy vlx-install status --san iscsi://$P/$T/1
iscsiadm -m node -T $T -p $P --logout >/dev/null
iscsiadm -m node -T $T -p $P -o delete
# Interrupted while it hashes the origin: the signal handler logs out.
vlx-install verify --san iscsi://$P/$T/1 >/tmp/interrupted 2>&1 &
pid=$!
until iscsiadm -m session >/dev/null 2>&1; do sleep 0.2; done
kill -TERM $pid
wait $pid
step interrupted sh -c "cat /tmp/interrupted; exit $?"
C={chap_target}
step chap-none vlx-install status --san iscsi://$P/$C/1
step chap-wrong vlx-install status --san iscsi://$P/$C/1 --chap /test/chap-wrong
step chap vlx-install status --san iscsi://$P/$C/1 --chap /test/chap
step chap-mutual vlx-install status --san iscsi://$P/$C/1 --chap /test/chap-mutual
step chap-mutual-wrong vlx-install status --san iscsi://$P/$C/1 --chap /test/chap-mutual-wrong
step chap-open vlx-install status --san iscsi://$P/$C/1 --chap /test/chap-open
step after true
"#
    )
}

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
mkdir -p /run/lock/iscsi /var/lib/iscsi /etc/iscsi/nodes /tmp
while read -r m; do
    insmod "/lib/modules/$m" || echo "vlx-test: cannot load $m"
done < /lib/modules/order
ip link set lo up
ip link set eth0 up
ip addr add GUEST_IP/24 dev eth0
iscsid -f &
sleep 1
echo "vlx-test: started"
. /test/steps.sh
echo "vlx-test: done"
sync
poweroff -f
"#;

/// The test cluster: it plans on the 1 GiB LUN, but says its SAN is
/// 8 GiB, so the front door refuses it there (exit 3) before any write.
const CLUSTER: &str = r#"
[cluster]
name = "lun"
uuid = "0c6b1f3e-5a7d-4e21-8f90-2b4c6d8e0a13"
domain = "lun.vlx.test"
[network]
cidr = "10.88.0.0/24"
vips = ["10.88.0.250"]
[[nodes]]
name = "n[1-3]"
mac = "52:54:00:88:00:01"
ip = "10.88.0.11"
[san]
size = "8GiB"
[storage]
esp = "260MiB"
meta = "64MiB"
origin = "448MiB"
cow = "16MiB"
swap = "8MiB"
shared = "64MiB"
[image]
host = "host.toml"
"#;

/// Modules the guest loads, with their dependencies.
const MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_net",
    "virtio_blk",
    "iscsi_tcp",
    "sd_mod",
];

/// A kernel and an initramfs that run [`INIT`], in an image-like folder
/// (`vmlinuz`, `initramfs.img`) for [`Machine`].
fn guest_image(dir: &Path, steps: &str) -> PathBuf {
    let kernel = kernels::cached_or_fetch(kernels::DEFAULT_PACKAGE).unwrap();
    let out = dir.join("guest");
    fs::create_dir_all(&out).unwrap();
    fs::copy(&kernel.vmlinuz, out.join("vmlinuz")).unwrap();
    let installer = fixture::workspace_bin("vlx-install");
    let mut t = Tree::new();
    t.mkdir_p(Path::new("bin")).unwrap();
    t.insert(
        Path::new("bin/busybox"),
        Entry::file(Content::Host("/bin/busybox".into()), 0o755),
    )
    .unwrap();
    t.insert(
        Path::new("usr/sbin/vlx-install"),
        Entry::file(Content::Host(installer.clone()), 0o755),
    )
    .unwrap();
    for d in ["dev", "proc", "sys", "etc/iscsi", "tmp", "run", "test"] {
        t.mkdir_p(Path::new(d)).unwrap();
    }
    let file = |bytes: Vec<u8>, mode| Entry::file(Content::Bytes(bytes), mode);
    t.insert(
        Path::new("init"),
        file(INIT.replace("GUEST_IP", GUEST_IP).into(), 0o755),
    )
    .unwrap();
    let tools: Vec<PathBuf> = [
        "/usr/sbin/iscsid",
        "/usr/sbin/iscsiadm",
        "/usr/sbin/debugfs",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    for tool in &tools {
        t.add_host_path(tool).unwrap();
    }
    let mut bins = tools.clone();
    bins.push(installer);
    for lib in Resolver::host().closure(&bins).unwrap() {
        t.add_host_path(&lib).unwrap();
    }
    t.insert(
        Path::new("etc/iscsi/initiatorname.iscsi"),
        file(
            b"InitiatorName=iqn.2026-01.test.vlx:installer\n".to_vec(),
            0o600,
        ),
    )
    .unwrap();
    // iscsid asks who the peer of its socket is (root, by name).
    t.insert(
        Path::new("etc/passwd"),
        file(b"root:x:0:0:root:/root:/bin/sh\n".to_vec(), 0o644),
    )
    .unwrap();
    t.insert(Path::new("etc/group"), file(b"root:x:0:\n".to_vec(), 0o644))
        .unwrap();
    t.insert(
        Path::new("etc/iscsi/iscsid.conf"),
        file(b"node.startup = manual\n".to_vec(), 0o600),
    )
    .unwrap();
    let host = fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/hosts/tiny.toml"))
        .unwrap();
    t.insert(Path::new("test/host.toml"), file(host, 0o644))
        .unwrap();
    t.insert(Path::new("test/cluster.toml"), file(CLUSTER.into(), 0o644))
        .unwrap();
    t.insert(Path::new("test/steps.sh"), file(steps.into(), 0o644))
        .unwrap();
    for (name, text, mode) in chap_files() {
        t.insert(&Path::new("test").join(name), file(text.into(), mode))
            .unwrap();
    }
    let wanted: Vec<(String, String)> = MODULES
        .iter()
        .map(|m| ((*m).to_owned(), "the installer's iSCSI test".to_owned()))
        .collect();
    let mut order = String::new();
    for m in ModuleIndex::load(&kernel)
        .unwrap()
        .closure(&wanted)
        .unwrap()
    {
        let plain = m.plain_path();
        let base = plain.rsplit('/').next().unwrap_or(&plain).to_owned();
        let bytes = kernels::module_bytes(&kernel, &m).unwrap();
        t.insert(&Path::new("lib/modules").join(&base), file(bytes, 0o644))
            .unwrap();
        order.push_str(&base);
        order.push('\n');
    }
    t.insert(Path::new("lib/modules/order"), file(order.into(), 0o644))
        .unwrap();
    imagebuilder::image::initramfs::write(&t, &out.join("initramfs.img"), 0).unwrap();
    out
}

/// A sparse LUN file of `size` bytes with a mark at its start and end.
fn lun(path: &Path, size: u64, mark: u8) {
    let mut f = File::create(path).unwrap();
    f.set_len(size).unwrap();
    let block = vec![mark; 1 << 20];
    f.write_all(&block).unwrap();
    f.seek(SeekFrom::Start(size - (1 << 20))).unwrap();
    f.write_all(&block).unwrap();
    f.sync_all().unwrap();
}

/// The lines the guest printed for case `name`, without the prefix.
fn case(console: &str, name: &str) -> Vec<String> {
    let prefix = format!("vlx-test: {name}");
    console
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|l| l.trim_start_matches(':').trim().to_owned())
        .collect()
}

fn assert_case(console: &str, name: &str, rc: u8, said: &[&str]) {
    let lines = case(console, name);
    let text = lines.join("\n");
    assert!(
        lines.contains(&format!("rc={rc}")),
        "{name}: want exit {rc}:\n{text}"
    );
    for s in said {
        assert!(text.contains(s), "{name}: want `{s}` in:\n{text}");
    }
    assert!(
        lines.contains(&"sessions=[]".to_owned()),
        "{name}: a session is left:\n{text}"
    );
    assert!(
        lines.contains(&"records=[]".to_owned()),
        "{name}: a node record is left:\n{text}"
    );
}

#[test]
fn rig_installer_logs_in_and_out_of_iscsi_around_refusals() {
    let _one = fixture::one_guest_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // LUN 1: the test cluster installed on the host; LUN 2: too small.
    let host = fixture::host_image(&fixture::San::Disk.host_profile());
    let (big, _) = fixture::install(dir, &host, 512, fixture::San::Disk);
    let small = dir.join("lun2.img");
    lun(&small, 64 << 20, 0x5a);
    let before = (
        fixture::sha256(&fs::read(&big).unwrap()),
        fixture::sha256(&fs::read(&small).unwrap()),
    );
    let image = guest_image(dir, &steps());
    let target = IscsiTarget::start(&big, false, dir);
    target.add_lun(2, &small);
    let chap_lun = dir.join("lun3.img");
    lun(&chap_lun, 64 << 20, 0x3c);
    let chap_before = fixture::sha256(&fs::read(&chap_lun).unwrap());
    chap_target(&target, &chap_lun);
    let m = Machine {
        image: &image,
        cmdline: "console=ttyS0,115200 panic=10",
        disk: None,
        mac: "52:54:00:99:00:77",
        storage: Some(fixture::StorageNic {
            mac: fixture::STORAGE_MAC,
            netns: &target.netns,
            tap: IscsiTarget::TAP,
        }),
    };
    let mut g = Guest::start(&m, dir, "install-iscsi.log");
    g.wait_for("vlx-test: done\n", BOOT_TIMEOUT);
    let console = g.console();
    eprintln!("--- guest ---\n{console}");
    let url = |lun: &str| format!("iscsi://{ISCSI_PORTAL}:3260/{ISCSI_TARGET}{lun}");
    assert_case(
        &console,
        "refused",
        3,
        &[
            &format!("SAN {} (/dev/sd", url("/1")),
            "is 1GiB, smaller than the profile's san.size of 8GiB",
            "nothing was written to the target",
        ],
    );
    assert_case(
        &console,
        "small",
        3,
        &[
            &format!("SAN {} (/dev/sd", url("/2")),
            "the profile does not fit this SAN",
            "the SAN holds 64MiB",
        ],
    );
    assert_case(
        &console,
        "several",
        1,
        &["the target has several disk LUNs: 1 (sd", ", 2 (sd"],
    );
    assert_case(
        &console,
        "status",
        0,
        &[
            "cluster rig (",
            &format!("on {}", url("/1")),
            "install: complete",
        ],
    );
    assert_case(
        &console,
        "verify",
        0,
        &[&format!("{} (/dev/sd", url("/1")), "cluster rig verifies"],
    );
    assert_case(
        &console,
        "wrong-iqn",
        1,
        &[&format!(
            "logging in to target iqn.2026-01.test.vlx:nothing at portal {ISCSI_PORTAL}:3260 failed"
        )],
    );
    assert_case(
        &console,
        "no-portal",
        1,
        &[&format!(
            "logging in to target {ISCSI_TARGET} at portal 10.99.0.2:3260 failed"
        )],
    );
    assert_case(
        &console,
        "no-lun",
        1,
        &[&format!(
            "target {ISCSI_TARGET} at portal {ISCSI_PORTAL}:3260 has no disk LUN 7 (it has 1 (sd"
        )],
    );
    // A session that was there before: refused, and left as it was.
    let busy = case(&console, "busy").join("\n");
    assert!(busy.contains("rc=3"), "busy:\n{busy}");
    assert!(busy.contains("is logged in already"), "busy:\n{busy}");
    assert!(
        busy.contains(ISCSI_TARGET) && busy.contains("sessions=[tcp:"),
        "busy:\n{busy}"
    );
    assert_case(
        &console,
        "interrupted",
        143,
        &[&format!("interrupted: logging out of {}", url("/1"))],
    );
    let chap_url = format!("iscsi://{ISCSI_PORTAL}:3260/{CHAP_TARGET}/1");
    let refused_login =
        format!("logging in to target {CHAP_TARGET} at portal {ISCSI_PORTAL}:3260 failed");
    let logged_in = format!("SAN {chap_url} (/dev/sd");
    assert_case(&console, "chap-none", 1, &[&refused_login]);
    assert_case(&console, "chap-wrong", 1, &[&refused_login]);
    assert_case(&console, "chap", 1, &[&logged_in, "holds no vlx cluster"]);
    assert_case(
        &console,
        "chap-mutual",
        1,
        &[&logged_in, "holds no vlx cluster"],
    );
    assert_case(&console, "chap-mutual-wrong", 1, &[&refused_login]);
    assert_case(
        &console,
        "chap-open",
        2,
        &["reading CHAP file /test/chap-open: mode 644 lets others read it: chmod 600"],
    );
    for secret in [CHAP_SECRET, CHAP_TARGET_SECRET, WRONG_SECRET] {
        assert!(
            !console.contains(secret),
            "a CHAP secret was printed:\n{console}"
        );
    }
    assert_case(&console, "after", 0, &[]);
    g.wait_exit(BOOT_TIMEOUT);
    drop(target);
    let after = (
        fixture::sha256(&fs::read(&big).unwrap()),
        fixture::sha256(&fs::read(&small).unwrap()),
    );
    assert_eq!(after, before, "a LUN changed");
    assert_eq!(
        fixture::sha256(&fs::read(&chap_lun).unwrap()),
        chap_before,
        "the CHAP LUN changed"
    );
}

/// Target 2 ([`CHAP_TARGET`]) with `file` as LUN 1, for initiators that
/// know [`CHAP_USER`]'s secret; it answers mutual CHAP as
/// [`CHAP_TARGET_USER`].
fn chap_target(target: &IscsiTarget, file: &Path) {
    let file = file.to_string_lossy();
    for args in [
        &[
            "--op",
            "new",
            "--mode",
            "target",
            "--tid",
            "2",
            "-T",
            CHAP_TARGET,
        ][..],
        &[
            "--op",
            "new",
            "--mode",
            "logicalunit",
            "--tid",
            "2",
            "--lun",
            "1",
            "-b",
            &file,
        ],
        &[
            "--op", "bind", "--mode", "target", "--tid", "2", "-I", "ALL",
        ],
        &[
            "--op",
            "new",
            "--mode",
            "account",
            "--user",
            CHAP_USER,
            "--password",
            CHAP_SECRET,
        ],
        &[
            "--op",
            "new",
            "--mode",
            "account",
            "--user",
            CHAP_TARGET_USER,
            "--password",
            CHAP_TARGET_SECRET,
        ],
        &[
            "--op", "bind", "--mode", "account", "--tid", "2", "--user", CHAP_USER,
        ],
        &[
            "--op",
            "bind",
            "--mode",
            "account",
            "--tid",
            "2",
            "--user",
            CHAP_TARGET_USER,
            "--outgoing",
        ],
    ] {
        target.tgtadm(args);
    }
}
