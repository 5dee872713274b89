//! `vlx-vcd` and the cluster's settings file (`/etc/vlx/vc-net.toml`, the
//! installer's rendering): at its start it records the file as `/vlx/net`
//! only when nobody has (a `set-net` by hand stays); when the file changes
//! later (a change of the cluster), the new text replaces `/vlx/net`; a
//! file that turns bad is reported and changes nothing, and the agent goes
//! on. In a network namespace of its own (the agent applies the VC
//! networks of its blade there), with etcd inside it. Needs root, etcd.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{EtcdServer, Ns, in_ns, json, wait_for};

/// Etcd and the agent's first rounds on a loaded machine (a wait, not a
/// speed check).
const WAIT: Duration = Duration::from_secs(120);

/// A child process, killed and reaped on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Settings for the cluster `domain` with the blades named.
fn write_settings(path: &Path, domain: &str, blades: &[&str]) {
    let list: Vec<String> = blades
        .iter()
        .enumerate()
        .map(|(i, b)| format!("{{ name = \"{b}\", addr = \"10.0.1.{}\" }}", i + 1))
        .collect();
    std::fs::write(
        path,
        format!(
            "domain = \"{domain}\"\nstorage = \"10.0.1.250\"\nshared_dir = \"/srv/shared\"\n\
             cluster_nets = [{{ name = \"network.cidr\", cidr = \"10.0.1.0/24\" }}]\n\
             blades = [{}]\n\n[pool]\nsubnet_pool = \"10.200.0.0/16\"\nprefix = 24\n",
            list.join(", ")
        ),
    )
    .expect("writing settings");
}

fn recorded(e: &EtcdServer) -> Option<serde_json::Value> {
    let o = e.etcdctl(&["get", "/vlx/net", "--print-value-only"]);
    if !o.status.success() || o.stdout.is_empty() {
        return None;
    }
    serde_json::from_slice(&o.stdout).ok()
}

#[test]
fn vlx_vcd_records_its_settings_file_when_absent_and_again_when_it_changes() {
    let ns = Ns::create("vcset");
    let e = EtcdServer::start_in(Some(&ns.0));
    let dir = tempfile::tempdir().expect("tempdir");

    // An admin's settings first: the agent's file does not replace them.
    let by_hand = dir.path().join("by-hand.toml");
    write_settings(&by_hand, "by-hand.test", &["blade01"]);
    json(&e.vlx_vc(&["set-net", &by_hand.display().to_string(), "--json"]));
    let file = dir.path().join("vc-net.toml");
    write_settings(&file, "cluster.test", &["blade01"]);

    let log = dir.path().join("vcd.log");
    let f = std::fs::File::create(&log).expect("agent log");
    let root = dir.path().join("root");
    let _agent = Reaped(
        in_ns(Some(&ns.0), env!("CARGO_BIN_EXE_vlx-vcd"))
            .args([
                "--blade", "blade01", "--cores", "1", "--memory", "1GiB", "--ttl", "5",
            ])
            .arg("--shared")
            .arg(dir.path().join("shared"))
            .arg("--run")
            .arg(dir.path().join("run"))
            .arg("--net-root")
            .arg(&root)
            .arg("--net-settings")
            .arg(&file)
            .arg("--cluster-dnsmasq-pid")
            .arg(root.join("no-dnsmasq.pid"))
            .args(["--etcd", &e.url])
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .expect("starting vlx-vcd"),
    );
    let said = || std::fs::read_to_string(&log).unwrap_or_default();
    // The settings are read before the blade registers, in every round.
    wait_for(
        "blade01 registered",
        WAIT,
        || {
            e.keys("/vlx/blades/")
                .contains(&"/vlx/blades/blade01".to_owned())
                .then_some(())
        },
        &said,
    );
    let net = recorded(&e).expect("/vlx/net");
    assert_eq!(net["domain"], "by-hand.test", "{}", said());

    // The file changes (a blade added to the cluster): it is recorded.
    write_settings(&file, "cluster.test", &["blade01", "blade02"]);
    let net = wait_for(
        "the changed file recorded",
        WAIT,
        || recorded(&e).filter(|n| n["domain"] == "cluster.test"),
        &said,
    );
    assert_eq!(net["blades"].as_array().map(Vec::len), Some(2), "{net}");
    assert!(
        said().contains("changed: recorded as /vlx/net"),
        "{}",
        said()
    );

    // A file that turns bad is said, and changes nothing.
    std::fs::write(&file, "domain = \"cluster.test\"\nstorage = 7\n").expect("writing");
    wait_for(
        "the bad file reported",
        WAIT,
        || {
            said()
                .contains(&format!("{}:", file.display()))
                .then_some(())
        },
        &said,
    );
    assert_eq!(recorded(&e), Some(net), "{}", said());
}
