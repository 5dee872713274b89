//! `vlx-vcd` with real etcd, real QEMU (TCG) and the tiny guest: VMs boot
//! from private overlays, outlive their agent, stop, save, restore and go
//! away with their VC.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{EtcdServer, Vcd, alive, json, wait_for};

/// Boots of tiny guests under TCG on a loaded 2-core machine.
const BOOT_WAIT: Duration = Duration::from_secs(600);

fn states(e: &EtcdServer, vc: &str) -> Vec<String> {
    let v = json(&e.vlx_vc(&["show", vc, "--json"]));
    v["vms"]
        .as_array()
        .expect("vms")
        .iter()
        .map(|vm| vm["state"].as_str().unwrap_or("-").to_owned())
        .collect()
}

/// Whether every VM reports `state`; a VM that failed ends the wait.
fn all_are(e: &EtcdServer, vc: &str, state: &str) -> Option<()> {
    let s = states(e, vc);
    assert!(
        !s.iter().any(|x| x == "failed"),
        "a VM failed: {}",
        String::from_utf8_lossy(&e.vlx_vc(&["show", vc, "--json"]).stdout)
    );
    s.iter().all(|x| x == state).then_some(())
}

fn pid(run: &Path, vm: &str) -> Option<i32> {
    std::fs::read_to_string(run.join("t").join(vm).join("qemu.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn readies(shared: &Path, vm: &str) -> usize {
    std::fs::read_to_string(shared.join("vcs/t").join(vm).join("console.log"))
        .unwrap_or_default()
        .matches(&format!("vlx-guest: ready t/{vm}"))
        .count()
}

fn sha256(p: &Path) -> String {
    let o = std::process::Command::new("sha256sum")
        .arg(p)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&o.stdout)
        .split(' ')
        .next()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn vms_boot_outlive_their_agent_save_restore_and_go() {
    let e = EtcdServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let _reaper = common::Reaper(dir.path().to_owned());
    let (shared, run) = (dir.path().join("shared"), dir.path().join("run"));
    e.import_tiny(dir.path(), &shared);
    let base = shared.join("guests/tiny/base.raw");
    let base_sum = sha256(&base);

    let mut vcd = Vcd::start(&e.url, "blade01", &shared, &run, dir.path());
    let logs = || {
        let mut s = std::fs::read_to_string(vcd_log(dir.path())).unwrap_or_default();
        for vm in ["vm1", "vm2"] {
            s.push_str(&format!("\n--- {vm} console:\n"));
            s.push_str(
                &std::fs::read_to_string(shared.join("vcs/t").join(vm).join("console.log"))
                    .unwrap_or_default(),
            );
        }
        s
    };
    wait_for(
        "blade01 registered",
        BOOT_WAIT,
        || (!e.keys("/vlx/blades/blade01").is_empty()).then_some(()),
        &logs,
    );

    json(&e.vlx_vc(&[
        "create", "--name", "t", "--guest", "tiny", "--vms", "2", "--memory", "128MiB", "--json",
    ]));
    wait_for(
        "both VMs ready",
        BOOT_WAIT,
        || (readies(&shared, "vm1") == 1 && readies(&shared, "vm2") == 1).then_some(()),
        &logs,
    );
    wait_for(
        "both VMs reported running",
        BOOT_WAIT,
        || all_are(&e, "t", "running"),
        &logs,
    );
    let pids = [
        pid(&run, "vm1").expect("vm1 pid"),
        pid(&run, "vm2").expect("vm2 pid"),
    ];

    // The agent dies; its VMs do not, and a new agent adopts them (it
    // stops them through their monitors).
    vcd.kill();
    assert!(pids.iter().all(|&p| alive(p)), "VMs died with their agent");
    let _vcd2 = Vcd::start(&e.url, "blade01", &shared, &run, dir.path());
    json(&e.vlx_vc(&["stop", "t", "--json"]));
    wait_for(
        "both VMs stopped",
        BOOT_WAIT,
        || all_are(&e, "t", "stopped"),
        &logs,
    );
    wait_for(
        "QEMU gone",
        BOOT_WAIT,
        || pids.iter().all(|&p| !alive(p)).then_some(()),
        &logs,
    );
    assert_eq!(readies(&shared, "vm1"), 1, "vm1 was not booted twice");

    // Started again, they boot from their overlays: the first boot's
    // record is on their disks.
    json(&e.vlx_vc(&["start", "t", "--json"]));
    wait_for(
        "both VMs ready again",
        BOOT_WAIT,
        || (readies(&shared, "vm1") == 2 && readies(&shared, "vm2") == 2).then_some(()),
        &logs,
    );

    // Save and restore.
    wait_for(
        "both VMs reported running",
        BOOT_WAIT,
        || all_are(&e, "t", "running"),
        &logs,
    );
    json(&e.vlx_vc(&["save", "t", "--json"]));
    wait_for(
        "both VMs saved",
        BOOT_WAIT,
        || all_are(&e, "t", "saved"),
        &logs,
    );
    for vm in ["vm1", "vm2"] {
        assert!(shared.join("vcs/t").join(vm).join("save.state").is_file());
    }
    json(&e.vlx_vc(&["restore", "t", "--json"]));
    wait_for(
        "both VMs running from their saved state",
        BOOT_WAIT,
        || {
            all_are(&e, "t", "running")?;
            ["vm1", "vm2"]
                .iter()
                .all(|vm| !shared.join("vcs/t").join(vm).join("save.state").exists())
                .then_some(())
        },
        &logs,
    );
    assert_eq!(
        readies(&shared, "vm1"),
        2,
        "a restore resumes, it does not boot"
    );

    let pids = [
        pid(&run, "vm1").expect("vm1 pid"),
        pid(&run, "vm2").expect("vm2 pid"),
    ];
    json(&e.vlx_vc(&["destroy", "t", "--force", "--json"]));
    wait_for(
        "VMs gone with their files",
        BOOT_WAIT,
        || (pids.iter().all(|&p| !alive(p)) && !shared.join("vcs/t").exists()).then_some(()),
        &logs,
    );
    assert!(e.keys("/vlx/vc/").is_empty());
    assert!(e.keys("/vlx/status/").is_empty());
    assert_eq!(sha256(&base), base_sum, "the base image changed");
}

fn vcd_log(dir: &Path) -> std::path::PathBuf {
    dir.join("vcd-blade01.log")
}

#[test]
fn a_vm_that_cannot_start_is_reported_failed_with_the_reason() {
    let e = EtcdServer::start();
    // The guest is registered but its files are not on the shared volume.
    e.demo_cluster();
    let dir = tempfile::tempdir().expect("tempdir");
    let _reaper = common::Reaper(dir.path().to_owned());
    let (shared, run) = (dir.path().join("shared"), dir.path().join("run"));
    std::fs::create_dir_all(&shared).expect("shared");
    let _vcd = Vcd::start(&e.url, "blade01", &shared, &run, dir.path());
    let logs = || std::fs::read_to_string(vcd_log(dir.path())).unwrap_or_default();
    json(&e.vlx_vc(&[
        "create", "--name", "t", "--guest", "tiny", "--vms", "1", "--memory", "128MiB", "--json",
    ]));
    let detail = wait_for(
        "vm1 reported failed",
        BOOT_WAIT,
        || {
            let v = json(&e.vlx_vc(&["show", "t", "--json"]));
            (v["vms"][0]["state"] == "failed").then(&logs)
        },
        &logs,
    );
    assert!(detail.contains("guest tiny has no base image"), "{detail}");
    // The agent retries every second; between and after its rounds the
    // state stays `failed`, never a `running` it did not reach.
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(states(&e, "t"), ["failed"], "{}", logs());
    }
}
