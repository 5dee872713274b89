//! The VC rig as a test: three blades as network namespaces, real etcd,
//! real vlx-vcd, QEMU guests; every check must pass. Needs root (network
//! namespaces) and the packages of `cargo xtask deps`.

use std::process::Command;

#[test]
fn rig_vc_passes_every_check() {
    let out = tempfile::tempdir().expect("tempdir");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("vc/ has a parent")
        .to_path_buf();
    let o = Command::new(env!("CARGO_BIN_EXE_vlx-vc-rig"))
        .arg("--out")
        .arg(out.path().join("rehearsal-vc"))
        .current_dir(&repo)
        .output()
        .expect("running vlx-vc-rig");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(0), "{text}");
    let checks: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.path().join("rehearsal-vc/checks.json")).expect("checks.json"),
    )
    .expect("checks.json is JSON");
    let checks = checks.as_array().expect("a list of checks");
    assert!(checks.len() >= 10, "{text}");
    assert!(checks.iter().all(|c| c["ok"] == true), "{text}");
    // The VC network checks by the names the table shows them under.
    let names: Vec<&str> = checks.iter().filter_map(|c| c["name"].as_str()).collect();
    for want in [
        "route demo/vm1 via ",
        "after placement",
        "after remap",
        "vc ping ",
        "vc isolation demo -/-> cyc",
        "vc isolation demo/vm1 -/-> its blade's SSH port",
        "vc isolation demo/vm1 -/-> its blade's DNS and DHCP server",
        "vc dns ",
        "vc outside cyc/vm1",
        "vc shared demo",
        "vc shared after the storage address moves",
    ] {
        assert!(
            names.iter().any(|n| n.contains(want)),
            "no check named like `{want}` in {names:?}"
        );
    }
    let svg = out.path().join("rehearsal-vc/timeline.svg");
    let lint = Command::new("xmllint")
        .arg("--noout")
        .arg(&svg)
        .output()
        .expect("running xmllint (Debian libxml2-utils)");
    assert!(
        lint.status.success(),
        "{}",
        String::from_utf8_lossy(&lint.stderr)
    );
    for vm in ["demo-vm1", "cyc-vm4"] {
        let log =
            std::fs::read_to_string(out.path().join(format!("rehearsal-vc/consoles/{vm}.log")))
                .expect("a console log in the report");
        assert!(log.contains("vlx-guest: ready"), "{vm}: {log}");
    }
}
