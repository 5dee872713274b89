//! `vlx-vcd` puts its blade's part of a VC network in place: in a network
//! namespace of its own (with etcd inside it), a 1-VM VC with a subnet gets
//! its tap with the VC's gateway, nftables, the VC dnsmasq, and a QEMU VM
//! (TCG, the tiny guest) that takes its fixed address by DHCP and answers a
//! ping. Needs root (`ip netns`), etcd, QEMU, dnsmasq, nft.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{EtcdServer, Ns, in_ns, json, stderr, wait_for};

/// A tiny guest's boot under TCG on a loaded 2-core machine, and its DHCP.
const BOOT_WAIT: Duration = Duration::from_secs(600);

/// A child process, killed and reaped on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn settings(dir: &Path) -> String {
    let path = dir.join("net.toml");
    std::fs::write(
        &path,
        r#"domain = "cluster.test"
storage = "10.0.1.250"
shared_dir = "/srv/shared"
cluster_nets = [{ name = "network.cidr", cidr = "10.0.1.0/24" }]
blades = [{ name = "blade01", addr = "10.0.1.1" }]

[pool]
subnet_pool = "10.200.0.0/16"
prefix = 24
"#,
    )
    .expect("writing net.toml");
    path.display().to_string()
}

#[test]
fn a_vm_takes_its_address_by_dhcp_on_its_tap_and_answers_a_ping() {
    let ns = Ns::create("vcnet");
    let e = EtcdServer::start_in(Some(&ns.0));
    let dir = tempfile::tempdir().expect("tempdir");
    let _reaper = common::Reaper(dir.path().to_owned());
    let (shared, run, root) = (
        dir.path().join("shared"),
        dir.path().join("run"),
        dir.path().join("root"),
    );
    e.import_tiny(dir.path(), &shared);
    json(&e.vlx_vc(&["set-net", &settings(dir.path()), "--json"]));

    let log = dir.path().join("vcd.log");
    let f = std::fs::File::create(&log).expect("agent log");
    let _agent = Reaped(
        in_ns(Some(&ns.0), env!("CARGO_BIN_EXE_vlx-vcd"))
            .args([
                "--blade", "blade01", "--cores", "2", "--memory", "1GiB", "--ttl", "5",
            ])
            .arg("--shared")
            .arg(&shared)
            .arg("--run")
            .arg(&run)
            .arg("--net-root")
            .arg(&root)
            // Nothing of the host's: no settings file to record, no
            // cluster dnsmasq to reload.
            .arg("--net-settings")
            .arg(root.join("no-vc-net.toml"))
            .arg("--cluster-dnsmasq-pid")
            .arg(root.join("no-dnsmasq.pid"))
            .args(["--etcd", &e.url])
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .expect("starting vlx-vcd"),
    );
    let console = shared.join("vcs/t/vm1/console.log");
    let logs = || {
        format!(
            "--- agent:\n{}\n--- vm1 console:\n{}\n--- dnsmasq:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default(),
            std::fs::read_to_string(&console).unwrap_or_default(),
            std::fs::read_to_string(run.join("vc-dnsmasq.log")).unwrap_or_default()
        )
    };
    wait_for(
        "blade01 registered",
        BOOT_WAIT,
        || (!e.keys("/vlx/blades/blade01").is_empty()).then_some(()),
        &logs,
    );
    let created = json(&e.vlx_vc(&[
        "create", "--name", "t", "--guest", "tiny", "--vms", "1", "--memory", "128MiB", "--json",
    ]));
    assert_eq!(created["net"]["subnet"], "10.200.0.0/24");
    let mac = created["vms"][0]["mac"].as_str().expect("mac").to_owned();
    let tap = format!("vx{}", mac.replace(':', ""));

    wait_for(
        "vm1 reports its DHCP address on the console",
        BOOT_WAIT,
        || {
            std::fs::read_to_string(&console)
                .ok()
                .filter(|c| c.contains("vlx-guest: address vm1 10.200.0.2"))
                .map(drop)
        },
        &logs,
    );
    let addr = ns.ip(&["-4", "addr", "show", "dev", &tap]);
    assert!(addr.contains("inet 10.200.0.1/24"), "{addr}");
    let route = ns.ip(&["route", "get", "10.200.0.2"]);
    assert!(route.contains(&format!("dev {tap}")), "{route}");
    let nft = in_ns(Some(&ns.0), "nft")
        .args(["list", "table", "inet", "vlx_vc"])
        .output()
        .expect("running nft");
    assert!(nft.status.success(), "{}", stderr(&nft));
    let conf = std::fs::read_to_string(root.join("etc/vlx/vc-dnsmasq.conf")).expect("conf");
    assert!(
        conf.contains(&format!("dhcp-host={mac},10.200.0.2,vm1")),
        "{conf}"
    );
    let ping = in_ns(Some(&ns.0), "ping")
        .args(["-c", "3", "-W", "10", "10.200.0.2"])
        .output()
        .expect("running ping");
    assert!(
        ping.status.success(),
        "ping 10.200.0.2: {}{}\n{}",
        String::from_utf8_lossy(&ping.stdout),
        stderr(&ping),
        logs()
    );
    let shown = json(&e.vlx_vc(&["show", "t", "--json"]));
    assert_eq!(shown["vms"][0]["address"], "10.200.0.2");
}
