//! The master-less services live: three nodes of the demo cluster run the
//! tiny image's runtime (`overlays/tiny`: rcS, net-up, busybox, dnsmasq,
//! keepalived) from their rendered files, each in its own namespaces on one
//! bridge, and a client on the same segment asks them for what a blade
//! that boots from the network needs. Then the VIP holder dies.
//!
//! Needs root (namespaces, a loop device). Time is not namespaced, so the
//! containers may not set the clock: NTP is off here and chrony is tested
//! on its own with `-x` (live_chrony_*).
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns panic by design

mod nodes;

use std::time::Duration;

use cluster::plan::{Plan, Service};
use cluster::{MacAddr, Role};
use installer::render::{NodeOverlays, merge};
use nodes::lab::{Lab, wait_until};

/// The nodes that run; the fourth node's MAC is the client's.
const NODES: [&str; 3] = ["blade01", "blade02", "blade03"];
const READY: Duration = Duration::from_secs(90);

/// The demo plan, as the containers can run it: no NTP (the clock is the
/// host's), no swap (swap is not namespaced either), and a shared volume
/// label of this test's own, so that nothing else on the machine matches.
fn container_plan(label: &str) -> Plan {
    let mut plan = nodes::plan("demo.toml");
    plan.services.ntp = false;
    for n in &mut plan.nodes {
        n.swap = None;
        n.services.retain(|s| *s != Service::Ntp);
    }
    let shared = plan
        .disk
        .partitions
        .iter_mut()
        .find(|p| p.role == Role::Shared)
        .unwrap();
    shared.label = label.to_owned();
    plan
}

fn has_addr(lab: &Lab, host: &str, dev: &str, addr: &str) -> bool {
    let out = lab
        .cmd(host, "ip")
        .args(["-o", "addr", "show", "dev", dev])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains(&format!(" {addr}/"))
}

/// Runs busybox udhcpc on the client; returns `ip serverid` of the lease,
/// or None when nobody offered one.
fn lease(lab: &Lab, tag: &str) -> Option<String> {
    let out = lab.dir.path().join(format!("lease-{tag}"));
    let script = lab.dir.path().join("udhcpc.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n[ \"$1\" = bound ] && echo \"$ip $serverid\" > \"$LEASE_OUT\"\nexit 0\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let status = lab
        .cmd("client", "busybox")
        .args([
            "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "4", "-T", "2", "-s",
        ])
        .arg(&script)
        .env("LEASE_OUT", &out)
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&out).ok();
    assert_eq!(status.status.success(), text.is_some(), "{status:?}");
    text.map(|t| t.trim().to_owned())
}

fn set_mac(lab: &Lab, mac: &str) {
    for args in [
        vec!["link", "set", "eth0", "down"],
        vec!["link", "set", "eth0", "address", mac],
        vec!["link", "set", "eth0", "up"],
    ] {
        nodes::run_ok(lab.cmd("client", "ip").args(args));
    }
}

fn shared_mounted(lab: &Lab, host: &str) -> bool {
    lab.in_container(host, "grep -q '^[^ ]* /vlx/shared ' /proc/mounts")
        .0
}

#[test]
fn live_tiny_runtime_serves_the_cluster_from_every_node() {
    let mut lab = Lab::new("svc");
    let label = format!("vlxt{}-shared", std::process::id());
    let san = lab.shared_disk(&label);
    let plan = container_plan(&label);
    let overlays = NodeOverlays::load(&plan, &nodes::profiles_dir()).unwrap();
    let tiny = templating::Overlay::load(&nodes::overlays_dir().join("tiny"))
        .unwrap()
        .render(&serde_json::json!({}))
        .unwrap();

    let mut consoles = Vec::new();
    for name in NODES {
        let node = plan.node(name).unwrap();
        let mut files = overlays.render(&plan, node).unwrap();
        merge(&mut files, tiny.clone()).unwrap();
        let root = lab.stage(name, &files);
        let tftp = root.join("vlx/meta/tftp");
        std::fs::create_dir_all(&tftp).unwrap();
        std::fs::write(tftp.join("boot.ipxe"), "#!ipxe\necho vlx test\n").unwrap();
        lab.add_host(name, &node.macs[0].to_string());
        consoles.push(lab.start_container(name, &root, &san));
    }
    let blade04 = plan.node("blade04").unwrap();
    lab.add_host("client", &blade04.macs[0].to_string());
    nodes::run_ok(lab.cmd("client", "ip").args(["link", "set", "eth0", "up"]));

    // Each node says it is ready, with its own name, on its console.
    for (name, console) in NODES.iter().zip(&consoles) {
        let line = console.wait_for("vlx: services", READY);
        assert_eq!(
            line,
            format!("vlx: services ready {name}"),
            "{}",
            console.text()
        );
        let ip = plan.node(name).unwrap().ip.to_string();
        assert!(
            has_addr(&lab, name, "vlx0", &ip),
            "{name} has no {ip} on vlx0"
        );
        let (_, hostname) = lab.in_container(name, "hostname");
        assert_eq!(hostname.trim(), *name);
    }

    // The VIP sits on the node it starts on, and only there; that node
    // mounts the shared volume, found by its partition label.
    let vip = plan.network.vips[0].address.to_string();
    let took = wait_until(Duration::from_secs(30), || {
        has_addr(&lab, "blade01", "vlx0", &vip)
    });
    assert!(took.is_some(), "{vip} never came up on blade01");
    assert!(!has_addr(&lab, "blade02", "vlx0", &vip));
    assert!(!has_addr(&lab, "blade03", "vlx0", &vip));
    assert!(
        wait_until(Duration::from_secs(30), || shared_mounted(&lab, "blade01")).is_some(),
        "blade01 holds the VIP but did not mount the shared volume: {}",
        lab.in_container("blade01", "logread").1
    );
    assert!(!shared_mounted(&lab, "blade02"));
    let (_, log) = lab.in_container("blade01", "logread");
    assert!(
        log.contains("mounted but not exported"),
        "the tiny image has no NFS server, and the holder says so: {log}"
    );

    // DHCP: the client with blade04's MAC gets blade04's address; a MAC the
    // plan does not know gets nothing.
    let got = lease(&lab, "known").expect("no lease for blade04's MAC");
    let (ip, server) = got.split_once(' ').unwrap();
    assert_eq!(ip, blade04.ip.to_string());
    assert!(
        NODES
            .iter()
            .any(|n| plan.node(n).unwrap().ip.to_string() == server)
    );
    set_mac(&lab, "52:54:00:99:99:99");
    assert_eq!(lease(&lab, "unknown"), None, "an unknown MAC got a lease");
    set_mac(&lab, &blade04.macs[0].to_string());

    // Router advertisements: the client takes an address in the cluster's
    // ULA and no default route.
    let ula = installer::render::ula_prefix(plan.cluster.uuid);
    let prefix = ula.to_string().trim_end_matches("::").to_owned();
    let slaac = wait_until(Duration::from_secs(30), || {
        let out = lab
            .cmd("client", "ip")
            .args(["-6", "-o", "addr", "show", "dev", "eth0", "scope", "global"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains(&format!(" {prefix}:"))
    });
    assert!(
        slaac.is_some(),
        "no SLAAC address in {ula}/64 on the client"
    );
    let routes = nodes::run_ok(
        lab.cmd("client", "ip")
            .args(["-6", "route", "show", "default"]),
    );
    assert!(
        routes.stdout.is_empty(),
        "a node advertised itself as router"
    );

    // DNS, TFTP and HTTP from every node.
    nodes::run_ok(lab.cmd("client", "ip").args([
        "addr",
        "add",
        &format!("{}/24", blade04.ip),
        "dev",
        "eth0",
    ]));
    let script = lab.dir.path().join("fetched");
    for name in NODES {
        let server = plan.node(name).unwrap().ip.to_string();
        let out = nodes::run_ok(lab.cmd("client", "busybox").args([
            "nslookup",
            "blade02.demo.vlx.test",
            &server,
        ]));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("10.77.0.12"),
            "{name}"
        );
        let out = nodes::run_ok(
            lab.cmd("client", "busybox")
                .args(["nslookup", "vip1", &server]),
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&vip),
            "{name}"
        );
        let _ = std::fs::remove_file(&script);
        nodes::run_ok(
            lab.cmd("client", "busybox")
                .args(["tftp", "-g", "-r", "boot.ipxe", "-l"])
                .arg(&script)
                .arg(&server),
        );
        assert!(
            std::fs::read_to_string(&script)
                .unwrap()
                .starts_with("#!ipxe")
        );
        let _ = std::fs::remove_file(&script);
        nodes::run_ok(
            lab.cmd("client", "busybox")
                .args(["wget", "-q", "-O"])
                .arg(&script)
                .arg(format!("http://{server}/boot.ipxe")),
        );
        assert!(
            std::fs::read_to_string(&script)
                .unwrap()
                .starts_with("#!ipxe")
        );
    }
    nodes::run_ok(
        lab.cmd("client", "ip")
            .args(["addr", "flush", "dev", "eth0", "scope", "global"]),
    );

    // The VIP holder dies: the next node takes the VIP within 10 s (three
    // missed VRRP adverts, about 3.2 s, is the protocol's own delay), and
    // the shared volume with it. The others still hand out leases.
    lab.kill_container("blade01");
    let moved = wait_until(Duration::from_secs(10), || {
        has_addr(&lab, "blade02", "vlx0", &vip)
    });
    eprintln!("VIP moved to blade02 after {moved:?}");
    assert!(moved.is_some(), "{vip} did not move to blade02 within 10 s");
    assert!(!has_addr(&lab, "blade03", "vlx0", &vip));
    assert!(
        wait_until(Duration::from_secs(60), || shared_mounted(&lab, "blade02")).is_some(),
        "blade02 took the VIP but not the shared volume: {}",
        lab.in_container("blade02", "logread").1
    );
    let got = lease(&lab, "after").expect("no lease from the survivors");
    let (ip, server) = got.split_once(' ').unwrap();
    assert_eq!(ip, blade04.ip.to_string());
    assert_ne!(server, "10.77.0.11");
}

/// The same runtime with a MAC table that does not match: net-up says so
/// and rcS reports the failure instead of the ready line.
#[test]
fn live_tiny_runtime_reports_a_missing_nic() {
    let mut lab = Lab::new("nic");
    let plan = container_plan("vlxt-none");
    let overlays = NodeOverlays::load(&plan, &nodes::profiles_dir()).unwrap();
    let tiny = templating::Overlay::load(&nodes::overlays_dir().join("tiny"))
        .unwrap()
        .render(&serde_json::json!({}))
        .unwrap();
    let node = plan.node("blade01").unwrap();
    let mut files = overlays.render(&plan, node).unwrap();
    merge(&mut files, tiny).unwrap();
    let root = lab.stage("blade01", &files);
    let other: MacAddr = "52:54:00:aa:bb:cc".parse().unwrap();
    lab.add_host("blade01", &other.to_string());
    let console = lab.start_container("blade01", &root, &[]);
    let line = console.wait_for("vlx: services", READY);
    assert!(
        line.starts_with("vlx: services failed blade01: network"),
        "{line}"
    );
    assert!(
        console
            .text()
            .contains("no NIC has the MAC(s) 52:54:00:77:00:01")
    );
}
