//! The pool layout at the scale it is for: the 1,000-blade row profile
//! installed onto a sparse 4 TiB SAN file with every node's rendered
//! files, judged by sgdisk, debugfs and dnsmasq, and by the installer's own
//! verify, status and reset-node working through the pool.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use cluster::Locate;
use common::*;

const TIB: u64 = 1 << 40;

/// `profiles/clusters/row-1000.toml` with the tiny host image (what
/// [`image_dir`] stands in for) and the node overlay of this checkout.
fn row_profile(dir: &Path) -> PathBuf {
    let repo = repo().canonicalize().unwrap();
    let text = std::fs::read_to_string(repo.join("profiles/clusters/row-1000.toml")).unwrap();
    let overlay = repo.join("overlays/node");
    let text = text
        .replace(
            "../hosts/debian-bookworm.toml",
            &repo.join("profiles/hosts/tiny.toml").display().to_string(),
        )
        .replace("../../overlays/node", &overlay.display().to_string());
    assert!(text.contains(&*overlay.to_string_lossy()), "{text}");
    let p = dir.join("row-1000.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// A file of the meta volume, read by debugfs.
fn meta_file(san: &Path, plan: &cluster::Plan, path: &str) -> String {
    let meta = plan.volumes().locate(&cluster::Role::Meta).unwrap();
    let o = Command::new("debugfs")
        .args(["-R", &format!("cat {path}")])
        .arg(format!("{}?offset={}", san.display(), meta.offset.get()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{path}: {}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

/// Every node's rendered files are on the meta volume; a sample of them
/// (the first, a middle and the last node) is read back and judged line by
/// line against the plan, and dnsmasq itself checks one.
fn check_node_files(san: &Path, plan: &cluster::Plan, dir: &Path) {
    let ls = Command::new("debugfs")
        .args(["-R", "ls -p /nodes"])
        .arg(format!(
            "{}?offset={}",
            san.display(),
            plan.volumes()
                .locate(&cluster::Role::Meta)
                .unwrap()
                .offset
                .get()
        ))
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&ls.stdout)
        .lines()
        .filter_map(|l| {
            l.split('/')
                .nth(5)
                .filter(|n| !n.is_empty() && !n.starts_with('.'))
        })
        .count();
    assert_eq!(names, 1000, "{}", text(&ls));
    let mut hosts_seen = None;
    for name in ["svc01", "c0500", "c0960"] {
        let node = plan.node(name).unwrap();
        let root = format!("/nodes/{name}/root");
        let hosts = meta_file(san, plan, &format!("{root}/etc/hosts"));
        let conf = meta_file(san, plan, &format!("{root}/etc/dnsmasq.conf"));
        for n in &plan.nodes {
            let line = format!("{}\t{} {}", n.ip, n.fqdn, n.name);
            assert!(hosts.lines().any(|l| l == line), "{name}: no `{line}`");
            let mac = n.macs[0];
            let line = format!("dhcp-host={mac},{},{}", n.ip, n.name);
            assert!(conf.lines().any(|l| l == line), "{name}: no `{line}`");
            let line = format!("host-record={},{},{}", n.fqdn, n.name, n.ip);
            assert!(conf.lines().any(|l| l == line), "{name}: no `{line}`");
        }
        let count = |prefix: &str| conf.lines().filter(|l| l.starts_with(prefix)).count();
        assert_eq!(count("dhcp-host="), 1000, "{name}");
        // Two MACs' worth of leases per node: past dnsmasq's default 1,000.
        assert!(conf.lines().any(|l| l == "dhcp-lease-max=2000"), "{name}");
        // The node's own lines: its name and its address as the boot server.
        assert!(
            conf.contains(&format!("dnsmasq on {}", node.fqdn)),
            "{name}"
        );
        assert!(
            conf.contains(&format!("dhcp-boot=tag:ipxe,http://{}/", node.ip)),
            "{name}"
        );
        let env = meta_file(san, plan, &format!("{root}/etc/vlx/node.env"));
        assert!(env.contains(&format!("VLX_NODE='{name}'")), "{env}");
        // /etc/hosts is the same on every node.
        match &hosts_seen {
            None => hosts_seen = Some(hosts),
            Some(h) => assert_eq!(h, &hosts, "{name}"),
        }
        if name == "c0500" {
            // dnsmasq checks the whole config, tables included.
            let f = dir.join("dnsmasq.conf");
            std::fs::write(&f, &conf).unwrap();
            let o = Command::new("dnsmasq")
                .arg("--test")
                .arg("-C")
                .arg(&f)
                .output()
                .unwrap();
            assert!(
                o.status.success() && text(&o).contains("syntax check OK"),
                "{}",
                text(&o)
            );
        }
    }
}

fn store_offset(plan: &cluster::Plan, node: &str) -> u64 {
    plan.volumes()
        .locate(&cluster::locate::cow(node))
        .unwrap()
        .offset
        .get()
}

#[test]
fn a_thousand_blades_install_in_the_pool_on_a_sparse_4tib_san() {
    let d = tempfile::tempdir().unwrap();
    let img = image_dir(d.path(), "row");
    let prof = row_profile(d.path());
    let san = san(d.path(), 4 * TIB);
    let o = apply(&prof, &img, &san, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let plan = plan(&prof, &san);
    assert_eq!(plan.nodes.len(), 1000);
    check_node_files(&san, &plan, d.path());

    // sgdisk reads the file as a 512-byte-sector disk.
    let v = Command::new("sgdisk").arg("-v").arg(&san).output().unwrap();
    assert!(
        v.status.success() && text(&v).contains("No problems found"),
        "{}",
        text(&v)
    );
    let p = Command::new("sgdisk").arg("-p").arg(&san).output().unwrap();
    assert!(text(&p).contains("vlx-pool"), "{}", text(&p));

    // Every swap extent carries a swap header blkid knows, at its offset
    // inside the pool (two samples: the first and the last node).
    for node in ["svc01", "c0960"] {
        let s = plan.volumes().locate(&cluster::locate::swap(node)).unwrap();
        let o = Command::new("blkid")
            .args(["-p", "-o", "export", "-O", &s.offset.get().to_string()])
            .arg(&san)
            .output()
            .unwrap();
        let t = text(&o);
        assert!(
            t.contains("TYPE=swap") && t.contains(&format!("LABEL={node}")),
            "{node}: {t}"
        );
    }

    let san_arg = san.to_str().unwrap();
    let v = vlx_install(&["verify", "--san", san_arg]);
    assert!(v.status.success(), "{}", text(&v));

    let o = vlx_install(&["status", "--san", san_arg, "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["complete"], true, "{st}");
    assert_eq!(st["nodes"].as_array().unwrap().len(), 1000);

    for n in st["nodes"].as_array().unwrap() {
        assert_eq!(n["store"]["state"], "fresh", "{n}");
    }

    // Three stores in use, as the kernel leaves them: a header (magic,
    // valid, version 1, 8-sector chunks) and two exceptions in area 0
    // (data chunks 2 and 3).
    let f = std::fs::OpenOptions::new().write(true).open(&san).unwrap();
    let mut head = Vec::new();
    for x in [0x7041_6e53u32, 1, 1, 8] {
        head.extend_from_slice(&x.to_le_bytes());
    }
    let mut area = Vec::new();
    for (old, new) in [(100u64, 2u64), (101, 3)] {
        area.extend_from_slice(&old.to_le_bytes());
        area.extend_from_slice(&new.to_le_bytes());
    }
    for node in ["c0499", "c0500", "c0501"] {
        let at = store_offset(&plan, node);
        std::os::unix::fs::FileExt::write_all_at(&f, &head, at).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &area, at + 4096).unwrap();
    }
    drop(f);
    let o = vlx_install(&["status", "--san", san_arg, "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let c0499 = &st["nodes"].as_array().unwrap()[40 + 498];
    assert_eq!(c0499["name"], "c0499");
    // Header, area 0 and data chunks 2 and 3: 4 chunks of 4 KiB.
    assert_eq!(c0499["store"]["state"], "used", "{c0499}");
    assert_eq!(c0499["store"]["used"], 4 * 4096, "{c0499}");
    assert_eq!(c0499["store"]["size"], 2u64 << 30, "{c0499}");
    assert_eq!(c0499["store"]["valid"], true, "{c0499}");

    // reset-node finds the store inside the pool and touches no other.
    let o = vlx_install(&["reset-node", "c0500", "--yes", "--san", san_arg]);
    assert!(o.status.success(), "{}", text(&o));
    let f = std::fs::File::open(&san).unwrap();
    for (node, used) in [("c0499", true), ("c0500", false), ("c0501", true)] {
        let head = installer::device::read_at(&f, store_offset(&plan, node), 4).unwrap();
        assert_eq!(head == b"SnAp", used, "{node}: {head:?}");
    }
    let v = vlx_install(&["verify", "--san", san_arg]);
    assert!(v.status.success(), "{}", text(&v));
}
