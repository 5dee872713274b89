//! The Slurm example: `profiles/vcs/slurm.toml` rendered per VM from the
//! VC's table, its slurm.conf checked by Slurm's own slurmd.

#![allow(clippy::unwrap_used)] // helpers panic on setup errors by design

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use templating::{Entry, Kind};
use vc_net::table::{self, Templates};
use vc_net::{NetPlan, VcInput};

const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn slurm_vc() -> (PathBuf, Templates, NetPlan) {
    let path = repo().join("profiles/vcs/slurm.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let t = Templates::from_profile(&path.display().to_string(), &text).unwrap();
    let mut input = common::demo();
    input.vcs.push(VcInput {
        name: "slurm".into(),
        subnet: "10.200.2.0/24".parse().unwrap(),
        outside: false,
        vms: (1..=t.vm_count())
            .map(|i| {
                common::vm(
                    &format!("vm{i}"),
                    &format!("02:76:00:5c:00:{i:02x}"),
                    &format!("b{}", (i - 1) % 3 + 1),
                )
            })
            .collect(),
    });
    let plan = NetPlan::new(&input).unwrap();
    (path.parent().unwrap().to_owned(), t, plan)
}

fn files(entries: &[Entry]) -> BTreeMap<String, &Entry> {
    entries
        .iter()
        .map(|e| (e.path.display().to_string(), e))
        .collect()
}

fn text<'a>(m: &'a BTreeMap<String, &Entry>, path: &str) -> &'a str {
    match &m.get(path).unwrap_or_else(|| panic!("no {path}")).kind {
        Kind::File(b) => std::str::from_utf8(b).unwrap(),
        other => panic!("{path} is {other:?}"),
    }
}

fn link(m: &BTreeMap<String, &Entry>, path: &str) -> Option<PathBuf> {
    match &m.get(path)?.kind {
        Kind::Symlink(t) => Some(t.clone()),
        _ => None,
    }
}

#[test]
fn the_slurm_vc_renders_per_vm_and_slurmd_accepts_its_config() {
    let (dir, t, plan) = slurm_vc();
    assert_eq!(t.roles(), ["frontend", "compute", "compute", "compute"]);
    let rendered: Vec<Vec<Entry>> = (1..=4)
        .map(|i| table::render_vm(&dir, &t, &plan, "slurm", &format!("vm{i}"), KEY).unwrap())
        .collect();
    let maps: Vec<_> = rendered.iter().map(|r| files(r)).collect();

    // One slurm.conf and one key for the whole VC.
    let conf = text(&maps[0], "etc/slurm/slurm.conf");
    for m in &maps {
        assert_eq!(text(m, "etc/slurm/slurm.conf"), conf);
        assert_eq!(text(m, "etc/munge/munge.key"), format!("{KEY}\n"));
        assert_eq!(m["etc/munge/munge.key"].mode, 0o400);
    }
    assert!(conf.contains("SlurmctldHost=vm1(10.200.2.2)\n"), "{conf}");
    assert!(
        conf.contains("\nNodeName=vm4 NodeAddr=10.200.2.5 State=UNKNOWN\n"),
        "{conf}"
    );
    assert!(
        !conf.contains("NodeName=vm1 "),
        "the frontend runs no slurmd: {conf}"
    );
    assert_eq!(text(&maps[2], "etc/hostname"), "vm3\n");
    assert!(text(&maps[0], "etc/hosts").contains("10.200.2.4\tvm3.slurm.demo.vlx.test\tvm3\n"));
    let mount = text(&maps[1], "etc/systemd/system/vc.mount");
    assert!(
        mount.contains("What=10.77.0.250:/srv/vlx-shared/vc-shares/slurm\nWhere=/vc\n"),
        "{mount}"
    );

    // The role's daemon only: the other is masked.
    let mask = Some(PathBuf::from("/dev/null"));
    assert_eq!(link(&maps[0], "etc/systemd/system/slurmd.service"), mask);
    assert_eq!(link(&maps[0], "etc/systemd/system/slurmctld.service"), None);
    for m in &maps[1..] {
        assert_eq!(link(m, "etc/systemd/system/slurmctld.service"), mask);
        assert_eq!(link(m, "etc/systemd/system/slurmd.service"), None);
    }

    // slurmd -G reads slurm.conf as a node does (keys, plugins, its node
    // entry) and exits: Slurm's own check of the file.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("slurm.conf");
    std::fs::write(&path, conf).unwrap();
    for node in ["vm2", "vm3", "vm4"] {
        let out = Command::new("slurmd")
            .args(["-G", "-N", node, "-f"])
            .arg(&path)
            .output()
            .unwrap_or_else(|e| panic!("cannot run slurmd ({e}); `cargo xtask deps` installs it"));
        assert!(
            out.status.success(),
            "slurmd -G -N {node}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // ... and it does judge: without ClusterName it refuses the file.
    let broken = tmp.path().join("broken.conf");
    std::fs::write(&broken, conf.replace("ClusterName=", "ClusterNme=")).unwrap();
    let out = Command::new("slurmd")
        .args(["-G", "-N", "vm2", "-f"])
        .arg(&broken)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unrecognized key: ClusterNme"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn roles_must_cover_the_vcs_vms() {
    let (_, t, plan) = slurm_vc();
    let mut roles = t.roles();
    roles.pop();
    let e = table::context(&plan, "slurm", "vm1", &roles, KEY).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert_eq!(
        e.to_string(),
        "VC slurm has 4 VMs but its groups give roles to 3"
    );
    let e = Templates::from_profile(
        "x.toml",
        "[[groups]]\nrole = \"compute\"\nvms = 2\nvcpus = 4\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("unknown field `vcpus`"), "{e}");
}
