//! The VC export lines, judged by nfs-utils' own parser: `exportfs -r`
//! reads `/etc/exports` and every `/etc/exports.d/*.exports`, as on the
//! blade that holds the shared volume, and writes what it exports to
//! `/var/lib/nfs/etab`. This host's kernel has no NFS server, but
//! `exportfs` parses, resolves and records without one; it runs in a
//! private mount namespace (`unshare -m`) whose `/etc` is the host's with
//! the rendered files laid over it (overlayfs; `/etc/exports.d` holds only
//! the rendered file) and whose `/var/lib/nfs` is a fresh tmpfs, so
//! nothing of the host's exports is read or changed. What it cannot
//! show here: a VM mounting its share (that needs a kernel nfsd: a QEMU
//! blade).
//!
//! Needs root and `exportfs` (Debian nfs-kernel-server).

#![allow(clippy::unwrap_used)] // helpers panic on setup errors by design

mod common;

use std::path::Path;
use std::process::{Command, Output};

use vc_net::{NetPlan, apply, render};

/// `exportfs -r` over `root/etc`, then the etab it wrote.
fn exportfs(root: &Path, work: &Path) -> Output {
    let script = format!(
        "set -e\n\
         mount -t overlay vlxt-etc -o lowerdir=/etc,upperdir='{etc}',workdir='{work}' /etc\n\
         mount -t tmpfs vlxt-exports /etc/exports.d\n\
         cp '{etc}/exports.d/'* /etc/exports.d/\n\
         mount -t tmpfs vlxt-nfs /var/lib/nfs\n\
         exportfs -r\n\
         cat /var/lib/nfs/etab\n",
        etc = root.join("etc").display(),
        work = work.display(),
    );
    Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output()
        .unwrap_or_else(|e| panic!("cannot run unshare (util-linux): {e}"))
}

/// A plan whose shared volume is a folder of `dir`, with each VC's folder
/// made, and its files written under `dir/root` (an empty `/etc/exports`,
/// so that only the VCs' lines count).
fn setup(dir: &Path) -> (NetPlan, std::path::PathBuf) {
    let shared = dir.join("shared");
    let mut input = common::demo();
    input.shared_dir = shared.display().to_string();
    let plan = NetPlan::new(&input).unwrap();
    for vc in &plan.vcs {
        std::fs::create_dir_all(render::vc_dir(&plan, &vc.name)).unwrap();
    }
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/exports"), "").unwrap();
    let changed = apply::write_files(&root, &plan, &plan.blade("b1").unwrap()).unwrap();
    assert!(changed.contains(&root.join(apply::EXPORTS)), "{changed:?}");
    (plan, root)
}

#[test]
fn exportfs_exports_each_vc_folder_to_its_subnet_only() {
    let dir = tempfile::tempdir().unwrap();
    let (plan, root) = setup(dir.path());
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let out = exportfs(&root, &work);
    let etab = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "exportfs -r refused {}:\n{}",
        apply::EXPORTS,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = etab.lines().collect();
    assert_eq!(lines.len(), plan.vcs.len(), "{etab}");
    for vc in &plan.vcs {
        let path = render::vc_dir(&plan, &vc.name);
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("{path}\t")))
            .unwrap_or_else(|| panic!("{path} is not exported:\n{etab}"));
        let (_, client) = line.split_once('\t').unwrap();
        let (who, opts) = client.split_once('(').unwrap();
        assert_eq!(who, vc.subnet.to_string(), "{line}");
        let opts: Vec<&str> = opts.trim_end_matches(')').split(',').collect();
        for want in [
            "rw".to_owned(),
            "sync".to_owned(),
            "root_squash".to_owned(),
            "no_subtree_check".to_owned(),
            format!("fsid={}", render::export_fsid(&vc.name)),
            format!("mountpoint={}", plan.shared_dir),
        ] {
            assert!(opts.contains(&want.as_str()), "{want} missing: {line}");
        }
    }
}

/// The same check must fail, for the file's reason, on a line nfs-utils
/// does not take: exit 1, the file and the keyword named.
#[test]
fn exportfs_refuses_a_broken_export_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_, root) = setup(dir.path());
    let file = root.join(apply::EXPORTS);
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replacen("root_squash", "root_squash,bogus", 1)).unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let out = exportfs(&root, &work);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    // (nfs-utils counts the line without the comment above it.)
    assert!(
        said.contains("/etc/exports.d/vlx-vc.exports:")
            && said.contains("unknown keyword \"bogus\""),
        "{said}"
    );
}
