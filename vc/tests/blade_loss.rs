//! Two blades' agents on one etcd: a VC spread over both, one blade dies
//! (agent and QEMU killed with SIGKILL), and its VM comes back on the
//! survivor (`restart = "auto"`); a VM that runs is refused a second start.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{EtcdServer, Vcd, alive, json, wait_for};
use vc::state::VmRecord;
use vc::vm::{Accel, Host};

/// Boots of tiny guests and a lease expiry under TCG on a loaded machine.
const WAIT: Duration = Duration::from_secs(600);

fn readies(shared: &Path, vm: &str) -> usize {
    std::fs::read_to_string(shared.join("vcs/t").join(vm).join("console.log"))
        .unwrap_or_default()
        .matches(&format!("vlx-guest: ready t/{vm}"))
        .count()
}

fn vm_view(e: &EtcdServer, vm: usize) -> (String, String) {
    let v = json(&e.vlx_vc(&["show", "t", "--json"]));
    let vm = &v["vms"][vm];
    (
        vm["blade"].as_str().unwrap_or("-").to_owned(),
        vm["state"].as_str().unwrap_or("-").to_owned(),
    )
}

#[test]
fn a_dead_blades_vm_comes_back_on_the_survivor_and_never_runs_twice() {
    let e = EtcdServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let _reaper = common::Reaper(dir.path().to_owned());
    let shared = dir.path().join("shared");
    e.import_tiny(dir.path(), &shared);
    let runs = [dir.path().join("run1"), dir.path().join("run2")];
    let _a = Vcd::start(&e.url, "blade01", &shared, &runs[0], dir.path());
    let mut b = Vcd::start(&e.url, "blade02", &shared, &runs[1], dir.path());
    let logs = || {
        let mut s = String::new();
        for f in ["vcd-blade01.log", "vcd-blade02.log"] {
            s.push_str(&format!("--- {f}\n"));
            s.push_str(&std::fs::read_to_string(dir.path().join(f)).unwrap_or_default());
        }
        s
    };
    wait_for(
        "both blades registered",
        WAIT,
        || (e.keys("/vlx/blades/").len() == 2).then_some(()),
        &logs,
    );
    json(&e.vlx_vc(&[
        "create",
        "--name",
        "t",
        "--guest",
        "tiny",
        "--vms",
        "2",
        "--memory",
        "128MiB",
        "--placement",
        "cyclic",
        "--restart",
        "auto",
        "--json",
    ]));
    assert_eq!(vm_view(&e, 1).0, "blade02");
    wait_for(
        "both VMs ready",
        WAIT,
        || (readies(&shared, "vm1") == 1 && readies(&shared, "vm2") == 1).then_some(()),
        &logs,
    );

    // blade02 dies: its agent and its QEMU, with SIGKILL.
    let qemu: i32 = std::fs::read_to_string(runs[1].join("t/vm2/qemu.pid"))
        .expect("vm2's pid file")
        .trim()
        .parse()
        .expect("a pid");
    b.kill();
    let st = std::process::Command::new("kill")
        .args(["-9", &qemu.to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    wait_for(
        "vm2's QEMU gone",
        WAIT,
        || (!alive(qemu)).then_some(()),
        &logs,
    );

    wait_for(
        "vm2 back on blade01",
        WAIT,
        || {
            let (blade, state) = vm_view(&e, 1);
            (blade == "blade01" && state == "running" && readies(&shared, "vm2") == 2).then_some(())
        },
        &logs,
    );
    assert!(e.keys("/vlx/blades/blade02").is_empty());

    // vm1 runs on blade01; a second QEMU on its overlay is refused by
    // QEMU's image lock.
    let show = json(&e.vlx_vc(&["show", "t", "--json"]));
    let spec: vc::VcSpec = serde_json::from_value(show["vc"].clone()).expect("spec");
    let rec: VmRecord = VmRecord {
        vm: vc::VmIndex(1),
        blade: "blade02".parse().expect("name"),
        mac: show["vms"][0]["mac"]
            .as_str()
            .expect("mac")
            .parse()
            .expect("mac"),
    };
    let other = Host {
        shared: shared.clone(),
        run: dir.path().join("run3"),
        accel: Accel::Tcg,
    };
    let err = other
        .start(&spec, &rec, false)
        .expect_err("a second QEMU on a running VM's overlay must be refused");
    assert!(
        format!("{err:#}").contains("Failed to get \"write\" lock"),
        "{err:#}"
    );
    json(&e.vlx_vc(&["destroy", "t", "--force", "--json"]));
    wait_for(
        "VC files gone",
        WAIT,
        || (!shared.join("vcs/t").exists()).then_some(()),
        &logs,
    );
}
