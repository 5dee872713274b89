//! A blade cut off from etcd fences itself: its VMs are killed before its
//! lease can expire and the placer can start them elsewhere.

mod common;

use std::time::Duration;

use common::{EtcdServer, Vcd, alive, json, wait_for};

/// A tiny guest's boot under TCG on a loaded machine, and the fence (half
/// the agents' 5 s TTL, plus etcd's connection timeouts).
const WAIT: Duration = Duration::from_secs(600);

#[test]
fn an_agent_that_loses_etcd_kills_its_vms() {
    let mut e = EtcdServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let _reaper = common::Reaper(dir.path().to_owned());
    let shared = dir.path().join("shared");
    let run = dir.path().join("run");
    e.import_tiny(dir.path(), &shared);
    let _a = Vcd::start(&e.url, "blade01", &shared, &run, dir.path());
    let logs = || std::fs::read_to_string(dir.path().join("vcd-blade01.log")).unwrap_or_default();
    wait_for(
        "blade registered",
        WAIT,
        || (!e.keys("/vlx/blades/").is_empty()).then_some(()),
        &logs,
    );
    json(&e.vlx_vc(&[
        "create", "--name", "t", "--guest", "tiny", "--vms", "1", "--memory", "128MiB", "--json",
    ]));
    let pidfile = run.join("t/vm1/qemu.pid");
    let pid: i32 = wait_for(
        "vm1 started",
        WAIT,
        || std::fs::read_to_string(&pidfile).ok()?.trim().parse().ok(),
        &logs,
    );
    assert!(alive(pid));
    e.kill();
    wait_for("vm1 fenced", WAIT, || (!alive(pid)).then_some(()), &logs);
    assert!(
        logs().contains("cut off from etcd: killed t/vm1"),
        "{}",
        logs()
    );
}
