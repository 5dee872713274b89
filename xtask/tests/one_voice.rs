//! Every binary says a bad input in the same form: `BIN: error: ...` lines
//! (and `BIN: hint: ...`), exit code 2; with `--json` one JSON object on
//! one line of standard error. Runs the built binaries beside this test's
//! target directory (`cargo build --bins` first, as `cargo xtask test`
//! does).

#![allow(clippy::unwrap_used)] // test helpers may panic on setup errors

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Every binary an administrator runs.
const BINARIES: [&str; 5] = [
    "vlx-image",
    "vlx-install",
    "vlx-node",
    "vlx-rig",
    "vlx-vc-net",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn bin(name: &str) -> PathBuf {
    // target/debug/deps/one_voice-HASH -> target/debug/NAME
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the binaries first (cargo build --bins), as cargo xtask test does",
        path.display()
    );
    path
}

fn run(name: &str, args: &[&str]) -> Output {
    Command::new(bin(name))
        .args(args)
        .current_dir(repo())
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

/// The bad inputs, one or more per binary.
fn cases() -> Vec<(&'static str, Vec<&'static str>)> {
    let image = "imagebuilder/tests/fixtures/bad/build-every-problem.toml";
    let cluster = "cluster/tests/fixtures/bad/10-duplicate-mac.toml";
    vec![
        (
            "vlx-image",
            vec!["build", "--profile", image, "--out", "/nonexistent/out"],
        ),
        ("vlx-install", vec!["plan", "--cluster", cluster]),
        ("vlx-rig", vec!["rehearse", "--cluster", cluster]),
        ("vlx-rig", vec!["rehearse", "--stop-after", "9"]),
        ("vlx-node", vec!["--no-such-flag"]),
        ("vlx-image", vec!["--no-such-flag"]),
        ("vlx-install", vec!["apply", "--no-such-flag"]),
        (
            "vlx-vc-net",
            vec!["plan", "--input", "/nonexistent/vc-state.json"],
        ),
    ]
}

#[test]
fn every_binary_says_bad_input_in_one_form_and_exits_2() {
    for (name, args) in cases() {
        let o = run(name, &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{name} {args:?}: {err}");
        let lines: Vec<&str> = err.lines().collect();
        assert!(
            lines
                .first()
                .is_some_and(|l| l.starts_with(&format!("{name}: error: "))),
            "{name} {args:?}: the first line is no error:\n{err}"
        );
        for l in &lines {
            let rest = l
                .strip_prefix(&format!("{name}: error: "))
                .or_else(|| l.strip_prefix(&format!("{name}: hint: ")));
            assert!(
                rest.is_some_and(|r| !r.trim().is_empty()),
                "{name} {args:?}: a line out of form: {l:?} in\n{err}"
            );
        }
        // Each cause once: no line says the same thing twice over.
        for l in &lines {
            let body = l.split_once(": ").map_or(*l, |(_, b)| b);
            let parts: Vec<&str> = body.split(": ").collect();
            let mut seen = std::collections::BTreeSet::new();
            for p in parts.iter().filter(|p| p.contains("os error")) {
                assert!(seen.insert(*p), "{name} {args:?}: {p:?} twice in {l:?}");
            }
        }
    }
}

#[test]
fn with_json_every_error_is_one_json_object() {
    for (name, args) in cases() {
        if name == "vlx-node" {
            // vlx-node reports nothing else, so it takes no --json.
            continue;
        }
        let mut args = args.clone();
        args.push("--json");
        let o = run(name, &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{name} {args:?}: {err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{name} {args:?}: not one line:\n{err}");
        let v: serde_json::Value = serde_json::from_str(lines[0])
            .unwrap_or_else(|e| panic!("{name} {args:?}: not JSON ({e}): {err}"));
        assert_eq!(v["program"], name, "{v}");
        assert_eq!(v["exit_code"], 2, "{v}");
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{name}: {v}"
        );
        assert!(v["errors"].as_array().is_some_and(|a| !a.is_empty()));
    }
}

#[test]
fn help_and_version_exit_0_everywhere() {
    for name in BINARIES {
        for flag in ["--help", "--version"] {
            let o = run(name, &[flag]);
            let out = String::from_utf8_lossy(&o.stdout);
            assert_eq!(o.status.code(), Some(0), "{name} {flag}: {out}");
            assert!(out.contains(name), "{name} {flag}: {out}");
        }
        let o = run(name, &["--version"]);
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            format!("{name} {}", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn internal_commands_stay_out_of_help() {
    let o = run("vlx-install", &["--help"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("reset-node"), "{out}");
    assert!(!out.contains("media-env"), "{out}");
}

#[test]
fn every_binary_prints_completions_bash_accepts() {
    for name in BINARIES {
        let o = run(name, &["completions", "bash"]);
        assert_eq!(o.status.code(), Some(0), "{name}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join(format!("{name}.bash"));
        std::fs::write(&f, &o.stdout).unwrap();
        let check = Command::new("bash").arg("-n").arg(&f).output().unwrap();
        assert!(
            check.status.success(),
            "{name}: bash -n: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let script = String::from_utf8_lossy(&o.stdout);
        assert!(
            script.contains("complete -F ") && script.contains(name),
            "{name}: {script}"
        );
    }
}

/// What bash offers after `vlx-install ` once the script is loaded: the
/// visible subcommands, never the media environment's internal one.
#[test]
fn completion_offers_visible_subcommands_only() {
    let o = run("vlx-install", &["completions", "bash"]);
    assert_eq!(o.status.code(), Some(0));
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("vlx-install.bash");
    std::fs::write(&f, &o.stdout).unwrap();
    let probe = format!(
        "source {}; COMP_WORDS=(vlx-install ''); COMP_CWORD=1; COMP_LINE='vlx-install '; \
         COMP_POINT=${{#COMP_LINE}}; _vlx__install vlx-install '' vlx-install; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        f.display()
    );
    let out = Command::new("bash").arg("-c").arg(&probe).output().unwrap();
    let offered = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = offered.lines().collect();
    for visible in [
        "plan",
        "apply",
        "status",
        "verify",
        "reset-node",
        "completions",
    ] {
        assert!(words.contains(&visible), "{visible} not offered: {words:?}");
    }
    assert!(
        !words.contains(&"media-env"),
        "the hidden media-env is offered: {words:?}"
    );
}
