//! Names of virtual clusters' VMs on a blade, live: blade01 of the demo
//! cluster runs the tiny image's runtime from its rendered files (its
//! cluster dnsmasq included) in namespaces of its own, with the VC hosts
//! file `vlx-vcd` writes (`vc_net::apply::write_files`) and a VM's tap
//! beside its cluster NIC. The cluster dnsmasq answers `VM.VC.DOMAIN` on
//! the blade, reads the file again on SIGHUP, and does not listen on the
//! tap: the VM behind it finds no DNS of the cluster there.
//!
//! Needs root (namespaces). No timed assertions: waits have generous
//! limits.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns panic by design

mod nodes;

use std::time::Duration;

use cluster::plan::Service;
use installer::render::{NodeOverlays, merge};
use nodes::lab::{Lab, wait_until};
use vc_net::{Blade, NamedNet, NetInput, NetPlan, VcInput, VmInput};

const READY: Duration = Duration::from_secs(90);

/// VC `demo` with two VMs, vm1 on blade01 and vm2 on blade02; `extra`
/// adds a third, vm3.
fn vc_plan(plan: &cluster::Plan, extra: bool) -> NetPlan {
    let mut vms = vec![
        VmInput {
            name: "vm1".into(),
            mac: "02:76:00:0a:00:01".parse().unwrap(),
            blade: "blade01".into(),
        },
        VmInput {
            name: "vm2".into(),
            mac: "02:76:00:0a:00:02".parse().unwrap(),
            blade: "blade02".into(),
        },
    ];
    if extra {
        vms.push(VmInput {
            name: "vm3".into(),
            mac: "02:76:00:0a:00:03".parse().unwrap(),
            blade: "blade02".into(),
        });
    }
    NetPlan::new(&NetInput {
        domain: plan.cluster.domain.clone(),
        cluster_nets: vec![NamedNet {
            name: "network.cidr".into(),
            cidr: plan.network.cidr,
        }],
        storage: plan.network.vips[0].address,
        shared_dir: "/vlx/shared".into(),
        upstream_dns: Vec::new(),
        blades: plan
            .nodes
            .iter()
            .map(|n| Blade {
                name: n.name.to_string(),
                addr: n.ip,
            })
            .collect(),
        vcs: vec![VcInput {
            name: "demo".into(),
            subnet: "10.200.0.0/24".parse().unwrap(),
            outside: false,
            vms,
        }],
    })
    .unwrap()
}

/// The address busybox nslookup found for `name`, from its success and
/// output; `None` when it found none.
fn lookup(out: (bool, String), name: &str) -> Option<String> {
    let (ok, text) = out;
    if !ok {
        return None;
    }
    // busybox prints the server first, then `Name: ...` / `Address: ...`.
    let after = text.split_once(&format!("Name:\t{name}"))?.1;
    after
        .lines()
        .find_map(|l| l.strip_prefix("Address: "))
        .map(|a| a.trim().to_owned())
}

#[test]
fn live_cluster_dnsmasq_serves_vc_names_and_keeps_off_the_taps() {
    let mut lab = Lab::new("vcn");
    let mut plan = nodes::plan("demo.toml");
    // One blade alone: no time service (the clock is the host's), no swap,
    // no VIP or shared volume (nobody to share with).
    plan.services.ntp = false;
    plan.services.vip = false;
    plan.services.shared = false;
    for n in &mut plan.nodes {
        n.swap = None;
        n.services
            .retain(|s| !matches!(s, Service::Ntp | Service::Vrrp | Service::Nfs));
    }
    let overlays = NodeOverlays::load(&plan, &nodes::profiles_dir()).unwrap();
    let tiny = templating::Overlay::load(&nodes::overlays_dir().join("tiny"))
        .unwrap()
        .render(&serde_json::json!({}))
        .unwrap();
    let node = plan.node("blade01").unwrap();
    let mut files = overlays.render(&plan, node).unwrap();
    merge(&mut files, tiny).unwrap();

    // What the cluster dnsmasq is told to read is what vlx-vcd writes.
    let conf = nodes::text(&files, "etc/dnsmasq.conf").to_owned();
    assert!(
        conf.lines()
            .any(|l| l == format!("addn-hosts=/{}", vc_net::apply::HOSTS)),
        "{conf}"
    );
    let root = lab.stage("blade01", &files);
    // The boot tree httpd serves (on the meta volume on a real blade).
    std::fs::create_dir_all(root.join("vlx/meta/tftp")).unwrap();
    let vcs = vc_plan(&plan, false);
    let changed = vc_net::apply::write_files(&root, &vcs, &vcs.blade("blade01").unwrap()).unwrap();
    assert!(changed.contains(&root.join(vc_net::apply::HOSTS)));

    lab.add_host("blade01", &node.macs[0].to_string());
    // vm1's tap on the blade, its NIC in a namespace of its own.
    let blade_ns = lab.ns("blade01");
    let vm = vcs.vm("demo", "vm1").unwrap().clone();
    let vm_ns = lab.add_host("vm1", "02:76:00:0a:00:01");
    let gw = format!("{}/24", vcs.vcs[0].gateway);
    for args in [
        vec!["link", "set", "eth0", "down"],
        vec![
            "link", "add", "eth1", "type", "veth", "peer", "name", &vm.tap, "netns", &blade_ns,
        ],
        vec!["addr", "add", "10.200.0.2/24", "dev", "eth1"],
        vec!["link", "set", "eth1", "up"],
    ] {
        nodes::run_ok(
            std::process::Command::new("ip")
                .arg("-n")
                .arg(&vm_ns)
                .args(args),
        );
    }
    for args in [
        vec!["addr", "add", &gw, "dev", &vm.tap],
        vec!["link", "set", &vm.tap, "up"],
    ] {
        nodes::run_ok(
            std::process::Command::new("ip")
                .arg("-n")
                .arg(&blade_ns)
                .args(args),
        );
    }
    let console = lab.start_container("blade01", &root, &[]);
    let line = console.wait_for("vlx: services", READY);
    assert_eq!(line, "vlx: services ready blade01", "{}", console.text());

    // On the blade: every VM's name, from the file.
    let me = node.ip.to_string();
    let on_blade = |name: &str| {
        lookup(
            lab.in_container("blade01", &format!("nslookup {name} {me}")),
            name,
        )
    };
    let domain = &plan.cluster.domain;
    let vm2 = format!("vm2.demo.{domain}");
    let mut got = None;
    wait_until(Duration::from_secs(60), || {
        got = on_blade(&vm2);
        got.is_some()
    });
    assert_eq!(
        got.as_deref(),
        Some("10.200.0.3"),
        "{}",
        lab.in_container("blade01", &format!("nslookup {vm2} {me}; logread"))
            .1
    );

    // A VM added: the file is written again, and dnsmasq reads it on SIGHUP
    // (the pid file the tiny image's dnsmasq writes, one of vlx-vcd's
    // defaults).
    let vm3 = format!("vm3.demo.{domain}");
    assert_eq!(on_blade(&vm3), None, "vm3 resolves before it exists");
    let more = vc_plan(&plan, true);
    let hosts = vc_net::render::hosts(&more);
    assert!(hosts.contains(&vm3), "{hosts}");
    let (ok, said) = lab.in_container(
        "blade01",
        &format!(
            "printf '%s' '{hosts}' > /{h}.new && mv /{h}.new /{h} && kill -HUP $(cat /run/dnsmasq.pid)",
            h = vc_net::apply::HOSTS
        ),
    );
    assert!(ok, "{said}");
    let mut got = None;
    wait_until(Duration::from_secs(60), || {
        got = on_blade(&vm3);
        got.is_some()
    });
    assert_eq!(got.as_deref(), Some("10.200.0.4"));

    // From the VM: the tap's address (its gateway) has no cluster DNS on
    // it, while the blade's own address still answers through the tap.
    let from_vm = |server: &str| {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &vm_ns, "busybox", "nslookup", &vm2, server])
            .output()
            .unwrap();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    };
    let (ok, said) = from_vm(&vcs.vcs[0].gateway.to_string());
    assert!(!ok, "the cluster dnsmasq answered on the tap: {said}");
    assert!(
        said.contains("connection refused") || said.contains("no servers could be reached"),
        "{said}"
    );
    let listening = nodes::run_ok(
        std::process::Command::new("ip")
            .args(["netns", "exec", &blade_ns, "ss", "-Hlnu", "sport", "= :53"]),
    );
    let listening = String::from_utf8_lossy(&listening.stdout).into_owned();
    assert!(listening.contains(&format!("{me}:53")), "{listening}");
    assert!(!listening.contains("10.200.0.1:53"), "{listening}");
    assert!(!listening.contains("0.0.0.0:53"), "{listening}");
}
