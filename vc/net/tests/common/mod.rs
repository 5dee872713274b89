//! The placement the tests share: three blades on 10.77.0.0/24; VC `a`
//! (outside allowed) with three VMs over b1 and b2, VC `b` with two.

#![allow(dead_code)]
#![allow(clippy::unwrap_used)] // test helpers panic on bad fixtures by design

use std::process::{Command, Output};

use vc_net::{Blade, NamedNet, NetInput, VcInput, VmInput};

/// Runs `args` (a program and its arguments) and returns what it did.
pub fn sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e} (`cargo xtask deps` installs it)"))
}

/// Runs `args`, which must succeed.
pub fn ok(args: &[&str]) {
    let out = sh(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn vm(name: &str, mac: &str, blade: &str) -> VmInput {
    VmInput {
        name: name.into(),
        mac: mac.parse().unwrap(),
        blade: blade.into(),
    }
}

pub fn demo() -> NetInput {
    NetInput {
        domain: "demo.vlx.test".into(),
        cluster_nets: vec![NamedNet {
            name: "network.cidr".into(),
            cidr: "10.77.0.0/24".parse().unwrap(),
        }],
        storage: "10.77.0.250".parse().unwrap(),
        shared_dir: "/srv/vlx-shared".into(),
        upstream_dns: vec!["10.77.0.1".parse().unwrap()],
        blades: ["b1", "b2", "b3"]
            .iter()
            .enumerate()
            .map(|(i, n)| Blade {
                name: (*n).into(),
                addr: format!("10.77.0.{}", 11 + i).parse().unwrap(),
            })
            .collect(),
        vcs: vec![
            VcInput {
                name: "a".into(),
                subnet: "10.200.0.0/24".parse().unwrap(),
                outside: true,
                vms: vec![
                    vm("vm1", "02:76:00:0a:00:01", "b1"),
                    vm("vm2", "02:76:00:0a:00:02", "b2"),
                    vm("vm3", "02:76:00:0a:00:03", "b1"),
                ],
            },
            VcInput {
                name: "b".into(),
                subnet: "10.200.1.0/24".parse().unwrap(),
                outside: false,
                vms: vec![
                    vm("vm1", "02:76:00:0b:00:01", "b1"),
                    vm("vm2", "02:76:00:0b:00:02", "b2"),
                ],
            },
        ],
    }
}
