//! `vlx-vc` against a real etcd: every change is one transaction, refusals
//! leave nothing behind. Needs `etcd` and `etcdctl` (Debian etcd-server,
//! etcd-client).

mod common;

use common::{EtcdServer, blades_of, json, stderr, vlx_vc};

const DEMO: &str = "profiles/vcs/demo.toml";

#[test]
fn create_places_as_plan_predicted_and_show_tells_it() {
    let e = EtcdServer::start();
    e.demo_cluster();
    let planned = json(&vlx_vc(&[
        "plan",
        "--vc",
        DEMO,
        "--blades",
        "profiles/vcs/blades-demo.toml",
        "--json",
    ]));
    let created = json(&e.vlx_vc(&["create", "--vc", DEMO, "--json"]));
    assert_eq!(blades_of(&created), blades_of(&planned));
    let shown = json(&e.vlx_vc(&["show", "demo", "--json"]));
    assert_eq!(blades_of(&shown), blades_of(&planned));
    assert_eq!(shown["desired"], "running");
    assert_eq!(shown["vms"][0]["mac"], planned["vms"][0]["mac"]);
    let mut keys = e.keys("/vlx/vc/demo/");
    keys.sort();
    assert_eq!(
        keys,
        [
            "/vlx/vc/demo/spec",
            "/vlx/vc/demo/state",
            "/vlx/vc/demo/vms",
        ]
    );
    let listed = json(&e.vlx_vc(&["list", "--json"]));
    assert_eq!(listed[0]["name"], "demo");

    // The same name again: bad input, and nothing changes.
    let before = e.etcdctl(&["get", "--prefix", "/vlx/"]).stdout;
    let o = e.vlx_vc(&["create", "--vc", DEMO]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("a VC named demo exists already"),
        "{}",
        stderr(&o)
    );
    assert_eq!(e.etcdctl(&["get", "--prefix", "/vlx/"]).stdout, before);
}

#[test]
fn strict_without_room_is_refused_and_leaves_no_key() {
    let e = EtcdServer::start();
    e.demo_cluster();
    // demo takes blade01 and blade02 whole (2 cores each).
    json(&e.vlx_vc(&["create", "--vc", DEMO, "--json"]));
    let o = e.vlx_vc(&[
        "create", "--name", "big", "--guest", "tiny", "--vms", "3", "--memory", "128MiB",
        "--strict",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("VC big does not fit: it has 3 VMs and the blades hold 2"),
        "{err}"
    );
    assert!(
        err.contains("blade blade01 ran short of cores (0 free, a VM needs 1)"),
        "{err}"
    );
    assert!(e.keys("/vlx/vc/big/").is_empty());
    assert_eq!(e.keys("/vlx/vcid/").len(), 1, "only demo's id");

    // Free overcommits cores: the same VC fits on memory.
    let o = e.vlx_vc(&[
        "create",
        "--name",
        "big",
        "--guest",
        "tiny",
        "--vms",
        "3",
        "--memory",
        "128MiB",
        "--free",
        "--placement",
        "cyclic",
        "--json",
    ]);
    assert_eq!(blades_of(&json(&o)), ["blade01", "blade02", "blade03"]);
}

#[test]
fn unknown_guest_is_bad_input() {
    let e = EtcdServer::start();
    e.demo_cluster();
    let o = e.vlx_vc(&["create", "--vc", DEMO, "--guest", "nosuch"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("unknown guest `nosuch` (imported guests: tiny)"),
        "{}",
        stderr(&o)
    );
    assert!(e.keys("/vlx/vc/").is_empty());
}

#[test]
fn destroy_of_a_running_vc_needs_force_and_leaves_no_key() {
    let e = EtcdServer::start();
    e.demo_cluster();
    json(&e.vlx_vc(&["create", "--vc", DEMO, "--json"]));
    let o = e.vlx_vc(&["destroy", "demo"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("VC demo is running: stop it first, or destroy it with --force"));
    assert_eq!(e.keys("/vlx/vc/demo/").len(), 3);

    json(&e.vlx_vc(&["stop", "demo", "--json"]));
    json(&e.vlx_vc(&["destroy", "demo", "--json"]));
    assert!(e.keys("/vlx/vc/").is_empty());
    assert!(e.keys("/vlx/vcid/").is_empty());
    assert!(e.keys("/vlx/status/").is_empty());

    // --force drops a running one.
    json(&e.vlx_vc(&["create", "--vc", DEMO, "--json"]));
    json(&e.vlx_vc(&["destroy", "demo", "--force", "--json"]));
    assert!(e.keys("/vlx/vc/").is_empty());

    let o = e.vlx_vc(&["show", "demo"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("there is no VC named demo"));
}

#[test]
fn restore_remaps_only_a_saved_vc() {
    let e = EtcdServer::start();
    e.demo_cluster();
    json(&e.vlx_vc(&["create", "--vc", DEMO, "--json"]));
    let o = e.vlx_vc(&["restore", "demo", "--placement", "cyclic"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("VC demo is running, not saved"),
        "{}",
        stderr(&o)
    );

    json(&e.vlx_vc(&["save", "demo", "--json"]));
    let o = e.vlx_vc(&["start", "demo"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));

    let r = json(&e.vlx_vc(&["restore", "demo", "--placement", "cyclic", "--json"]));
    assert_eq!(blades_of(&r), ["blade01", "blade02", "blade03", "blade01"]);
    let shown = json(&e.vlx_vc(&["show", "demo", "--json"]));
    assert_eq!(shown["desired"], "running");
    assert_eq!(shown["vc"]["placement"], "cyclic");
    assert_eq!(
        blades_of(&shown),
        ["blade01", "blade02", "blade03", "blade01"]
    );
}

#[test]
fn no_etcd_is_a_failure_not_bad_input() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_vlx-vc"))
        .args(["list", "--etcd", "http://127.0.0.1:9"])
        .output()
        .expect("running vlx-vc");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no etcd member answers"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn concurrent_creates_never_overcommit() {
    let e = EtcdServer::start();
    e.demo_cluster();
    // Each VC needs 4 of the 6 cores; only one can be placed.
    let run = |name: &'static str| {
        let url = e.url.clone();
        std::thread::spawn(move || {
            vlx_vc(&["create", "--vc", DEMO, "--name", name, "--etcd", &url])
        })
    };
    let (a, b) = (run("one"), run("two"));
    let mut codes = [
        a.join().expect("thread").status.code(),
        b.join().expect("thread").status.code(),
    ];
    codes.sort();
    assert_eq!(codes, [Some(0), Some(3)]);
    assert_eq!(e.keys("/vlx/vcid/").len(), 1);
}

#[test]
fn a_256_vm_vc_is_created_in_one_transaction() {
    let e = EtcdServer::start();
    e.demo_cluster();
    e.put("/vlx/blades/big", r#"{"cores":64,"memory":68719476736}"#);
    let c = json(&e.vlx_vc(&[
        "create", "--name", "wide", "--guest", "tiny", "--vms", "256", "--memory", "64MiB",
        "--free", "--json",
    ]));
    assert_eq!(c["vms"].as_array().map(Vec::len), Some(256));
    assert_eq!(
        e.keys("/vlx/vc/wide/"),
        [
            "/vlx/vc/wide/spec",
            "/vlx/vc/wide/state",
            "/vlx/vc/wide/vms"
        ]
    );
}

#[test]
fn console_prints_the_log_and_names_a_missing_vm() {
    let e = EtcdServer::start();
    e.demo_cluster();
    json(&e.vlx_vc(&["create", "--vc", DEMO, "--json"]));
    let shared = tempfile::tempdir().expect("tempdir");
    let dir = shared.path().join("vcs/demo/vm2");
    std::fs::create_dir_all(&dir).expect("vm dir");
    std::fs::write(dir.join("console.log"), "vlx-guest: ready demo/vm2\n").expect("log");
    let sh = shared.path().display().to_string();
    let o = e.vlx_vc(&["console", "demo/vm2", "--shared", &sh]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "vlx-guest: ready demo/vm2\n"
    );
    let o = e.vlx_vc(&["console", "demo/vm9", "--shared", &sh]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("VC demo has no vm9 (it has vm1 to vm4)"),
        "{}",
        stderr(&o)
    );
    let o = e.vlx_vc(&["console", "demo", "--shared", &sh]);
    assert_eq!(o.status.code(), Some(2));
}
