//! chrony from the rendered configs, live: three nodes of the demo cluster
//! peer in orphan mode on one bridge, and agree on one leader (the node
//! with the smallest reference ID, its address) while the others follow
//! it at the next stratum. chronyd runs with `-x`: time is not namespaced,
//! and the machine's clock is not ours to steer.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns panic by design

mod nodes;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use nodes::lab::{Lab, wait_until};

const NODES: [&str; 3] = ["blade01", "blade02", "blade03"];

/// `chronyc -c` (CSV) output of `what` from `host`'s chronyd.
fn chronyc(lab: &Lab, host: &str, socket: &PathBuf, what: &str) -> Vec<Vec<String>> {
    let out = lab
        .cmd(host, "chronyc")
        .arg("-h")
        .arg(socket)
        .args(["-n", "-c", what])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect()
}

#[test]
fn live_chrony_nodes_peer_and_follow_one_orphan_leader() {
    let mut lab = Lab::new("ntp");
    let plan = nodes::plan("demo.toml");
    let roots = nodes::write_all(&plan, &lab.dir.path().join("nodes"));
    let mut sockets = Vec::new();
    for (name, root) in roots.iter().filter(|(n, _)| NODES.contains(&n.as_str())) {
        let node = plan.node(name).unwrap();
        lab.add_host(name, &node.macs[0].to_string());
        nodes::run_ok(lab.cmd(name, "ip").args(["link", "set", "eth0", "up"]));
        nodes::run_ok(lab.cmd(name, "ip").args([
            "addr",
            "add",
            &format!("{}/24", node.ip),
            "dev",
            "eth0",
        ]));
        // The rendered config as it is, then this test's own paths: chronyd
        // wants its socket folder private, and runs as root here.
        let run = lab.dir.path().join(format!("run-{name}"));
        std::fs::create_dir(&run).unwrap();
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
        let wrapper = run.join("chrony.conf");
        std::fs::write(
            &wrapper,
            format!(
                "include {conf}\nuser root\npidfile {run}/chronyd.pid\nbindcmdaddress {run}/chronyd.sock\ndriftfile {run}/drift\n",
                conf = root.join("etc/chrony/chrony.conf").display(),
                run = run.display(),
            ),
        )
        .unwrap();
        let mut chronyd = lab.cmd(name, "chronyd");
        chronyd.args(["-x", "-d", "-f"]).arg(&wrapper);
        lab.spawn(chronyd, name);
        sockets.push((name.clone(), run.join("chronyd.sock")));
    }

    let leader = plan.node("blade01").unwrap().ip;
    let leader_id = format!("{:08X}", u32::from(leader));
    let agreed = wait_until(Duration::from_secs(240), || {
        sockets.iter().all(|(name, sock)| {
            let t = chronyc(&lab, name, sock, "tracking");
            let Some(row) = t.first() else { return false };
            if name == "blade01" {
                // The leader serves its own clock: the local reference.
                row[0] == "7F7F0101" && row[2] == "10"
            } else {
                row[0] == leader_id && row[2] == "11"
            }
        })
    });
    let report: Vec<_> = sockets
        .iter()
        .map(|(n, s)| {
            (
                n.clone(),
                chronyc(&lab, n, s, "tracking"),
                chronyc(&lab, n, s, "sources"),
            )
        })
        .collect();
    assert!(agreed.is_some(), "no agreement on one leader: {report:#?}");
    eprintln!("one leader after {agreed:?}");
    // Every node peers (mode `=`) with every other node of the plan; the
    // two that run answer (reach is not 0), blade04, which is not running,
    // does not.
    for (name, _, sources) in &report {
        let peers: Vec<&Vec<String>> = sources.iter().filter(|r| r[0] == "=").collect();
        assert_eq!(peers.len(), plan.nodes.len() - 1, "{name}: {sources:?}");
        for n in plan.nodes.iter().filter(|n| n.name.as_str() != name) {
            let row = peers.iter().find(|r| r[2] == n.ip.to_string()).unwrap();
            let running = NODES.contains(&n.name.as_str());
            assert_eq!(row[5] != "0", running, "{name} -> {}: {row:?}", n.name);
        }
    }
}
