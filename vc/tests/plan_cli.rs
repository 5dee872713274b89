//! `vlx-vc plan` as a user runs it: exit codes, messages and stable output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("vc/ has a parent")
        .to_path_buf()
}

fn vlx_vc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vlx-vc"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("running vlx-vc")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("writing a test file");
    p.display().to_string()
}

const DEMO: &str = "profiles/vcs/demo.toml";
const BLADES: &str = "profiles/vcs/blades-demo.toml";

#[test]
fn demo_plan_json_is_byte_identical_across_runs() {
    let a = vlx_vc(&["plan", "--vc", DEMO, "--blades", BLADES, "--json"]);
    let b = vlx_vc(&["plan", "--vc", DEMO, "--blades", BLADES, "--json"]);
    assert_eq!(
        a.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&a.stderr)
    );
    assert_eq!(a.stdout, b.stdout);
    let v: serde_json::Value = serde_json::from_slice(&a.stdout).expect("JSON");
    let blades: Vec<&str> = v["vms"]
        .as_array()
        .expect("vms")
        .iter()
        .map(|vm| vm["blade"].as_str().expect("blade"))
        .collect();
    assert_eq!(blades, ["blade01", "blade01", "blade02", "blade02"]);
}

#[test]
fn demo_plan_text_names_every_vm() {
    let o = vlx_vc(&["plan", "--vc", DEMO, "--blades", BLADES]);
    assert_eq!(o.status.code(), Some(0));
    let text = String::from_utf8_lossy(&o.stdout);
    for vm in ["vm1", "vm2", "vm3", "vm4"] {
        assert!(text.contains(vm), "{text}");
    }
}

#[test]
fn strict_with_no_room_exits_3_naming_blade_and_resource() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vc = write(
        dir.path(),
        "big.toml",
        "name = \"big\"\nguest = \"tiny\"\nvms = 7\nmemory = \"128MiB\"\nplacement = \"cyclic\"\n",
    );
    let o = vlx_vc(&["plan", "--vc", &vc, "--blades", BLADES]);
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("VC big does not fit: it has 7 VMs and the blades hold 6"),
        "{err}"
    );
    assert!(
        err.contains("blade blade03 ran short of cores (0 free, a VM needs 1)"),
        "{err}"
    );
    assert!(o.stdout.is_empty());
}

#[test]
fn duplicate_blade_exits_2_with_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = write(
        dir.path(),
        "blades.toml",
        "[[blades]]\nname = \"x\"\ncores = 1\nmemory = \"1GiB\"\n\n[[blades]]\nname = \"x\"\ncores = 1\nmemory = \"1GiB\"\n",
    );
    let o = vlx_vc(&["plan", "--vc", DEMO, "--blades", &b]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "{b}:7:8: blades[1].name: duplicate blade name `x`"
        )),
        "{err}"
    );
}

#[test]
fn unknown_key_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vc = write(
        dir.path(),
        "vc.toml",
        "name = \"a\"\nguest = \"tiny\"\nvms = 1\nmemory = \"128MiB\"\nvcpu = 2\n",
    );
    let o = vlx_vc(&["plan", "--vc", &vc, "--blades", BLADES]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("{vc}:5:1: vcpu: unknown key `vcpu`")),
        "{err}"
    );
}
