//! What the blade's other daemons do when `vlx-vcd` rewrites a VC network
//! file (`vc_net::apply::write_files`): the cluster dnsmasq re-reads the VC
//! names on SIGHUP; the holder of the shared volume re-exports on
//! `exportfs -r`. Executors only: what changed comes from the caller.

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
    if comm.trim() != "dnsmasq" {
        bail!(
            "{}: process {pid} is not a dnsmasq (a stale pid file?)",
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

/// Runs `exportfs -r` (every file of `/etc/exports` and `/etc/exports.d/`
/// again) when this blade holds the plan's storage address, after making
/// each VC's shared folder (`vc_net::render::vc_dir`) on the shared volume
/// when it is mounted (if it is not, the exports' `mountpoint=` keeps them
/// unexported, and nothing is made on the blade's root). `false` when this
/// blade does not hold the address (the holder's own agent, or the VIP's
/// takeover, exports).
pub fn reexport(plan: &vc_net::NetPlan, exports: &Path) -> anyhow::Result<bool> {
    if !holds(plan.storage)? {
        return Ok(false);
    }
    let shared = Path::new(&plan.shared_dir);
    if shared.is_dir() && is_mount_point(shared)? {
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
    }
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
    Ok(true)
}
