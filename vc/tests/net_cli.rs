//! VC subnets through `vlx-vc` against a real etcd: chosen once at creation
//! (asked for, or from the pool recorded by `set-net`) in the creating
//! transaction, kept across a remap, shown as each VM's address; a subnet
//! that overlaps is bad input naming what it overlaps, and leaves nothing.
//! Needs `etcd` and `etcdctl` (Debian etcd-server, etcd-client).

mod common;

use std::path::Path;

use common::{EtcdServer, json, stderr};

const DEMO: &str = "profiles/vcs/demo.toml";
const CYC: &str = "profiles/vcs/rig-cyclic.toml";

/// The cluster network 10.0.0.0/16, storage at 10.0.0.5, VC subnets as /24
/// blocks of `pool`.
fn settings(dir: &Path, pool: &str) -> String {
    let path = dir.join("net.toml");
    std::fs::write(
        &path,
        format!(
            r#"domain = "cluster.test"
storage = "10.0.0.5"
shared_dir = "/srv/shared"
cluster_nets = [{{ name = "network.cidr", cidr = "10.0.0.0/16" }}]

[pool]
subnet_pool = "{pool}"
prefix = 24
"#
        ),
    )
    .expect("writing net.toml");
    path.display().to_string()
}

fn addresses(shown: &serde_json::Value) -> Vec<String> {
    shown["vms"]
        .as_array()
        .expect("vms")
        .iter()
        .map(|v| v["address"].as_str().expect("an address").to_owned())
        .collect()
}

#[test]
fn subnets_come_from_the_pool_and_stay_through_a_remap() {
    let e = EtcdServer::start();
    e.demo_cluster();
    let dir = tempfile::tempdir().expect("tempdir");
    json(&e.vlx_vc(&["set-net", &settings(dir.path(), "10.200.0.0/16"), "--json"]));

    let created = json(&e.vlx_vc(&["create", "--vc", DEMO, "--json"]));
    assert_eq!(created["net"]["subnet"], "10.200.0.0/24");
    let created = json(&e.vlx_vc(&["create", "--vc", CYC, "--json"]));
    assert_eq!(created["net"]["subnet"], "10.200.1.0/24");
    let mut keys = e.keys("/vlx/vc/demo/");
    keys.sort();
    assert_eq!(
        keys,
        [
            "/vlx/vc/demo/net",
            "/vlx/vc/demo/spec",
            "/vlx/vc/demo/state",
            "/vlx/vc/demo/vms",
        ]
    );

    let shown = json(&e.vlx_vc(&["show", "demo", "--json"]));
    let want = ["10.200.0.2", "10.200.0.3", "10.200.0.4", "10.200.0.5"];
    assert_eq!(addresses(&shown), want);
    let o = e.vlx_vc(&["show", "demo"]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(text.contains("subnet 10.200.0.0/24"), "{text}");
    let vm4 = text
        .lines()
        .find(|l| l.starts_with("vm4 "))
        .unwrap_or_else(|| panic!("no vm4 line in:\n{text}"));
    assert!(vm4.ends_with(" 10.200.0.5"), "{vm4}");

    // A remap moves the VMs, not their addresses.
    json(&e.vlx_vc(&["save", "demo", "--json"]));
    json(&e.vlx_vc(&[
        "restore",
        "demo",
        "--placement",
        "cyclic",
        "--free",
        "--json",
    ]));
    let shown = json(&e.vlx_vc(&["show", "demo", "--json"]));
    assert_eq!(shown["net"]["subnet"], "10.200.0.0/24");
    assert_eq!(addresses(&shown), want);

    // destroy drops the subnet with the VC: the pool gives it out again.
    json(&e.vlx_vc(&["destroy", "demo", "--force", "--json"]));
    assert!(e.keys("/vlx/vc/demo/").is_empty());
    let created = json(&e.vlx_vc(&[
        "create", "--vc", DEMO, "--name", "again", "--free", "--json",
    ]));
    assert_eq!(created["net"]["subnet"], "10.200.0.0/24");
}

/// The `/etc/vlx/vc-net.toml` the installer renders on the first blade of
/// `profiles/clusters/PROFILE`, written into `dir`.
fn rendered_settings(dir: &Path, profile: &str) -> String {
    let profiles = common::repo().join("profiles/clusters");
    let plan = installer::prepare::plan_profile(&profiles.join(profile), Default::default())
        .unwrap_or_else(|e| panic!("{profile}: {e}"))
        .plan;
    let overlays = installer::render::NodeOverlays::load(&plan, &profiles).expect("overlays");
    let entries = overlays.render(&plan, &plan.nodes[0]).expect("rendering");
    let e = entries
        .iter()
        .find(|e| e.path == Path::new("etc/vlx/vc-net.toml"))
        .expect("no etc/vlx/vc-net.toml among the rendered files");
    let templating::Kind::File(bytes) = &e.kind else {
        panic!("etc/vlx/vc-net.toml is not a file");
    };
    let path = dir.join("vc-net.toml");
    std::fs::write(&path, bytes).expect("writing vc-net.toml");
    path.display().to_string()
}

/// The settings the installer renders from a cluster profile's `[vc]`
/// table are what `set-net` records: VC subnets come from the profile's
/// pool, and the cluster's network is refused to a VC.
#[test]
fn the_installers_rendering_of_the_profiles_vc_pool_is_what_set_net_reads() {
    let e = EtcdServer::start();
    e.demo_cluster();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = rendered_settings(dir.path(), "rack-64.toml");
    let set = json(&e.vlx_vc(&["set-net", &file, "--json"]));
    assert_eq!(set["pool"]["subnet_pool"], "10.200.0.0/16", "{set}");
    assert_eq!(set["domain"], "rack.vlx.test");
    assert_eq!(set["storage"], "10.80.3.250");
    assert_eq!(set["shared_dir"], "/vlx/shared");
    assert_eq!(set["blades"].as_array().map(Vec::len), Some(64));
    let created = json(&e.vlx_vc(&["create", "--vc", DEMO, "--json"]));
    assert_eq!(created["net"]["subnet"], "10.200.0.0/24");
    refused(
        &e,
        &["create", "--vc", CYC, "--subnet", "10.80.1.0/24"],
        "cyc",
        "subnet 10.80.1.0/24 of VC cyc overlaps the cluster network network.cidr (10.80.0.0/22)",
    );
}

/// Runs a create that must be bad input, and checks it left no key.
fn refused(e: &EtcdServer, args: &[&str], vc: &str, reason: &str) {
    let before = e.etcdctl(&["get", "--prefix", "/vlx/"]).stdout;
    let o = e.vlx_vc(args);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(reason),
        "want `{reason}` in: {}",
        stderr(&o)
    );
    assert!(e.keys(&format!("/vlx/vc/{vc}/")).is_empty());
    assert_eq!(e.etcdctl(&["get", "--prefix", "/vlx/"]).stdout, before);
}

#[test]
fn a_subnet_that_overlaps_or_is_too_small_is_bad_input() {
    let e = EtcdServer::start();
    e.demo_cluster();
    let dir = tempfile::tempdir().expect("tempdir");
    json(&e.vlx_vc(&["set-net", &settings(dir.path(), "10.200.0.0/16"), "--json"]));
    refused(
        &e,
        &["create", "--vc", DEMO, "--subnet", "10.0.7.0/24"],
        "demo",
        "subnet 10.0.7.0/24 of VC demo overlaps the cluster network network.cidr (10.0.0.0/16)",
    );
    refused(
        &e,
        &["create", "--vc", DEMO, "--subnet", "8.8.8.0/24"],
        "demo",
        "subnet 8.8.8.0/24 of VC demo is not private",
    );
    refused(
        &e,
        &["create", "--vc", DEMO, "--subnet", "10.201.0.0/30"],
        "demo",
        "VC demo asks for 4 addresses but its subnet 10.201.0.0/30 holds 1 VMs",
    );
    let created = json(&e.vlx_vc(&[
        "create",
        "--vc",
        DEMO,
        "--subnet",
        "192.168.40.0/24",
        "--json",
    ]));
    assert_eq!(created["net"]["subnet"], "192.168.40.0/24");
    assert_eq!(created["net"]["outside"], false);
    refused(
        &e,
        &["create", "--vc", CYC, "--subnet", "192.168.40.128/25"],
        "cyc",
        "subnet 192.168.40.128/25 of VC cyc overlaps VC demo (192.168.40.0/24)",
    );
    // A cluster network laid over a VC's subnet afterwards is refused too.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "domain = \"cluster.test\"\nstorage = \"10.0.0.5\"\nshared_dir = \"/srv/shared\"\n\
         cluster_nets = [{ name = \"network.extra.lab\", cidr = \"192.168.0.0/16\" }]\n",
    )
    .expect("writing bad.toml");
    let o = e.vlx_vc(&["set-net", &bad.display().to_string()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "cluster network network.extra.lab (192.168.0.0/16) overlaps the subnet 192.168.40.0/24 of VC demo"
        ),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_exhausted_pool_is_bad_input() {
    let e = EtcdServer::start();
    e.demo_cluster();
    let dir = tempfile::tempdir().expect("tempdir");
    json(&e.vlx_vc(&["set-net", &settings(dir.path(), "10.200.0.0/24"), "--json"]));
    json(&e.vlx_vc(&["create", "--vc", DEMO, "--json"]));
    refused(
        &e,
        &["create", "--vc", CYC],
        "cyc",
        "the VC subnet pool 10.200.0.0/24 is exhausted",
    );
    // A subnet given outside the pool still works.
    let created = json(&e.vlx_vc(&[
        "create",
        "--vc",
        CYC,
        "--subnet",
        "10.201.0.0/28",
        "--outside",
        "--json",
    ]));
    assert_eq!(created["net"]["subnet"], "10.201.0.0/28");
    assert_eq!(created["net"]["outside"], true);
}

#[test]
fn bad_settings_are_bad_input() {
    let e = EtcdServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let o = e.vlx_vc(&["set-net", &settings(dir.path(), "100.64.0.0/16")]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("subnet_pool = \"100.64.0.0/16\": it is not inside 10.0.0.0/8"),
        "{}",
        stderr(&o)
    );
    assert!(e.keys("/vlx/net").is_empty());
    // Without a pool, a VC that asks for outside access needs a subnet.
    e.demo_cluster();
    let o = e.vlx_vc(&["create", "--vc", DEMO, "--outside"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("VC demo: outside access needs a network: give --subnet"),
        "{}",
        stderr(&o)
    );
    assert!(e.keys("/vlx/vc/").is_empty());
}

/// `vlx-vcd` reads its settings file before anything else: one that does
/// not read is bad input (exit 2) naming the file and the key, and the
/// agent never starts (nothing is registered).
#[test]
fn vlx_vcd_refuses_a_settings_file_that_does_not_read() {
    let e = EtcdServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("vc-net.toml");
    let text = std::fs::read_to_string(settings(dir.path(), "10.200.0.0/16"))
        .expect("reading net.toml")
        .replace("prefix = 24", "prefx = 24");
    std::fs::write(&file, text).expect("writing vc-net.toml");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_vlx-vcd"))
        .args([
            "--blade", "blade01", "--cores", "1", "--memory", "1GiB", "--etcd", &e.url,
        ])
        .arg("--shared")
        .arg(dir.path())
        .arg("--run")
        .arg(dir.path().join("run"))
        .arg("--net-settings")
        .arg(&file)
        .output()
        .expect("running vlx-vcd");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let said = stderr(&o);
    assert!(
        said.contains(&file.display().to_string()) && said.contains("prefx"),
        "{said}"
    );
    assert!(e.keys("/vlx/").is_empty(), "{:?}", e.keys("/vlx/"));
}
