//! The VC exports for nfs-ganesha, judged by ganesha itself and by an NFS
//! client nobody here wrote: the rendered main config
//! (`render::ganesha_conf`) and the VCs' `EXPORT` blocks
//! (`apply::GANESHA_EXPORTS`, as `write_files` leaves them) are loaded by a
//! real `ganesha.nfsd` in a private network namespace; libnfs's `nfs-ls` and
//! `nfs-cp` (user space, NFSv4, no kernel client needed) speak to it from
//! another namespace whose address is in one VC's subnet or the other's.
//! Ganesha has no check mode: a config it cannot use is seen in its log and
//! in what it serves.
//!
//! Needs root (network namespaces), `ganesha.nfsd` (Debian nfs-ganesha,
//! nfs-ganesha-vfs) and `nfs-ls`/`nfs-cp` (Debian libnfs-utils); it fails,
//! saying so, where it cannot run.

#![allow(clippy::unwrap_used)] // helpers panic on setup errors by design

mod common;

use common::{ok, sh};

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use vc_net::{NetPlan, apply, render};

/// How long ganesha may take to start or to re-read its exports on a
/// loaded machine: a wait, not an assertion on speed.
const WAIT: Duration = Duration::from_secs(120);

/// A server namespace (`<p>s`, the storage address on `v0`) and a client
/// namespace (`<p>c`, on the other end of the veth); ganesha in the
/// server's. Everything ends on drop.
struct Lab {
    ns: [String; 2],
    ganesha: Option<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut g) = self.ganesha.take() {
            let _ = g.kill();
            let _ = g.wait();
        }
        for ns in &self.ns {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
    }
}

impl Lab {
    fn new(storage: &str) -> Lab {
        // SAFETY: getuid has no preconditions and cannot fail.
        let root = unsafe { libc::getuid() } == 0;
        assert!(
            root,
            "this test builds network namespaces and must run as root"
        );
        let p = format!("vcg{}", std::process::id());
        let lab = Lab {
            ns: [format!("{p}s"), format!("{p}c")],
            ganesha: None,
        };
        let [s, c] = &lab.ns;
        ok(&["ip", "netns", "add", s]);
        ok(&["ip", "netns", "add", c]);
        ok(&[
            "ip", "-n", s, "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", c,
        ]);
        ok(&[
            "ip",
            "-n",
            s,
            "addr",
            "add",
            &format!("{storage}/32"),
            "dev",
            "v0",
        ]);
        for (ns, dev) in [(s, "v0"), (c, "v1")] {
            ok(&["ip", "-n", ns, "link", "set", dev, "up"]);
            ok(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        ok(&["ip", "-n", c, "route", "add", storage, "dev", "v1"]);
        lab
    }

    /// Gives the client namespace `addr` (and nothing else), with its way
    /// back from the server.
    fn client_addr(&self, addr: &str) {
        let [s, c] = &self.ns;
        ok(&["ip", "-n", c, "addr", "flush", "dev", "v1"]);
        ok(&[
            "ip",
            "-n",
            c,
            "addr",
            "add",
            &format!("{addr}/32"),
            "dev",
            "v1",
        ]);
        ok(&["ip", "-n", c, "route", "replace", "default", "dev", "v1"]);
        ok(&[
            "ip",
            "-n",
            s,
            "route",
            "replace",
            &format!("{addr}/32"),
            "dev",
            "v0",
        ]);
    }

    /// `nfs-ls`/`nfs-cp` with `args`, in the client namespace.
    fn client(&self, args: &[&str]) -> Output {
        let mut cmd = vec!["ip", "netns", "exec", &self.ns[1], "timeout", "60"];
        cmd.extend(args);
        sh(&cmd)
    }
}

fn url(storage: &str, path: &str) -> String {
    format!("nfs://{storage}{path}?version=4")
}

/// Waits until ganesha's log says `what`, or fails with the log.
fn wait_log(log: &Path, what: &str, count: usize) {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.matches(what).count() >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ganesha did not log `{what}` within {WAIT:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn ganesha_serves_each_vc_share_to_its_subnet_only_and_rereads_on_sighup() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut input = common::demo();
    input.shared_dir = dir.join("shared").display().to_string();
    // First only VC a: b comes with a SIGHUP.
    let b = input.vcs.remove(1);
    let plan_a = NetPlan::new(&input).unwrap();
    input.vcs.push(b);
    let plan = NetPlan::new(&input).unwrap();
    for vc in &plan.vcs {
        std::fs::create_dir_all(render::vc_dir(&plan, &vc.name)).unwrap();
        // Mode 1777, as `vlx-vcd` makes a share.
        ok(&["chmod", "1777", &render::vc_dir(&plan, &vc.name)]);
    }
    let root = dir.join("root");
    let changed = apply::write_files(&root, &plan_a, &plan_a.blade("b1").unwrap()).unwrap();
    let exports = root.join(apply::GANESHA_EXPORTS);
    assert!(changed.contains(&exports), "{changed:?}");
    let recovery = dir.join("recovery");
    std::fs::create_dir_all(&recovery).unwrap();
    let conf = dir.join("ganesha.conf");
    std::fs::write(
        &conf,
        render::ganesha_conf(
            &exports.display().to_string(),
            &recovery.display().to_string(),
        ),
    )
    .unwrap();

    let storage = plan.storage.to_string();
    let mut lab = Lab::new(&storage);
    let log = dir.join("ganesha.log");
    let pid = dir.join("ganesha.pid");
    lab.ganesha = Some(
        Command::new("ip")
            .args(["netns", "exec", &lab.ns[0], "ganesha.nfsd", "-F", "-f"])
            .arg(&conf)
            .arg("-L")
            .arg(&log)
            .arg("-p")
            .arg(&pid)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run ganesha.nfsd (Debian nfs-ganesha, nfs-ganesha-vfs): {e}")
            }),
    );
    wait_log(&log, "NFS SERVER INITIALIZED", 1);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("Configuration file successfully parsed"),
        "{text}"
    );
    for bad in [":CRIT :Error", "Config File", ":MAJ :Export"] {
        assert!(!text.contains(bad), "ganesha complained ({bad}):\n{text}");
    }

    let a_dir = render::vc_dir(&plan, "a");
    let b_dir = render::vc_dir(&plan, "b");
    // A client of VC a's subnet writes into a's share: the file lands in
    // the directory, owned by nobody (root squashed).
    lab.client_addr("10.200.0.2");
    let token = dir.join("token");
    std::fs::write(&token, "vc-a-token\n").unwrap();
    let o = lab.client(&[
        "nfs-cp",
        &token.display().to_string(),
        &url(&storage, &format!("{a_dir}/from-a")),
    ]);
    assert!(
        o.status.success(),
        "nfs-cp into a's share from a's subnet: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let landed = Path::new(&a_dir).join("from-a");
    assert_eq!(std::fs::read_to_string(&landed).unwrap(), "vc-a-token\n");
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(
        std::fs::metadata(&landed).unwrap().uid(),
        65534,
        "root not squashed to nobody"
    );
    // b is not exported yet.
    let o = lab.client(&["nfs-ls", &url(&storage, &b_dir)]);
    assert!(
        !o.status.success(),
        "b's share served before it was exported"
    );
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(
        said.contains("NFS4ERR_NOENT"),
        "not refused for want of an export: {said}"
    );

    // VC b added, SIGHUP: ganesha exports it; a client of b's subnet lists
    // it and does not see a's.
    let changed = apply::write_files(&root, &plan, &plan.blade("b1").unwrap()).unwrap();
    assert!(changed.contains(&exports), "{changed:?}");
    let p = std::fs::read_to_string(&pid).unwrap();
    ok(&["kill", "-HUP", p.trim()]);
    wait_log(&log, "Reread exports complete", 1);
    lab.client_addr("10.200.1.2");
    std::fs::write(Path::new(&b_dir).join("in-b"), "b\n").unwrap();
    let o = lab.client(&["nfs-ls", &url(&storage, &b_dir)]);
    let listed = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && listed.contains("in-b"),
        "nfs-ls of b's share from b's subnet after SIGHUP: {listed}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = lab.client(&["nfs-ls", &url(&storage, &a_dir)]);
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "b's subnet listed a's share: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(
        said.contains("NFS4ERR_NOENT"),
        "not refused by the export: {said}"
    );
}
