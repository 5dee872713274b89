//! What the blade's other daemons do when `vlx-vcd` rewrites a VC network
//! file (`vc_net::apply::write_files`): the cluster dnsmasq re-reads the VC
//! names on SIGHUP; the holder of the shared volume re-exports, with
//! `exportfs -r` (the kernel's nfsd) or by SIGHUP to nfs-ganesha (where the
//! kernel has no nfsd). Executors only: what changed comes from the caller.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use std::os::unix::fs::PermissionsExt as _;

use anyhow::{Context, bail};

/// The mode of a VC's share when its holder makes it: sticky and
/// writable by all, as /tmp.
pub const SHARE_MODE: u32 = 0o1777;

/// Where the cluster dnsmasq keeps its pid when nothing else is said:
/// Debian's unit (`-x /run/dnsmasq/dnsmasq.pid`), then dnsmasq's own
/// default (`/var/run/dnsmasq.pid`, the tiny image's).
pub const CLUSTER_DNSMASQ_PIDS: [&str; 2] = ["/run/dnsmasq/dnsmasq.pid", "/run/dnsmasq.pid"];

/// Sends SIGHUP to the dnsmasq whose pid the first existing file of
/// `pidfiles` holds, so that it reads its `addn-hosts=` again. Returns the
/// pid signalled; `None` when no pid file exists (no cluster dnsmasq runs
/// here). A pid that is not a dnsmasq is an error naming the file.
pub fn hup_cluster_dnsmasq(pidfiles: &[PathBuf]) -> anyhow::Result<Option<u32>> {
    hup(pidfiles, "dnsmasq")
}

/// Sends SIGHUP to the process named `comm` whose pid the first existing
/// file of `pidfiles` holds; `None` when no pid file exists.
fn hup(pidfiles: &[PathBuf], comm_want: &str) -> anyhow::Result<Option<u32>> {
    let Some(file) = pidfiles.iter().find(|f| f.exists()) else {
        return Ok(None);
    };
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let pid: u32 = text
        .trim()
        .parse()
        .with_context(|| format!("{}: `{}` is not a pid", file.display(), text.trim()))?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != comm_want {
        bail!(
            "{}: process {pid} is not a {comm_want} (a stale pid file?)",
            file.display()
        );
    }
    let st = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .context("running kill")?;
    if !st.success() {
        bail!("kill -HUP {pid} ({}): {st}", file.display());
    }
    Ok(Some(pid))
}

/// True when `addr` is one of this network namespace's own addresses
/// (`ip -j -4 addr show`): this blade holds the storage VIP.
pub fn holds(addr: Ipv4Addr) -> anyhow::Result<bool> {
    let out = Command::new("ip")
        .args(["-j", "-4", "addr", "show"])
        .output()
        .context("running ip addr show (Debian iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip -j -4 addr show: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let links: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).context("reading the JSON of ip -j -4 addr show")?;
    let want = addr.to_string();
    Ok(links.iter().any(|l| {
        l["addr_info"]
            .as_array()
            .is_some_and(|a| a.iter().any(|i| i["local"].as_str() == Some(want.as_str())))
    }))
}

/// True when `dir` is a mount point (its device differs from its
/// parent's): the shared volume is mounted there.
fn is_mount_point(dir: &Path) -> anyhow::Result<bool> {
    use std::os::unix::fs::MetadataExt as _;
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let dev = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.dev())
            .with_context(|| format!("reading {}", p.display()))
    };
    Ok(dev(dir)? != dev(parent)?)
}

/// Where Debian's nfs-ganesha keeps its pid (`ganesha.nfsd -p`'s default,
/// `/var/run` being `/run`).
pub const GANESHA_PIDS: [&str; 1] = ["/run/ganesha/ganesha.pid"];

/// The NFS server that serves the VC shares on the blade holding the
/// storage address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NfsServer {
    /// The kernel's nfsd: `exportfs -r` reads `/etc/exports.d/`.
    Kernel,
    /// nfs-ganesha, its config including `vc_net::apply::GANESHA_EXPORTS`:
    /// SIGHUP to the pid of the first existing file.
    Ganesha { pidfiles: Vec<PathBuf> },
}

impl NfsServer {
    /// The kernel's nfsd where this kernel has one, nfs-ganesha otherwise
    /// ([`kernel_has_nfsd`] on `/`). Decided once, when `vlx-vcd` starts:
    /// on a blade that does not hold the storage address yet, nfsd is
    /// usually not loaded, and its module is what tells.
    pub fn detect() -> NfsServer {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        if kernel_has_nfsd(Path::new("/"), release.trim()) {
            NfsServer::Kernel
        } else {
            NfsServer::Ganesha {
                pidfiles: GANESHA_PIDS.iter().map(PathBuf::from).collect(),
            }
        }
    }

    /// The exports file (relative to the blade's root) this server reads.
    pub fn exports_file(&self) -> &'static str {
        match self {
            NfsServer::Kernel => vc_net::apply::EXPORTS,
            NfsServer::Ganesha { .. } => vc_net::apply::GANESHA_EXPORTS,
        }
    }
}

/// Whether the kernel `release` under `root` has an nfsd: loaded or built
/// in (`proc/fs/nfsd`, `sys/module/nfsd`), or as a module it can load
/// (`lib/modules/RELEASE/kernel/fs/nfsd/nfsd.ko`, compressed or not).
pub fn kernel_has_nfsd(root: &Path, release: &str) -> bool {
    if root.join("proc/fs/nfsd").exists() || root.join("sys/module/nfsd").exists() {
        return true;
    }
    if release.is_empty() || release.contains('/') {
        return false;
    }
    let dir = root
        .join("lib/modules")
        .join(release)
        .join("kernel/fs/nfsd");
    ["nfsd.ko", "nfsd.ko.xz", "nfsd.ko.zst", "nfsd.ko.gz"]
        .iter()
        .any(|f| dir.join(f).exists())
}

/// Makes each VC's shared folder (`vc_net::render::vc_dir`) on the shared
/// volume and has the server read its exports again, when this blade holds
/// the plan's storage address: `exportfs -r`, or SIGHUP to nfs-ganesha
/// (none running: it reads them when it starts). The folders are made only
/// when the shared volume is mounted (for the kernel's server, the exports'
/// `mountpoint=` keeps them unexported otherwise; nothing is made on the
/// blade's root). Says what it did; `None` when this blade does not hold
/// the address (the holder's own agent, or the VIP's takeover, exports).
pub fn reexport(
    plan: &vc_net::NetPlan,
    server: &NfsServer,
    exports: &Path,
) -> anyhow::Result<Option<String>> {
    if !holds(plan.storage)? {
        return Ok(None);
    }
    make_shares(plan)?;
    match server {
        NfsServer::Kernel => {
            let out = Command::new("exportfs")
                .arg("-r")
                .output()
                .context("running exportfs -r (Debian nfs-kernel-server)")?;
            if !out.status.success() {
                bail!(
                    "exportfs -r after {} changed: {}",
                    exports.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            Ok(Some("exportfs -r".into()))
        }
        NfsServer::Ganesha { pidfiles } => Ok(Some(
            match hup(pidfiles, "ganesha.nfsd")
                .with_context(|| format!("reloading nfs-ganesha after {}", exports.display()))?
            {
                Some(pid) => format!("nfs-ganesha {pid} reloaded"),
                None => "no nfs-ganesha runs here (it reads the exports when it starts)".into(),
            },
        )),
    }
}

/// Each VC's shared folder, mode [`SHARE_MODE`], when the shared volume is
/// mounted.
fn make_shares(plan: &vc_net::NetPlan) -> anyhow::Result<()> {
    let shared = Path::new(&plan.shared_dir);
    if !(shared.is_dir() && is_mount_point(shared)?) {
        return Ok(());
    }
    for vc in &plan.vcs {
        let dir = PathBuf::from(vc_net::render::vc_dir(plan, &vc.name));
        if dir.exists() {
            continue;
        }
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating VC {}'s share {}", vc.name, dir.display()))?;
        // The VMs' root is squashed to nobody and their users have
        // their own uids: like /tmp, everyone writes, and only a
        // file's owner removes it.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(SHARE_MODE))
            .with_context(|| format!("chmod {SHARE_MODE:o} {}", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_kernel_has_nfsd_when_loaded_or_as_a_module_it_can_load() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        assert!(!kernel_has_nfsd(root, "6.1.0-57-cloud-amd64"));
        let dir = root.join("lib/modules/6.1.0-57-cloud-amd64/kernel/fs/nfsd");
        std::fs::create_dir_all(&dir).unwrap();
        assert!(!kernel_has_nfsd(root, "6.1.0-57-cloud-amd64"));
        std::fs::write(dir.join("nfsd.ko.xz"), b"").unwrap();
        assert!(kernel_has_nfsd(root, "6.1.0-57-cloud-amd64"));
        // Another kernel's module does not count; nor does an odd release.
        assert!(!kernel_has_nfsd(root, "6.18.44"));
        assert!(!kernel_has_nfsd(root, ""));
        assert!(!kernel_has_nfsd(
            root,
            "../../lib/modules/6.1.0-57-cloud-amd64"
        ));
        std::fs::create_dir_all(root.join("sys/module/nfsd")).unwrap();
        assert!(kernel_has_nfsd(root, "6.18.44"));
    }

    #[test]
    fn each_server_reads_its_own_exports_file() {
        assert_eq!(NfsServer::Kernel.exports_file(), vc_net::apply::EXPORTS);
        let g = NfsServer::Ganesha { pidfiles: vec![] };
        assert_eq!(g.exports_file(), vc_net::apply::GANESHA_EXPORTS);
    }

    #[test]
    fn a_reload_signals_only_the_named_process() {
        let tmp = tempfile::tempdir().unwrap();
        let none = tmp.path().join("none.pid");
        assert_eq!(
            hup(std::slice::from_ref(&none), "ganesha.nfsd").unwrap(),
            None
        );
        // This test's own pid: not a ganesha, so no signal and an error
        // naming the file.
        let file = tmp.path().join("ganesha.pid");
        std::fs::write(&file, format!("{}\n", std::process::id())).unwrap();
        let e = format!(
            "{:#}",
            hup(&[none, file.clone()], "ganesha.nfsd").unwrap_err()
        );
        assert!(e.contains(&file.display().to_string()), "{e}");
        assert!(e.contains("is not a ganesha.nfsd"), "{e}");
        std::fs::write(&file, "x\n").unwrap();
        let e = format!("{:#}", hup(&[file], "ganesha.nfsd").unwrap_err());
        assert!(e.contains("is not a pid"), "{e}");
    }
}
