//! Helpers shared by the rendering and live service tests: profiles, their
//! plans, rendered node files.
//! Test helpers panic on failure by design.
#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

pub mod lab;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cluster::SanFacts;
use cluster::plan::Plan;
use installer::render::{NodeOverlays, write_tree};
use templating::Entry;

pub const PROFILES: [&str; 3] = ["demo.toml", "eurotech-4u.toml", "rack-64.toml"];

pub fn profiles_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/clusters")
}

pub fn overlays_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../overlays")
}

/// The plan of a profile under `profiles/clusters/`, at the SAN size the
/// profile names.
pub fn plan(profile: &str) -> Plan {
    let path = profiles_dir().join(profile);
    installer::prepare::plan_profile(&path, SanFacts::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .plan
}

/// Every node's rendered files, in plan order.
pub fn render_all(plan: &Plan) -> Vec<(String, Vec<Entry>)> {
    let overlays = NodeOverlays::load(plan, &profiles_dir()).unwrap();
    plan.nodes
        .iter()
        .map(|n| (n.name.to_string(), overlays.render(plan, n).unwrap()))
        .collect()
}

/// Renders every node of `plan` under `dir/<node>/`; returns the roots.
pub fn write_all(plan: &Plan, dir: &Path) -> Vec<(String, PathBuf)> {
    render_all(plan)
        .into_iter()
        .map(|(name, entries)| {
            let root = dir.join(&name);
            std::fs::create_dir_all(&root).unwrap();
            write_tree(&entries, &root).unwrap();
            (name, root)
        })
        .collect()
}

/// The content of `path` among `entries`, as text.
pub fn text<'a>(entries: &'a [Entry], path: &str) -> &'a str {
    let e = entries
        .iter()
        .find(|e| e.path == Path::new(path))
        .unwrap_or_else(|| panic!("no {path} among the rendered files"));
    match &e.kind {
        templating::Kind::File(b) => std::str::from_utf8(b).unwrap(),
        other => panic!("{path} is {other:?}, not a file"),
    }
}

/// Runs `cmd`, and panics with its output unless it succeeds.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
