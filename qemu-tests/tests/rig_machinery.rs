//! The rig's machinery, each piece with a real kernel under QEMU: the
//! Debian cloud kernel and busybox initramfs images of the test kit that
//! speak the console contract.

// Test helpers outside #[test] functions fail loudly, like the tests.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cluster::MacAddr;
use qemu_tests::blade::{self, Logs};
use qemu_tests::qemu::{Accel, BootFrom, Disk, Firmware, UefiFiles};
use qemu_tests::run::{Run, processes_mentioning};
use qemu_tests::switch::Switch;
use qemu_tests::{accel, testkit};

/// Generous: the machine running the tests may be busy.
const READY: Duration = Duration::from_secs(180);
const CMD: Duration = Duration::from_secs(30);

fn mac(last: u8) -> MacAddr {
    MacAddr([0x52, 0x54, 0x00, 0x99, 0x00, last])
}

struct Kit {
    kernel: testkit::Kernel,
    initrd: PathBuf,
    accel: Accel,
    logs: Logs,
}

fn kit(run: &Run) -> Kit {
    let kernel = testkit::kernel().unwrap();
    let initrd = run.dir().join("initrd.img");
    testkit::initramfs(&kernel, &[], &initrd).unwrap();
    let probe = accel::choose(run, Some(&kernel.vmlinuz));
    eprintln!("acceleration: {} ({})", probe.accel, probe.why);
    Kit {
        kernel,
        initrd,
        accel: probe.accel,
        logs: Logs {
            dir: run.dir().join("logs"),
        },
    }
}

fn kernel_boot(k: &Kit, name: &str, ip: Option<&str>, extra: &str) -> BootFrom {
    BootFrom::Kernel {
        kernel: k.kernel.vmlinuz.clone(),
        initrd: k.initrd.clone(),
        append: testkit::append(name, ip, extra),
    }
}

#[test]
fn rig_boots_a_blade_and_drives_its_shell() {
    let run = Run::start(false).unwrap();
    let k = kit(&run);
    let switch = Switch::start(&run, &run.dir().join("switch"), 4).unwrap();
    let m = testkit::machine(
        run.dir(),
        "t1",
        mac(1),
        switch.sock(),
        vec![],
        kernel_boot(&k, "t1", None, ""),
        k.accel,
    );
    let mut b = blade::power_on(&run, &m, &k.logs).unwrap();
    b.wait_ready("t1", READY).unwrap();

    let boot = b.boot();
    let (fw, kernel, agent, services) = (
        boot.firmware.unwrap(),
        boot.kernel.unwrap(),
        boot.agent_ready.unwrap(),
        boot.services_ready.unwrap(),
    );
    assert!(
        boot.power_on <= fw && fw <= kernel && kernel <= agent && agent <= services,
        "{boot:?}"
    );

    let sh = b.shell();
    sh.ready(READY).unwrap();
    let out = sh.run("hostname", CMD).unwrap();
    assert_eq!(
        (out.lines.as_slice(), out.status),
        (&["t1".to_string()][..], 0)
    );
    let out = sh.run("echo one; echo two >&2; false", CMD).unwrap();
    assert_eq!(out.lines, ["one", "two"]);
    assert_eq!(out.status, 1);
    let out = sh.run("printf no-newline", CMD).unwrap();
    assert_eq!(out.lines, ["no-newline"]);
    let out = sh.run("cat /sys/class/net/eth0/address", CMD).unwrap();
    assert_eq!(out.text(), mac(1).to_string());
    let out = sh.run("exit 7", CMD).unwrap();
    assert_eq!(out.status, 7, "a subshell keeps the shell alive");
    assert!(sh.run("true", CMD).unwrap().success());

    let boot = b.power_off();
    assert!(boot.power_off.unwrap() >= services);
    let log = std::fs::read_to_string(k.logs.console("t1")).unwrap();
    assert!(log.contains("SeaBIOS"), "firmware banner on ttyS0:\n{log}");
    assert!(log.contains("--- power off"), "{log}");
}

#[test]
fn rig_segment_carries_traffic_between_blades_only() {
    let links_before = host_links();
    let run = Run::start(false).unwrap();
    let k = kit(&run);
    let switch = Switch::start(&run, &run.dir().join("switch"), 4).unwrap();
    let mut blades = Vec::new();
    for (i, name) in ["a", "b"].iter().enumerate() {
        let ip = format!("10.99.0.{}/24", i + 1);
        let m = testkit::machine(
            run.dir(),
            name,
            mac(i as u8 + 1),
            switch.sock(),
            vec![],
            kernel_boot(&k, name, Some(&ip), ""),
            k.accel,
        );
        blades.push(blade::power_on(&run, &m, &k.logs).unwrap());
    }
    for (b, name) in blades.iter_mut().zip(["a", "b"]) {
        b.wait_ready(name, READY).unwrap();
        b.shell().ready(READY).unwrap();
    }
    let out = blades[0]
        .shell()
        .run("ping -c 2 -W 5 10.99.0.2", CMD)
        .unwrap();
    assert!(out.success(), "{}", out.text());
    let out = blades[1]
        .shell()
        .run("ip neigh show 10.99.0.1", CMD)
        .unwrap();
    assert!(out.text().contains(&mac(1).to_string()), "{}", out.text());
    // The host gained no interface for the segment.
    assert_eq!(host_links(), links_before);
}

/// The host's network interfaces, by name.
fn host_links() -> Vec<String> {
    let out = Command::new("ip").args(["-j", "link"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut names: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn rig_blades_boot_from_a_shared_disk_first() {
    let run = Run::start(false).unwrap();
    let k = kit(&run);
    let switch = Switch::start(&run, &run.dir().join("switch"), 4).unwrap();
    let disk = run.dir().join("shared.img");
    // Both blades boot the one disk: the command line cannot name either,
    // so the test init falls back to its default name.
    testkit::syslinux_disk(
        &k.kernel.vmlinuz,
        &k.initrd,
        "console=ttyS0,115200",
        &disk,
        64,
    )
    .unwrap();
    let mut blades = Vec::new();
    for (i, name) in ["d1", "d2"].iter().enumerate() {
        let m = testkit::machine(
            run.dir(),
            name,
            mac(i as u8 + 1),
            switch.sock(),
            vec![Disk {
                path: disk.clone(),
                shared: true,
            }],
            BootFrom::Disk,
            k.accel,
        );
        blades.push(blade::power_on(&run, &m, &k.logs).unwrap());
    }
    for b in &mut blades {
        b.wait_ready("testblade", READY).unwrap();
        let boot = b.boot();
        assert!(boot.firmware.unwrap() < boot.kernel.unwrap(), "{boot:?}");
        let lines = b.console().lines();
        assert!(
            lines
                .iter()
                .any(|l| l.text.contains("Booting from Hard Disk")),
            "disk-first boot"
        );
        // Each sees the shared disk.
        b.shell().ready(READY).unwrap();
        let out = b.shell().run("cat /sys/block/vda/size", CMD).unwrap();
        assert_eq!(out.text(), (64 * 1024 * 2).to_string());
    }
}

#[test]
fn rig_blade_boots_from_the_network_served_by_another() {
    let run = Run::start(false).unwrap();
    let k = kit(&run);
    let switch = Switch::start(&run, &run.dir().join("switch"), 4).unwrap();
    // The server carries the kernel and the client's initramfs, and an
    // iPXE script that boots them.
    let script = "#!ipxe\nkernel http://10.99.0.1/vmlinuz console=ttyS0,115200 rig.name=pxe\ninitrd http://10.99.0.1/initrd.img\nboot\n";
    let vmlinuz = std::fs::read(&k.kernel.vmlinuz).unwrap();
    let client_initrd = std::fs::read(&k.initrd).unwrap();
    let server_initrd = run.dir().join("server.img");
    testkit::initramfs(
        &k.kernel,
        &[
            ("boot/vmlinuz", &vmlinuz),
            ("boot/initrd.img", &client_initrd),
            ("boot/boot.ipxe", script.as_bytes()),
        ],
        &server_initrd,
    )
    .unwrap();
    let server = testkit::machine(
        run.dir(),
        "server",
        mac(1),
        switch.sock(),
        vec![],
        BootFrom::Kernel {
            kernel: k.kernel.vmlinuz.clone(),
            initrd: server_initrd,
            append: testkit::append("server", Some("10.99.0.1/24"), "rig.serve=1"),
        },
        k.accel,
    );
    let mut server = blade::power_on(&run, &server, &k.logs).unwrap();
    server.wait_ready("server", READY).unwrap();
    server
        .wait("rig-test: serving DHCP and HTTP", READY)
        .unwrap();

    let client = testkit::machine(
        run.dir(),
        "client",
        mac(2),
        switch.sock(),
        vec![],
        BootFrom::Network,
        k.accel,
    );
    let mut client = blade::power_on(&run, &client, &k.logs).unwrap();
    client.wait_ready("pxe", READY).unwrap();
    let lines = client.console().lines();
    assert!(lines.iter().any(|l| l.text.contains("iPXE")), "iPXE ran");
    assert!(
        lines
            .iter()
            .any(|l| l.text.contains("http://10.99.0.1/vmlinuz")),
        "the kernel came from the server"
    );
}

#[test]
fn rig_uefi_blade_boots_with_its_own_variable_store() {
    let Some(ovmf) = qemu_tests::firmware::ovmf() else {
        panic!("OVMF is not installed (cargo xtask deps installs ovmf)");
    };
    let run = Run::start(false).unwrap();
    let k = kit(&run);
    let switch = Switch::start(&run, &run.dir().join("switch"), 4).unwrap();
    let mut m = testkit::machine(
        run.dir(),
        "u1",
        mac(1),
        switch.sock(),
        vec![],
        kernel_boot(&k, "u1", None, ""),
        k.accel,
    );
    let vars = run.dir().join("u1").join("vars.fd");
    m.firmware = Firmware::Uefi;
    m.uefi = Some(UefiFiles {
        code: ovmf.code.clone(),
        vars: vars.clone(),
    });
    let mut b = blade::power_on(&run, &m, &k.logs).unwrap();
    b.wait_ready("u1", READY).unwrap();
    assert_eq!(
        std::fs::metadata(&vars).unwrap().len(),
        std::fs::metadata(&ovmf.vars_template).unwrap().len()
    );
    let sh = b.shell();
    sh.ready(READY).unwrap();
    let out = sh
        .run("test -d /sys/firmware/efi && echo efi", CMD)
        .unwrap();
    assert_eq!(out.text(), "efi");
}

#[test]
fn rig_failed_wait_shows_the_console_and_leaves_nothing_behind() {
    let run = Run::start(false).unwrap();
    let dir: PathBuf = run.dir().to_owned();
    let k = kit(&run);
    let switch = Switch::start(&run, &run.dir().join("switch"), 4).unwrap();
    let m = testkit::machine(
        run.dir(),
        "quiet",
        mac(1),
        switch.sock(),
        vec![],
        kernel_boot(&k, "quiet", None, "rig.silent=1"),
        k.accel,
    );
    let b = blade::power_on(&run, &m, &k.logs).unwrap();
    b.wait("Run /init as init process", READY).unwrap();
    let err = b
        .wait("vlx-node: ready quiet", Duration::from_secs(3))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("quiet ttyS0: no `vlx-node: ready quiet` within 3 s"),
        "{text}"
    );
    assert!(text.contains("    | "), "the last console lines: {text}");
    assert!(!processes_mentioning(dir.as_os_str()).is_empty());
    // Failing the way a rehearsal does: the error propagates, everything
    // drops.
    drop(b);
    drop(switch);
    drop(run);
    assert_eq!(processes_mentioning(dir.as_os_str()), []);
    assert!(!dir.exists());
}

#[test]
fn rig_panic_leaves_nothing_behind() {
    let dir = std::sync::Mutex::new(PathBuf::new());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let run = Run::start(false).unwrap();
        *dir.lock().unwrap() = run.dir().to_owned();
        let _switch = Switch::start(&run, &run.dir().join("switch"), 2).unwrap();
        assert!(!processes_mentioning(run.dir().as_os_str()).is_empty());
        panic!("on purpose");
    }));
    assert!(result.is_err());
    let dir = dir.into_inner().unwrap();
    assert!(dir.starts_with(std::env::temp_dir()), "{}", dir.display());
    assert_eq!(processes_mentioning(dir.as_os_str()), []);
    assert!(!dir.exists());
}

#[test]
fn rig_ctrl_c_stops_every_process_of_the_run() {
    let k = testkit::kernel().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let initrd = scratch.path().join("initrd.img");
    testkit::initramfs(&k, &[], &initrd).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vlx-rig"))
        .args(["boot", "--blades", "2", "--kernel"])
        .arg(&k.vmlinuz)
        .arg("--initrd")
        .arg(&initrd)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // vlx-rig prints its scratch directory first, then one line per blade
    // once it is ready.
    let out = child.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(out));
    let first = lines.next().unwrap().unwrap();
    let dir = PathBuf::from(first.strip_prefix("run directory: ").unwrap());
    let mut ready = 0;
    for l in lines.by_ref() {
        if l.unwrap().contains("ready") {
            ready += 1;
            if ready == 2 {
                break;
            }
        }
    }
    assert_eq!(ready, 2);
    assert!(
        processes_mentioning(dir.as_os_str()).len() >= 3,
        "2 QEMUs and a switch"
    );
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGINT), "{status}");
    assert_eq!(processes_mentioning(dir.as_os_str()), []);
    assert!(!Path::new(&dir).exists());
}
