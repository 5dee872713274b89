//! Rendering: golden files, and the verdicts of `nft -c` and `dnsmasq
//! --test` on every blade's text. `VLX_BLESS=1` rewrites the golden files.

#![allow(clippy::unwrap_used)] // helpers panic on setup errors by design

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use vc_net::{NetPlan, render};

fn golden(name: &str, got: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("VLX_BLESS").is_some() {
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (VLX_BLESS=1 writes it)", path.display()));
    assert!(
        want == got,
        "{} differs from the rendering (VLX_BLESS=1 rewrites it):\n{got}",
        path.display()
    );
}

fn scratch(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Runs a checker; a checker that cannot start fails the test, naming it.
fn verdict(cmd: &mut Command) -> (i32, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} ({e}); `cargo xtask deps` installs it"));
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn nft_check(path: &Path) -> (i32, String) {
    verdict(Command::new("nft").arg("-c").arg("-f").arg(path))
}

fn dnsmasq_check(path: &Path) -> (i32, String) {
    verdict(
        Command::new("dnsmasq")
            .arg("--test")
            .arg(format!("--conf-file={}", path.display())),
    )
}

#[test]
fn every_blades_text_matches_its_golden_file_and_passes_the_tools() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = NetPlan::new(&common::demo()).unwrap();
    for b in ["b1", "b2", "b3"] {
        let part = plan.blade(b).unwrap();

        let routes = render::routes(&part);
        golden(&format!("{b}.routes"), &routes);

        let nft = render::nftables(&plan, &part);
        golden(&format!("{b}.nft"), &nft);
        let path = scratch(&tmp, &format!("{b}.nft"), &nft);
        let (code, out) = nft_check(&path);
        assert_eq!(code, 0, "nft -c -f {}: {out}", path.display());

        let dns = render::dnsmasq(&plan, &part);
        golden(&format!("{b}.dnsmasq.conf"), &dns);
        let path = scratch(&tmp, &format!("{b}.dnsmasq.conf"), &dns);
        let (code, out) = dnsmasq_check(&path);
        assert_eq!(code, 0, "dnsmasq --test {}: {out}", path.display());
        assert!(out.contains("syntax check OK"), "{out}");
    }
    golden("exports", &render::exports(&plan));
    golden("ganesha.exports.conf", &render::ganesha_exports(&plan));
    golden(
        "ganesha.conf",
        &render::ganesha_conf(
            &format!("/{}", vc_net::apply::GANESHA_EXPORTS),
            render::GANESHA_RECOVERY,
        ),
    );
    golden("hosts", &render::hosts(&plan));
    golden("a.fstab", &render::guest_fstab(&plan, "a"));
}

#[test]
fn a_plan_with_no_vcs_still_renders_valid_text() {
    let tmp = tempfile::tempdir().unwrap();
    let mut input = common::demo();
    input.vcs.clear();
    let plan = NetPlan::new(&input).unwrap();
    let part = plan.blade("b1").unwrap();
    assert_eq!(render::routes(&part), "");
    let (code, out) = nft_check(&scratch(&tmp, "empty.nft", &render::nftables(&plan, &part)));
    assert_eq!(code, 0, "{out}");
    let (code, out) = dnsmasq_check(&scratch(&tmp, "empty.conf", &render::dnsmasq(&plan, &part)));
    assert_eq!(code, 0, "{out}");
}

/// The checkers do judge: a broken line in either file is refused (so the
/// verdicts above are worth something).
#[test]
fn the_checkers_refuse_a_broken_file() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = NetPlan::new(&common::demo()).unwrap();
    let part = plan.blade("b1").unwrap();
    let nft = render::nftables(&plan, &part).replace("masquerade", "masquerad");
    let (code, out) = nft_check(&scratch(&tmp, "broken.nft", &nft));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("masquerad"), "{out}");
    let dns = render::dnsmasq(&plan, &part).replace("dhcp-host=", "dhcp-hots=");
    let (code, out) = dnsmasq_check(&scratch(&tmp, "broken.conf", &dns));
    let line = dns
        .lines()
        .position(|l| l.starts_with("dhcp-hots="))
        .unwrap()
        + 1;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("bad option at line {line} ")),
        "{out}"
    );
}

#[test]
fn rendering_is_deterministic() {
    let plan = NetPlan::new(&common::demo()).unwrap();
    let again = NetPlan::new(&common::demo()).unwrap();
    for b in ["b1", "b2"] {
        assert_eq!(
            render::nftables(&plan, &plan.blade(b).unwrap()),
            render::nftables(&again, &again.blade(b).unwrap())
        );
        assert_eq!(
            render::dnsmasq(&plan, &plan.blade(b).unwrap()),
            render::dnsmasq(&again, &again.blade(b).unwrap())
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(12))]

    /// Any valid placement (VCs of any size, outside or not, VMs on any
    /// blade) renders rulesets nft accepts and configs dnsmasq accepts.
    #[test]
    fn any_plan_renders_text_the_tools_accept(
        vcs in proptest::collection::vec((proptest::collection::vec(0usize..3, 0..6), proptest::bool::ANY), 0..5),
        blade in 0usize..3,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let mut input = common::demo();
        input.vcs = vcs
            .iter()
            .enumerate()
            .map(|(v, (vms, outside))| vc_net::VcInput {
                name: format!("vc{v}"),
                subnet: format!("10.201.{v}.0/24").parse().unwrap(),
                outside: *outside,
                vms: vms
                    .iter()
                    .enumerate()
                    .map(|(i, b)| common::vm(&format!("n{i}"), &format!("02:76:01:{v:02x}:00:{i:02x}"), &format!("b{}", b + 1)))
                    .collect(),
            })
            .collect();
        let plan = NetPlan::new(&input).unwrap();
        let part = plan.blade(&format!("b{}", blade + 1)).unwrap();
        let (code, out) = nft_check(&scratch(&tmp, "p.nft", &render::nftables(&plan, &part)));
        proptest::prop_assert_eq!(code, 0, "{}", out);
        let (code, out) = dnsmasq_check(&scratch(&tmp, "p.conf", &render::dnsmasq(&plan, &part)));
        proptest::prop_assert_eq!(code, 0, "{}", out);
    }
}

#[test]
fn the_blades_files_are_written_once_and_again_only_when_they_change() {
    use vc_net::apply::{DNSMASQ_CONF, EXPORTS, GANESHA_EXPORTS, HOSTS, write_files};
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut input = common::demo();
    let plan = NetPlan::new(&input).unwrap();
    let b1 = plan.blade("b1").unwrap();
    let first = write_files(root, &plan, &b1).unwrap();
    assert_eq!(
        first,
        [
            root.join(DNSMASQ_CONF),
            root.join(HOSTS),
            root.join(EXPORTS),
            root.join(GANESHA_EXPORTS)
        ]
    );
    assert_eq!(
        std::fs::read_to_string(root.join(DNSMASQ_CONF)).unwrap(),
        render::dnsmasq(&plan, &b1)
    );
    assert!(write_files(root, &plan, &b1).unwrap().is_empty());
    // a/vm2 moves to b1: b1's DHCP changes, names and exports do not.
    input.vcs[0].vms[1].blade = "b1".into();
    let moved = NetPlan::new(&input).unwrap();
    let changed = write_files(root, &moved, &moved.blade("b1").unwrap()).unwrap();
    assert_eq!(changed, [root.join(DNSMASQ_CONF)]);
}

/// Ganesha's `Export_Id`s: one per VC, none 0 (the pseudo root's), none
/// twice, even among 2000 VCs where some names give the same
/// number; a VC's id does not depend on the blade, and one whose number
/// nobody else takes keeps it whatever the other VCs are.
#[test]
fn every_vc_gets_its_own_stable_ganesha_export_id() {
    let mut input = common::demo();
    input.vcs = (0..2000usize)
        .map(|v| vc_net::VcInput {
            name: format!("vc{v}"),
            subnet: format!("10.{}.{}.0/24", 100 + v / 256, v % 256)
                .parse()
                .unwrap(),
            outside: false,
            vms: Vec::new(),
        })
        .collect();
    let plan = NetPlan::new(&input).unwrap();
    let ids = render::export_ids(&plan);
    assert_eq!(ids.len(), plan.vcs.len());
    let mut seen = std::collections::BTreeSet::new();
    for (vc, id) in &ids {
        assert_ne!(*id, 0, "{vc}");
        assert!(seen.insert(*id), "{vc}: Export_Id {id} twice");
    }
    let alone = |name: &str| {
        let mut one = common::demo();
        one.vcs.retain(|v| v.name == "a");
        one.vcs[0].name = name.into();
        one.vcs[0].vms.clear();
        render::export_ids(&NetPlan::new(&one).unwrap())[0].1
    };
    let kept = ids.iter().filter(|(vc, id)| alone(vc) == *id).count();
    // With 2000 names over 65535 numbers some collide; most keep theirs.
    assert!(
        kept > ids.len() * 9 / 10,
        "{kept} of {} kept their own id",
        ids.len()
    );
    assert!(
        kept < ids.len(),
        "no collision among 2000 names: the probing is untested"
    );
}
