//! `vlx-install plan` as a user runs it.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup errors

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn plan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vlx-install"))
        .arg("plan")
        .args(args)
        .current_dir(repo())
        .output()
        .expect("vlx-install runs")
}

#[test]
fn prints_the_demo_plan_as_tables() {
    let out = plan(&[
        "--cluster",
        "profiles/clusters/demo.toml",
        "--san-size",
        "8GiB",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "blade01",
        "blade04",
        "52:54:00:77:00:04",
        "vlx-cow-blade03",
        "vlx-shared",
        "vlx.cluster=6f1c0a4e-3b8e-4d3a-9d2a-1f0e5c7b9a10",
    ] {
        assert!(text.contains(want), "plan lacks {want}:\n{text}");
    }
}

#[test]
fn json_is_identical_across_runs() {
    let a = plan(&[
        "--cluster",
        "profiles/clusters/demo.toml",
        "--san-size",
        "8GiB",
        "--json",
    ]);
    let b = plan(&[
        "--cluster",
        "profiles/clusters/demo.toml",
        "--san-size",
        "8GiB",
        "--json",
    ]);
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout);
    let v: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    assert_eq!(v["nodes"].as_array().unwrap().len(), 4);
}

#[test]
fn a_duplicate_mac_exits_2_naming_file_line_and_key() {
    let f = "cluster/tests/fixtures/bad/10-duplicate-mac.toml";
    let out = plan(&["--cluster", f]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    // The second MAC is on line 18 of the fixture.
    assert!(err.contains(&format!("{f}:18:")), "{err}");
    assert!(
        err.contains("nodes[1].mac") && err.contains("duplicate MAC"),
        "{err}"
    );
}

#[test]
fn a_vc_pool_over_the_cluster_network_exits_2_naming_file_line_and_key() {
    let f = "cluster/tests/fixtures/bad/49-vc-pool-overlaps-cluster.toml";
    let out = plan(&["--cluster", f]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    // `subnet_pool` is on line 24 of the fixture.
    assert!(err.contains(&format!("{f}:24:")), "{err}");
    assert!(
        err.contains("vc.subnet_pool")
            && err.contains("overlaps the cluster network network.cidr (10.0.0.0/24)"),
        "{err}"
    );
}

#[test]
fn plans_for_an_existing_san_file_use_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let san = dir.path().join("san.img");
    std::fs::File::create(&san)
        .unwrap()
        .set_len(16 << 30)
        .unwrap();
    let out = plan(&[
        "--cluster",
        "profiles/clusters/demo.toml",
        "--san",
        san.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["disk"]["size"].as_u64(), Some(16 << 30));
}

#[test]
fn an_unreadable_profile_is_not_bad_input_but_an_error() {
    let out = plan(&[
        "--cluster",
        "profiles/clusters/no-such.toml",
        "--san-size",
        "8GiB",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such.toml"), "{err}");
    // The OS error once, not once per error in the chain.
    assert_eq!(err.matches("(os error 2)").count(), 1, "{err}");
}

#[test]
fn a_profile_that_is_not_utf8_exits_2_naming_file_line_and_byte_offset() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("latin1.toml");
    // "é" in Latin-1 on line 3, at byte offset 26.
    std::fs::write(&f, b"[cluster]\nname = \"t\"\n# caf\xe9\n").unwrap();
    let out = plan(&["--cluster", f.to_str().unwrap(), "--san-size", "8GiB"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:3:6:", f.display()))
            && err.contains("not UTF-8: byte 0xe9 at byte offset 26"),
        "{err}"
    );
    assert_eq!(err.matches("not UTF-8").count(), 1, "{err}");
}

/// A valid profile that does not fit the SAN it is planned for refuses the
/// target (3); a wrong profile stays bad input (2) whatever the target; a
/// too small `--san-size` is bad input too (no target to refuse).
#[test]
fn a_profile_that_does_not_fit_its_san_refuses_the_target_but_a_bad_one_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let san = dir.path().join("san.img");
    std::fs::File::create(&san)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let san = san.to_str().unwrap();
    let out = plan(&["--cluster", "profiles/clusters/demo.toml", "--san", san]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("the layout needs") && err.contains("does not fit this SAN"),
        "{err}"
    );
    let bad = "cluster/tests/fixtures/bad/10-duplicate-mac.toml";
    let out = plan(&["--cluster", bad, "--san", san]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("duplicate MAC"), "{err}");
    let out = plan(&[
        "--cluster",
        "profiles/clusters/demo.toml",
        "--san-size",
        "1GiB",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("the layout needs"), "{err}");
}

#[test]
fn a_node_list_shows_those_nodes() {
    let out = plan(&[
        "--cluster",
        "profiles/clusters/demo.toml",
        "--san-size",
        "8GiB",
        "--nodes",
        "blade[01-02,04]",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["blade01", "blade02", "blade04"]);
}

#[test]
fn a_bad_node_list_or_an_unknown_node_is_bad_input() {
    for (list, want) in [
        (
            "blade[01-",
            "vlx-install: error: node list `blade[01-`: `[` is not closed by `]`",
        ),
        (
            "blade[03-06]",
            "vlx-install: error: cluster demo has no node blade[05-06]; its nodes are blade[01-04]",
        ),
    ] {
        let out = plan(&[
            "--cluster",
            "profiles/clusters/demo.toml",
            "--san-size",
            "8GiB",
            "--nodes",
            list,
        ]);
        assert_eq!(out.status.code(), Some(2), "{list}");
        assert_eq!(String::from_utf8_lossy(&out.stderr).trim_end(), want);
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn a_san_by_a_serial_no_disk_has_is_bad_input_naming_the_disks() {
    let out = plan(&[
        "--cluster",
        "profiles/clusters/demo.toml",
        "--san",
        "serial:NO-SUCH-SERIAL-VLX",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with(
            "vlx-install: error: --san=serial:NO-SUCH-SERIAL-VLX: no such disk; the disks are "
        ),
        "{err}"
    );
}
