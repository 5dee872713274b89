//! Rendered node files, judged by the daemons that will read them
//! (`dnsmasq --test`, `keepalived -t`, `chronyd -p`, `ssh-keygen`, `sh -n`).
//! Tests that need a network namespace start with `live_`.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns panic by design

mod nodes;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use installer::render::{NodeOverlays, host_keys, merge};
use nodes::{PROFILES, plan, render_all, run_ok, text, write_all};
use templating::Kind;

#[test]
fn dnsmasq_test_accepts_every_rendered_config() {
    for profile in PROFILES {
        let plan = plan(profile);
        let dir = tempfile::tempdir().unwrap();
        for (name, root) in write_all(&plan, dir.path()) {
            let conf = root.join("etc/dnsmasq.conf");
            let out = run_ok(Command::new("dnsmasq").arg("--test").arg("-C").arg(&conf));
            let said = String::from_utf8_lossy(&out.stderr);
            assert!(said.contains("syntax check OK"), "{profile} {name}: {said}");
        }
    }
}

#[test]
fn chronyd_p_accepts_every_rendered_config() {
    for profile in PROFILES {
        let plan = plan(profile);
        let dir = tempfile::tempdir().unwrap();
        for (name, root) in write_all(&plan, dir.path()) {
            let conf = root.join("etc/chrony/chrony.conf");
            let out = run_ok(Command::new("chronyd").arg("-p").arg("-f").arg(&conf));
            // chronyd -p prints the directives it parsed: every source must
            // be among them.
            let printed = String::from_utf8_lossy(&out.stdout);
            let sources = printed
                .lines()
                .filter(|l| l.starts_with("peer ") || l.starts_with("server "))
                .count();
            let (n, core) = (plan.nodes.len(), installer::render::NTP_CORE);
            let ok = if n <= core {
                sources == n - 1
            } else {
                sources == core - 1 || sources == core
            };
            assert!(ok, "{profile} {name}: {sources} sources among {n} nodes");
            assert!(printed.contains("local stratum 10 orphan"), "{printed}");
        }
    }
}

/// keepalived checks that the interface it is told about exists, so each
/// check runs in a fresh network namespace (`unshare -n`) that has a `vlx0`.
#[test]
fn live_keepalived_t_accepts_every_rendered_config() {
    for profile in PROFILES {
        let plan = plan(profile);
        let dir = tempfile::tempdir().unwrap();
        let roots = write_all(&plan, dir.path());
        let mut script = String::from(
            "set -e\nip link add vlx0 type veth peer name vlx0-peer\nip link set vlx0 up\n",
        );
        for (_, root) in &roots {
            script.push_str(&format!(
                "keepalived -t -l -f '{}'\n",
                root.join("etc/keepalived/keepalived.conf").display()
            ));
        }
        run_ok(Command::new("unshare").args(["-n", "sh", "-c", &script]));
    }
}

/// The same check must fail on a broken config, or it proves nothing; and
/// fail for the config's reason, not because keepalived or the namespace
/// could not run: the same config with a valid VRID passes, and the broken
/// one ends with keepalived's config-error exit (5, KEEPALIVED_EXIT_CONFIG)
/// naming the VRID.
#[test]
fn live_keepalived_t_refuses_a_broken_config() {
    let dir = tempfile::tempdir().unwrap();
    let check = |vrid: u32| {
        let conf = dir.path().join(format!("k{vrid}.conf"));
        std::fs::write(
            &conf,
            format!(
                "vrrp_instance x {{\n interface vlx0\n virtual_router_id {vrid}\n priority 100\n virtual_ipaddress {{\n  10.0.0.9/24\n }}\n}}\n"
            ),
        )
        .unwrap();
        // 90: the namespace's link could not be made (keepalived never ran).
        let script = format!(
            "ip link add vlx0 type veth peer name p || exit 90\nkeepalived -t -l -f '{}'",
            conf.display()
        );
        Command::new("unshare")
            .args(["-n", "sh", "-c", &script])
            .output()
            .unwrap()
    };
    let good = check(30);
    assert_eq!(
        good.status.code(),
        Some(0),
        "keepalived -t refused a valid config: {}",
        String::from_utf8_lossy(&good.stderr)
    );
    let bad = check(300);
    let said = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(
        bad.status.code(),
        Some(5),
        "keepalived -t on a VRID of 300: {said}"
    );
    assert!(said.contains("VRID '300' not valid"), "{said}");
}

#[test]
fn dnsmasq_reserves_every_mac_of_every_node_and_nothing_else() {
    for profile in PROFILES {
        let plan = plan(profile);
        let all = render_all(&plan);
        let reference = text(&all[0].1, "etc/dnsmasq.conf");
        let hosts: Vec<&str> = reference
            .lines()
            .filter(|l| l.starts_with("dhcp-host="))
            .collect();
        assert_eq!(
            hosts.len(),
            plan.nodes.len(),
            "{profile}: one line per node"
        );
        for n in &plan.nodes {
            let line = format!(
                "dhcp-host={},{},{}",
                n.macs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                n.ip,
                n.name
            );
            assert!(hosts.contains(&line.as_str()), "{profile}: no `{line}`");
        }
        let ranges: Vec<&str> = reference
            .lines()
            .filter(|l| l.starts_with("dhcp-range="))
            .collect();
        assert!(
            ranges[0].starts_with(&format!(
                "dhcp-range={},static,",
                plan.network.cidr.network()
            )),
            "{profile}: {ranges:?}"
        );
        assert!(ranges[1].contains(",ra-only,64"), "{profile}: {ranges:?}");
        // Every node hands out the same table.
        for (name, entries) in &all {
            let mine: Vec<&str> = text(entries, "etc/dnsmasq.conf")
                .lines()
                .filter(|l| l.starts_with("dhcp-host=") || l.starts_with("host-record="))
                .collect();
            let theirs: Vec<&str> = reference
                .lines()
                .filter(|l| l.starts_with("dhcp-host=") || l.starts_with("host-record="))
                .collect();
            assert_eq!(mine, theirs, "{profile} {name}");
        }
    }
}

#[test]
fn every_vip_starts_on_exactly_one_node_and_each_node_backs_the_one_before() {
    for profile in PROFILES {
        let plan = plan(profile);
        let all = render_all(&plan);
        for (k, vip) in plan.network.vips.iter().enumerate() {
            let mut prios = Vec::new();
            for (name, entries) in &all {
                let conf = text(entries, "etc/keepalived/keepalived.conf");
                let block = conf
                    .split("vrrp_instance ")
                    .find(|b| b.starts_with(&format!("vip{} ", k + 1)))
                    .unwrap_or_else(|| panic!("{profile} {name}: no instance vip{}", k + 1));
                assert!(block.contains(&format!("virtual_router_id {}", vip.vrid)));
                assert!(block.contains(&format!("{}/", vip.address)));
                assert!(block.contains("state BACKUP"));
                // The shared volume's VIP never preempts; the others do.
                let shared = k == 0 && plan.services.shared;
                assert_eq!(block.contains("nopreempt"), shared, "{profile} {name}");
                assert_eq!(block.contains("notify "), shared, "{profile} {name}");
                // Every instance notes when this node takes it (the rig
                // times a VIP's move on the blade that took it).
                assert!(
                    block.contains(&format!(
                        "notify_master \"/usr/lib/vlx/vrrp-master vip{}\"",
                        k + 1
                    )),
                    "{profile} {name}: {block}"
                );
                let prio: u8 = block
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("priority "))
                    .unwrap()
                    .parse()
                    .unwrap();
                prios.push(prio);
            }
            let owner = k % plan.nodes.len();
            let max = *prios.iter().max().unwrap();
            assert_eq!(prios.iter().filter(|p| **p == max).count(), 1);
            assert_eq!(
                prios[owner],
                max,
                "{profile}: vip{} starts on node {owner}",
                k + 1
            );
            let next = (owner + 1) % plan.nodes.len();
            let second = prios.iter().filter(|p| **p < max).max().unwrap();
            assert_eq!(prios[next], *second, "{profile}: the next node backs it up");
        }
    }
}

#[test]
fn chrony_peers_with_every_other_node_in_small_clusters_and_a_core_in_large_ones() {
    let demo = plan("demo.toml");
    for (name, entries) in render_all(&demo) {
        let conf = text(&entries, "etc/chrony/chrony.conf");
        let peers: BTreeSet<&str> = conf
            .lines()
            .filter_map(|l| l.strip_prefix("peer "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        let others: BTreeSet<String> = demo
            .nodes
            .iter()
            .filter(|n| n.name.as_str() != name)
            .map(|n| n.ip.to_string())
            .collect();
        assert_eq!(
            peers.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>(),
            others,
            "{name}"
        );
    }
    let rack = plan("rack-64.toml");
    let core = installer::render::NTP_CORE;
    let mut core_ips: Vec<_> = rack.nodes.iter().map(|n| n.ip).collect();
    core_ips.sort();
    core_ips.truncate(core);
    for (name, entries) in render_all(&rack) {
        let conf = text(&entries, "etc/chrony/chrony.conf");
        let me = rack.node(&name).unwrap();
        let count = |kw: &str| conf.lines().filter(|l| l.starts_with(kw)).count();
        if core_ips.contains(&me.ip) {
            assert_eq!((count("peer "), count("server ")), (core - 1, 0), "{name}");
        } else {
            assert_eq!((count("peer "), count("server ")), (0, core), "{name}");
        }
    }
}

#[test]
fn hosts_and_dns_name_every_node_and_vip() {
    for profile in PROFILES {
        let plan = plan(profile);
        let all = render_all(&plan);
        for (name, entries) in &all {
            let hosts = text(entries, "etc/hosts");
            for n in &plan.nodes {
                assert!(
                    hosts.contains(&format!("{}\t{} {}\n", n.ip, n.fqdn, n.name)),
                    "{profile} {name}: {} missing from /etc/hosts",
                    n.name
                );
            }
            for (k, v) in plan.network.vips.iter().enumerate() {
                assert!(hosts.contains(&format!("{}\tvip{}.", v.address, k + 1)));
            }
            assert_eq!(text(entries, "etc/hostname"), format!("{name}\n"));
            let resolv = text(entries, "etc/resolv.conf");
            let servers = resolv
                .lines()
                .filter(|l| l.starts_with("nameserver "))
                .count();
            assert_eq!(servers, plan.nodes.len().min(3), "{profile} {name}");
            let me = plan.node(name).unwrap();
            assert!(resolv.contains(&format!("nameserver {}\n", me.ip)));
        }
    }
}

#[test]
fn node_env_is_shell_that_says_who_the_node_is() {
    let plan = plan("eurotech-4u.toml");
    let dir = tempfile::tempdir().unwrap();
    for (name, root) in write_all(&plan, dir.path()) {
        let env = root.join("etc/vlx/node.env");
        let out = run_ok(Command::new("busybox").args(["sh", "-euc"]).arg(format!(
            ". '{}'; echo \"$VLX_NODE $VLX_IP/$VLX_PREFIX $VLX_MAC $VLX_GATEWAY $VLX_EXTRA $VLX_SHARED_VIP\"",
            env.display()
        )));
        let me = plan.node(&name).unwrap();
        let extra = &me.extra_ips[0];
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!(
                "{name} {}/24 {} 192.168.10.254 ib0={}/24 192.168.10.100",
                me.ip, me.macs[0], extra.ip
            )
        );
    }
}

/// The profile's `[admin]` keys become root's `authorized_keys` on every
/// node, as ssh-keygen reads them.
#[test]
fn admin_keys_are_roots_authorized_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut keys = Vec::new();
    for name in ["a", "b"] {
        let k = dir.path().join(name);
        run_ok(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C"])
                .arg(format!("{name}@desk"))
                .arg("-f")
                .arg(&k),
        );
        keys.push(
            std::fs::read_to_string(k.with_extension("pub"))
                .unwrap()
                .trim()
                .to_owned(),
        );
    }
    let mut plan = plan("demo.toml");
    assert!(plan.admin.ssh_keys.is_empty());
    plan.admin.ssh_keys = keys.clone();
    for (name, root) in write_all(&plan, &dir.path().join("nodes")) {
        let file = root.join("root/.ssh/authorized_keys");
        let out = run_ok(Command::new("ssh-keygen").arg("-l").arg("-f").arg(&file));
        let listed = String::from_utf8_lossy(&out.stdout);
        for who in ["a@desk", "b@desk"] {
            assert!(listed.contains(who), "{name}: {listed}");
        }
        assert_eq!(listed.lines().count(), 2, "{name}: {listed}");
    }
}

#[test]
fn rendering_is_pure() {
    let plan = plan("demo.toml");
    assert_eq!(render_all(&plan), render_all(&plan));
}

#[test]
fn files_are_root_owned_and_scripts_executable() {
    let plan = plan("demo.toml");
    for (_, entries) in render_all(&plan) {
        for e in &entries {
            assert_eq!((e.uid, e.gid), (0, 0), "{}", e.path.display());
            let script = e.path.starts_with("usr/lib/vlx");
            let secret = e.path.starts_with("root/.ssh");
            match e.kind {
                Kind::File(_) if script => assert_eq!(e.mode, 0o755, "{}", e.path.display()),
                Kind::File(_) if secret => assert_eq!(e.mode, 0o600, "{}", e.path.display()),
                Kind::File(_) => assert_eq!(e.mode, 0o644, "{}", e.path.display()),
                _ => {}
            }
        }
    }
}

#[test]
fn every_script_in_the_overlays_parses_with_busybox_sh_and_dash() {
    let mut seen = 0;
    for dir in ["node", "tiny", "debian"] {
        for path in walk(&nodes::overlays_dir().join(dir)) {
            let head = std::fs::read(&path).unwrap();
            if !head.starts_with(b"#!/bin/sh") {
                continue;
            }
            run_ok(Command::new("busybox").args(["sh", "-n"]).arg(&path));
            run_ok(Command::new("sh").arg("-n").arg(&path));
            seen += 1;
        }
    }
    assert!(seen >= 6, "only {seen} scripts found");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_symlink() {
            continue;
        }
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn host_keys_are_0600_valid_and_only_in_their_own_node() {
    let plan = plan("demo.toml");
    let overlays = NodeOverlays::load(&plan, &nodes::profiles_dir()).unwrap();
    let mut nodes = Vec::new();
    for n in &plan.nodes {
        let mut files = overlays.render(&plan, n).unwrap();
        merge(&mut files, host_keys(n).unwrap()).unwrap();
        nodes.push((n, files));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut privates = Vec::new();
    for (n, files) in &nodes {
        let key = files
            .iter()
            .find(|e| e.path == Path::new("etc/ssh/ssh_host_ed25519_key"))
            .unwrap();
        let public = files
            .iter()
            .find(|e| e.path == Path::new("etc/ssh/ssh_host_ed25519_key.pub"))
            .unwrap();
        assert_eq!((key.mode, key.uid, key.gid), (0o600, 0, 0));
        assert_eq!(public.mode, 0o644);
        let ssh = files
            .iter()
            .find(|e| e.path == Path::new("etc/ssh"))
            .unwrap();
        assert_eq!(ssh.kind, Kind::Dir, "merge adds the parent folder");
        let Kind::File(secret) = &key.kind else {
            panic!()
        };
        assert!(String::from_utf8_lossy(secret).starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        // ssh-keygen itself: the private key yields the public one, which
        // names the node.
        let root = dir.path().join(n.name.as_str());
        std::fs::create_dir_all(&root).unwrap();
        installer::render::write_tree(files, &root).unwrap();
        let priv_path = root.join("etc/ssh/ssh_host_ed25519_key");
        let derived = run_ok(
            Command::new("ssh-keygen")
                .arg("-y")
                .arg("-f")
                .arg(&priv_path),
        );
        let Kind::File(pub_bytes) = &public.kind else {
            panic!()
        };
        let pub_text = String::from_utf8_lossy(pub_bytes);
        let derived_text = String::from_utf8_lossy(&derived.stdout);
        assert_eq!(
            derived_text.split_whitespace().take(2).collect::<Vec<_>>(),
            pub_text.split_whitespace().take(2).collect::<Vec<_>>()
        );
        assert!(pub_text.trim_end().ends_with(&format!("root@{}", n.fqdn)));
        use std::os::unix::fs::PermissionsExt;
        let on_disk = std::fs::metadata(&priv_path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(on_disk, 0o600);
        privates.push((n.name.to_string(), secret.clone()));
    }
    // No node's secret appears in any file but its own key.
    for (owner, secret) in &privates {
        let body = &secret[40..secret.len() - 40];
        for (n, files) in &nodes {
            for e in files {
                if let Kind::File(bytes) = &e.kind {
                    let is_own = n.name.as_str() == owner
                        && e.path == Path::new("etc/ssh/ssh_host_ed25519_key");
                    let found = bytes.windows(body.len()).any(|w| w == body);
                    assert_eq!(
                        found,
                        is_own,
                        "{owner}'s key in {n}:{}",
                        e.path.display(),
                        n = n.name
                    );
                }
            }
        }
    }
    // Keys are random: two runs differ.
    let again = host_keys(&plan.nodes[0]).unwrap();
    assert_ne!(again[0].kind, Kind::File(privates[0].1.clone()));
}

#[test]
fn merge_refuses_a_file_over_a_folder() {
    let plan = plan("demo.toml");
    let mut files = render_all(&plan).remove(0).1;
    let clash = templating::Entry {
        path: "etc/vlx".into(),
        kind: Kind::File(b"x".to_vec()),
        mode: 0o644,
        uid: 0,
        gid: 0,
    };
    let err = merge(&mut files, vec![clash]).unwrap_err().to_string();
    assert!(err.contains("etc/vlx"), "{err}");
}

#[test]
fn a_template_error_names_the_node_and_the_template() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.conf.hbs"), "a\n{{node.nope}}\n").unwrap();
    let mut plan = plan("demo.toml");
    plan.image.overlays = vec![dir.path().display().to_string()];
    let overlays = NodeOverlays::load(&plan, Path::new("/")).unwrap();
    let err = overlays
        .render(&plan, &plan.nodes[2])
        .unwrap_err()
        .to_string();
    assert!(err.contains("blade03"), "{err}");
    assert!(err.contains("x.conf.hbs:2"), "{err}");
    assert!(err.contains("node.nope"), "{err}");
}

/// systemd judges the Debian image's units and drop-ins (laid next to the
/// build machine's own chrony, keepalived and nfs-server units). What it
/// cannot know here is allowed: our scripts live on the node's root, not
/// on this machine, and the Debian image has the full dnsmasq package and
/// OpenSSH's server (a build machine need not run sshd).
#[test]
fn debian_units_pass_systemd_analyze_verify() {
    let src = nodes::overlays_dir().join("debian/etc/systemd/system");
    let dir = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if p.is_symlink() {
            // A masked unit: a link to /dev/null, nothing to verify.
            assert_eq!(
                std::fs::read_link(&p).unwrap(),
                Path::new("/dev/null"),
                "{name}"
            );
            continue;
        }
        if let Some(unit) = name.strip_suffix(".d") {
            let to = dir.path().join(&name);
            std::fs::create_dir(&to).unwrap();
            for f in std::fs::read_dir(&p).unwrap() {
                let f = f.unwrap().path();
                std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
            }
            let packaged = Path::new("/lib/systemd/system").join(unit);
            if packaged.exists() {
                std::fs::copy(&packaged, dir.path().join(unit)).unwrap();
                units.push(dir.path().join(unit));
            }
        } else if name.ends_with(".service") {
            std::fs::copy(&p, dir.path().join(&name)).unwrap();
            units.push(dir.path().join(&name));
        }
    }
    assert!(units.len() >= 5, "{units:?}");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    let unexpected: Vec<&str> = said
        .lines()
        .filter(|l| {
            !(l.contains("Command /usr/lib/vlx/")
                && l.ends_with("is not executable: No such file or directory")
                || l.ends_with("Unit dnsmasq.service not found.")
                || l.ends_with("Unit ssh.service not found."))
        })
        .collect();
    assert!(unexpected.is_empty(), "systemd-analyze verify:\n{said}");
    // The drop-ins were read: each names its condition.
    assert!(
        said.contains("chrony.service: Command /usr/lib/vlx/has-service"),
        "{said}"
    );
    // Debian's etcd unit (etcd-server) runs etcd-start instead of etcd, and
    // the VC agent's unit is judged too.
    assert!(
        Path::new("/lib/systemd/system/etcd.service").exists(),
        "etcd-server is missing (cargo xtask deps)"
    );
    for line in [
        "etcd.service: Command /usr/lib/vlx/etcd-start",
        "vlx-vcd.service: Command /usr/lib/vlx/vcd-start",
    ] {
        assert!(said.contains(line), "{said}");
    }
}

/// `/etc/default/etcd` is shell that makes exactly the plan's voters
/// members (with the plan's timers), and every node's `/etc/vlx/etcd.conf`
/// is the TOML `vlx-vc` reads, naming every voter.
#[test]
fn etcd_files_make_the_plans_voters_members_and_every_node_a_client() {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Conf {
        endpoints: Vec<String>,
    }
    for profile in PROFILES {
        let plan = plan(profile);
        let want: Vec<String> = plan.etcd.endpoints();
        let dir = tempfile::tempdir().unwrap();
        let mut members = Vec::new();
        for (name, root) in write_all(&plan, dir.path()) {
            let conf = std::fs::read_to_string(root.join("etc/vlx/etcd.conf")).unwrap();
            let conf: Conf = toml::from_str(&conf).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(conf.endpoints, want, "{profile} {name}");

            let env = root.join("etc/default/etcd");
            let out = run_ok(Command::new("busybox").args(["sh", "-euc"]).arg(format!(
                ". '{}'; echo \"$VLX_ETCD_VOTER ${{ETCD_NAME-}} ${{ETCD_INITIAL_CLUSTER-}} ${{ETCD_HEARTBEAT_INTERVAL-}} ${{ETCD_ELECTION_TIMEOUT-}} ${{ETCD_BACKEND_BATCH_INTERVAL-}}\"",
                env.display()
            )));
            let said = String::from_utf8_lossy(&out.stdout);
            let said: Vec<&str> = said.split_whitespace().collect();
            if said[0] == "yes" {
                assert_eq!(said[1], name, "{profile}");
                assert_eq!(said[2], plan.etcd.initial_cluster(), "{profile} {name}");
                let timers = [
                    plan.etcd.heartbeat.get().to_string(),
                    plan.etcd.election.get().to_string(),
                    format!("{}ms", plan.etcd.batch.get()),
                ];
                assert_eq!(said[3..], timers, "{profile} {name}");
                members.push(name);
            } else {
                assert_eq!(said, ["no"], "{profile} {name}");
            }
        }
        let voters: Vec<String> = plan
            .etcd
            .voters
            .iter()
            .map(|v| v.name.to_string())
            .collect();
        assert_eq!(members, voters, "{profile}");
        assert_eq!(voters.len(), if plan.nodes.len() >= 16 { 5 } else { 3 });
    }
}

#[test]
fn dhcp_lease_max_is_twice_the_macs_and_never_below_dnsmasqs_default() {
    for profile in PROFILES {
        let plan = plan(profile);
        let macs: usize = plan.nodes.iter().map(|n| n.macs.len()).sum();
        let want = (2 * macs).max(installer::render::DNSMASQ_LEASE_MAX);
        for (name, entries) in render_all(&plan) {
            let conf = text(&entries, "etc/dnsmasq.conf");
            let line = format!("dhcp-lease-max={want}");
            assert!(
                conf.lines().any(|l| l == line),
                "{profile} {name}: no `{line}`"
            );
        }
    }
    // Past 500 blades the default would turn nodes away: the row is 1,000.
    let row = installer::render::lease_max(&plan("row-1000.toml"));
    assert_eq!(row, 2000);
}
