//! `vlx-vc-net`: exit codes and messages of bad input; the plan and the
//! rendered text from a JSON input.

#![allow(clippy::unwrap_used)] // helpers panic on setup errors by design

mod common;

use std::path::PathBuf;
use std::process::Command;

fn input(dir: &tempfile::TempDir, name: &str, value: &vc_net::NetInput) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, serde_json::to_string_pretty(value).unwrap()).unwrap();
    p
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vlx-vc-net"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn plan_and_render_from_json() {
    let tmp = tempfile::tempdir().unwrap();
    let p = input(&tmp, "demo.json", &common::demo());
    let p = p.to_str().unwrap();
    let (code, out, err) = run(&["plan", "--input", p]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("VC a: subnet 10.200.0.0/24, gateway 10.200.0.1, outside yes"),
        "{out}"
    );
    assert!(
        out.contains("a/vm2\t10.200.0.3\t02:76:00:0a:00:02\tvx0276000a0002\ton b2"),
        "{out}"
    );
    let (code, one, _) = run(&["plan", "--input", p, "--json"]);
    let (_, two, _) = run(&["plan", "--input", p, "--json"]);
    assert_eq!(code, 0);
    assert_eq!(one, two);
    let (code, out, err) = run(&["render", "--input", p, "--blade", "b1", "routes"]);
    assert_eq!(code, 0, "{err}");
    let golden = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/b1.routes"),
    )
    .unwrap();
    assert_eq!(out, golden);
}

#[test]
fn bad_input_exits_2_naming_the_subnet_and_what_it_overlaps() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bad = common::demo();
    bad.vcs[1].subnet = "10.200.0.0/23".parse().unwrap();
    let p = input(&tmp, "overlap.json", &bad);
    let (code, out, err) = run(&["plan", "--input", p.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(
        err,
        format!(
            "vlx-vc-net: error: {}: subnet 10.200.0.0/23 of VC b overlaps VC a (10.200.0.0/24)\n",
            p.display()
        )
    );

    let mut bad = common::demo();
    bad.vcs[0].subnet = "10.200.0.0/30".parse().unwrap();
    let p = input(&tmp, "full.json", &bad);
    let (code, _, err) = run(&[
        "render",
        "--input",
        p.to_str().unwrap(),
        "--blade",
        "b1",
        "nft",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("VC a asks for 3 addresses but its subnet 10.200.0.0/30 holds 1 VMs"),
        "{err}"
    );

    let p = input(&tmp, "ok.json", &common::demo());
    let (code, _, err) = run(&[
        "render",
        "--input",
        p.to_str().unwrap(),
        "--blade",
        "b9",
        "nft",
    ]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err, "vlx-vc-net: error: no blade `b9` in the plan\n");

    let junk = tmp.path().join("junk.json");
    std::fs::write(&junk, "{\"domain\": 1}").unwrap();
    let (code, _, err) = run(&["plan", "--input", junk.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("junk.json: invalid type: integer `1`, expected a string"),
        "{err}"
    );
}

#[test]
fn a_new_vcs_subnet_from_the_pool_until_it_is_exhausted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let profile = dir.join("cluster.toml");
    std::fs::write(
        &profile,
        "[cluster]\nname = \"demo\"\n\n[vc]\nsubnet_pool = \"10.200.0.0/23\"\nprefix = 24\n",
    )
    .unwrap();
    let profile = profile.to_str().unwrap();

    let mut state = common::demo();
    state.vcs.truncate(1);
    let p = input(&tmp, "one.json", &state);
    let (code, out, err) = run(&[
        "subnet",
        "--profile",
        profile,
        "--input",
        p.to_str().unwrap(),
    ]);
    assert_eq!((code, out.as_str()), (0, "10.200.1.0/24\n"), "{err}");

    let p = input(&tmp, "two.json", &common::demo());
    let (code, out, err) = run(&[
        "subnet",
        "--profile",
        profile,
        "--input",
        p.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(
        err.starts_with(
            "vlx-vc-net: error: the VC subnet pool 10.200.0.0/23 is exhausted: no free /24 is left"
        ),
        "{err}"
    );

    let bare = dir.join("bare.toml");
    std::fs::write(&bare, "[cluster]\nname = \"demo\"\n").unwrap();
    let (code, _, err) = run(&[
        "subnet",
        "--profile",
        bare.to_str().unwrap(),
        "--input",
        p.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("bare.toml: no [vc] subnet_pool"), "{err}");
}
