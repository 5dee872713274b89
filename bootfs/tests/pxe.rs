//! The PXE tree: its files and DHCP rules (image tier) and real network
//! boots under SeaBIOS and OVMF with QEMU's iPXE ROMs (`rig_`).
// Fixtures and helpers outside #[test] functions unwrap too: a failure is
// a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use bootfs::pxe::{self, DHCP_BOOT, PxeSpec};
use cluster::SectorSize;
use common::rig::{self, MARKER};
use common::*;

fn tree(dir: &Path, kernel: &Path, initrd: &Path, http_port: u16) -> (PathBuf, cluster::Plan) {
    let plan = demo_plan(SectorSize::B512, "both");
    let mut spec = PxeSpec::for_plan(&plan, kernel, vec![initrd.to_owned()], EPOCH);
    spec.http_port = http_port;
    let out = dir.join("tftp");
    pxe::plan(&spec).unwrap().write(&out).unwrap();
    (out, plan)
}

#[test]
fn the_tree_holds_every_loader_and_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let k = dir.path().join("vmlinuz-6.1.0-test");
    let i = dir.path().join("initramfs.img");
    std::fs::write(&k, b"kernel").unwrap();
    std::fs::write(&i, b"initramfs").unwrap();
    let (a, plan) = tree(dir.path(), &k, &i, 80);
    let mut names: Vec<String> = stdout(
        Command::new("find")
            .arg(".")
            .args(["-type", "f"])
            .current_dir(&a),
    )
    .lines()
    .map(str::to_owned)
    .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "./boot.ipxe",
            "./initramfs.img",
            "./ldlinux.c32",
            "./pxelinux.0",
            "./pxelinux.cfg/default",
            "./snponly.efi",
            "./undionly.kpxe",
            "./vmlinuz"
        ]
    );
    assert_eq!(std::fs::read(a.join("vmlinuz")).unwrap(), b"kernel");
    let cfg = std::fs::read_to_string(a.join("pxelinux.cfg/default")).unwrap();
    assert!(
        cfg.contains("  LINUX vmlinuz\n  INITRD initramfs.img\n"),
        "{cfg}"
    );
    assert!(
        cfg.contains(&format!("APPEND {}\n", plan.boot.cmdline)),
        "{cfg}"
    );
    let script = std::fs::read_to_string(a.join("boot.ipxe")).unwrap();
    assert!(script.contains(&plan.boot.cmdline), "{script}");
    // Same inputs, later: the same bytes, modes and times (as tar sees them).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b_dir = dir.path().join("again");
    let (b, _) = tree(&b_dir, &k, &i, 80);
    let listing = |d: &Path| {
        stdout(Command::new("sh").arg("-c").arg(format!(
            "cd '{}' && find . -printf '%p %m %T@ %s\\n' | LC_ALL=C sort && cat $(find . -type f | LC_ALL=C sort) | sha256sum",
            d.display()
        )))
    };
    assert_eq!(listing(&a), listing(&b));
    assert!(
        listing(&a).contains("./vmlinuz 644 1700000000.0000000000 6"),
        "{}",
        listing(&a)
    );
}

#[test]
fn dnsmasq_accepts_the_boot_rules() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("dnsmasq.conf");
    std::fs::write(
        &conf,
        format!(
            "port=0\ninterface=lo\ndhcp-range=10.77.0.0,static\nenable-tftp\ntftp-root={}\n{}",
            dir.path().display(),
            DHCP_BOOT.dnsmasq()
        ),
    )
    .unwrap();
    let out = run(Command::new("dnsmasq")
        .arg("--test")
        .arg(format!("--conf-file={}", conf.display())));
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("syntax check OK"), "{text}");
}

/// busybox httpd serving `root` on loopback, logging requests; killed on
/// drop.
struct Httpd {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl Httpd {
    fn start(root: &Path, log: PathBuf) -> Httpd {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("busybox")
            .args([
                "httpd",
                "-f",
                "-vv",
                "-p",
                &format!("127.0.0.1:{port}"),
                "-h",
            ])
            .arg(root)
            .stderr(std::fs::File::create(&log).unwrap())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Httpd { child, log, port }
    }

    fn requests(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }
}

impl Drop for Httpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// QEMU's user-mode network: DHCP and TFTP from QEMU itself, one boot file
/// for every client; the host is 10.0.2.2 (and `${next-server}`).
fn slirp(tree: &Path, bootfile: &str) -> Vec<String> {
    vec![
        "-netdev".into(),
        format!("user,id=n0,tftp={},bootfile={bootfile}", tree.display()),
        "-device".into(),
        "virtio-net-pci,netdev=n0,bootindex=1".into(),
    ]
}

fn check(line: &str, plan: &cluster::Plan) {
    assert!(line.contains(MARKER));
    assert!(
        line.contains(&format!("vlx.cluster={}", plan.cluster.uuid)),
        "{line}"
    );
}

#[test]
fn rig_pxe_seabios_pxelinux() {
    let dir = tempfile::tempdir().unwrap();
    let initrd = rig::initramfs(dir.path());
    let (t, plan) = tree(dir.path(), &rig::kernel(), &initrd, 80);
    let line = rig::qemu(dir.path(), &slirp(&t, "pxelinux.0")).wait_marker();
    check(&line, &plan);
}

#[test]
fn rig_pxe_seabios_ipxe_script_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let initrd = rig::initramfs(dir.path());
    let kernel = rig::kernel();
    // The port is known only once the server runs; the tree is written
    // into the folder it serves.
    let root = dir.path().join("tftp");
    std::fs::create_dir_all(&root).unwrap();
    let httpd = Httpd::start(&root, dir.path().join("httpd.log"));
    let (t, plan) = tree(dir.path(), &kernel, &initrd, httpd.port);
    assert_eq!(t, root);
    let line = rig::qemu(dir.path(), &slirp(&t, "boot.ipxe")).wait_marker();
    check(&line, &plan);
    let log = httpd.requests();
    for file in ["/vmlinuz", "/initramfs.img"] {
        assert!(
            log.contains(&format!("url:{file}\n")),
            "{file} not asked for: {log}"
        );
    }
    assert!(!log.contains("response:404"), "{log}");
}

#[test]
fn rig_pxe_seabios_ipxe_script_falls_back_to_tftp() {
    let dir = tempfile::tempdir().unwrap();
    let initrd = rig::initramfs(dir.path());
    // A port nothing listens on: HTTP is refused, TFTP serves.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (t, plan) = tree(dir.path(), &rig::kernel(), &initrd, port);
    let line = rig::qemu(dir.path(), &slirp(&t, "boot.ipxe")).wait_marker();
    check(&line, &plan);
}

/// A private network namespace with a tap and, on it, dnsmasq (DHCP with
/// the tree's boot rules, TFTP, an IPv6 RA so that iPXE does not wait for
/// one) and busybox httpd on port 80, as a node serves them. Everything is
/// stopped and the namespace deleted on drop.
struct Segment {
    ns: String,
    daemons: Vec<Child>,
    dnsmasq_log: PathBuf,
    httpd_log: PathBuf,
}

const SERVER: &str = "10.99.0.1";

impl Segment {
    fn start(dir: &Path, tree: &Path) -> Segment {
        let ns = format!("vlxboot{}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &ns]));
        let mut seg = Segment {
            ns: ns.clone(),
            daemons: Vec::new(),
            dnsmasq_log: dir.join("dnsmasq.log"),
            httpd_log: dir.join("httpd.log"),
        };
        for cmd in [
            "ip link set lo up",
            "ip tuntap add dev tap0 mode tap",
            "ip addr add 10.99.0.1/24 dev tap0",
            "ip -6 addr add fd99::1/64 dev tap0 nodad",
            "ip link set tap0 up",
        ] {
            run(Command::new("ip")
                .args(["netns", "exec", &ns])
                .args(cmd.split(' ')));
        }
        let conf = dir.join("dnsmasq.conf");
        std::fs::write(
            &conf,
            format!(
                "port=0\ninterface=tap0\nbind-interfaces\nuser=root\nno-ping\nlog-dhcp\n\
                 dhcp-range=10.99.0.10,10.99.0.50,1h\n\
                 enable-ra\ndhcp-range=::,constructor:tap0,ra-only\n\
                 enable-tftp\ntftp-root={}\n{}",
                tree.display(),
                DHCP_BOOT.dnsmasq()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(&seg.dnsmasq_log).unwrap();
        seg.daemons.push(
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &ns,
                    "dnsmasq",
                    "--no-daemon",
                    "--pid-file=",
                ])
                .arg(format!("--conf-file={}", conf.display()))
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        seg.daemons.push(
            Command::new("ip")
                .args(["netns", "exec", &ns, "busybox", "httpd", "-f", "-vv"])
                .args(["-p", &format!("{SERVER}:80"), "-h"])
                .arg(tree)
                .stderr(std::fs::File::create(&seg.httpd_log).unwrap())
                .spawn()
                .unwrap(),
        );
        seg
    }

    /// A NIC without QEMU's iPXE option ROM (`romfile=`), so that the
    /// firmware's own PXE client boots, as on most hardware; with the ROM,
    /// iPXE itself is the PXE client and goes straight to the script.
    fn qemu_args_firmware_pxe(&self) -> Vec<String> {
        vec![
            "-netdev".into(),
            "tap,id=n0,ifname=tap0,script=no,downscript=no".into(),
            "-device".into(),
            "virtio-net-pci,netdev=n0,bootindex=1,romfile=".into(),
        ]
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            let _ = d.kill();
            let _ = d.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

#[test]
fn rig_pxe_ovmf_snponly_then_ipxe_script_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let initrd = rig::initramfs(dir.path());
    let (t, plan) = tree(dir.path(), &rig::kernel(), &initrd, 80);
    let seg = Segment::start(dir.path(), &t);
    let mut args = rig::ovmf_args(dir.path());
    args.extend(seg.qemu_args_firmware_pxe());
    let line = rig::qemu_in_netns(dir.path(), &seg.ns, &args).wait_marker();
    check(&line, &plan);
    let dhcp = std::fs::read_to_string(&seg.dnsmasq_log).unwrap();
    assert!(dhcp.contains("bootfile-name  snponly.efi"), "{dhcp}");
    assert!(dhcp.contains("bootfile-name  boot.ipxe"), "{dhcp}");
    let http = std::fs::read_to_string(&seg.httpd_log).unwrap();
    assert!(
        http.contains("url:/vmlinuz\n") && !http.contains("response:404"),
        "{http}"
    );
}
