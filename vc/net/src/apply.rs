//! The executor: puts one blade's part of a [`NetPlan`] in place in a network
//! namespace (a blade's own, or a named one in tests), with `ip`, `nft` and
//! `sysctl`. It decides nothing: what it sets comes from the plan.
//!
//! Idempotent: applying the same plan twice changes nothing the second time;
//! applying a newer plan (a VM moved) removes the taps and routes of vlx that
//! the plan no longer has. vlx's taps are recognised by their name
//! ([`crate::model::is_tap_name`]) and its routes by their protocol number
//! ([`ROUTE_PROTO`]); nothing else of the blade is touched.
//!
//! A link that already has a VM's tap name is kept as it is, whatever its
//! kind: QEMU may have made the tap, and tests put a veth there in place of
//! a VM's NIC.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::model::{BladeNet, NetPlan, is_tap_name};
use crate::render::{self, ROUTE_PROTO};

/// Where to apply: the namespace this process runs in, or a named one
/// (`ip netns`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Netns {
    Current,
    Named(String),
}

/// A command of the executor that could not run or failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("starting `{cmd}`: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Failed {
        cmd: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("reading the JSON of `{cmd}`: {detail}")]
    Parse { cmd: String, detail: String },
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What an apply changed, for logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub taps_added: Vec<String>,
    pub taps_removed: Vec<String>,
    pub routes_removed: Vec<String>,
    /// Every route of the plan, put in place with `ip route replace`.
    pub routes: usize,
}

impl Netns {
    fn wrap(&self, program: &str) -> Command {
        match self {
            Netns::Current => Command::new(program),
            Netns::Named(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
        }
    }

    fn ip(&self) -> Command {
        let mut c = Command::new("ip");
        if let Netns::Named(ns) = self {
            c.args(["-n", ns]);
        }
        c
    }
}

fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn run(mut cmd: Command, stdin: Option<&str>) -> Result<String, ApplyError> {
    let name = show(&cmd);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| ApplyError::Spawn {
        cmd: name.clone(),
        source,
    })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|source| ApplyError::Spawn {
                cmd: name.clone(),
                source,
            })?;
    }
    let out = child
        .wait_with_output()
        .map_err(|source| ApplyError::Spawn {
            cmd: name.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(ApplyError::Failed {
            cmd: name,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn json(cmd: Command) -> Result<Vec<Value>, ApplyError> {
    let name = show(&cmd);
    let text = run(cmd, None)?;
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(&text).map_err(|e| ApplyError::Parse {
        cmd: name,
        detail: e.to_string(),
    })
}

fn sysctl(ns: &Netns, key: &str, value: &str) -> Result<(), ApplyError> {
    let mut c = ns.wrap("sysctl");
    c.args(["-qw", &format!("{key}={value}")]);
    run(c, None).map(drop)
}

/// The names of vlx's taps in the namespace.
pub fn taps(ns: &Netns) -> Result<BTreeSet<String>, ApplyError> {
    let mut c = ns.ip();
    c.args(["-j", "link", "show"]);
    Ok(json(c)?
        .iter()
        .filter_map(|l| l.get("ifname")?.as_str())
        .filter(|n| is_tap_name(n))
        .map(str::to_owned)
        .collect())
}

/// vlx's routes in the namespace: `(destination, next hop or device)`.
pub fn routes(ns: &Netns) -> Result<Vec<(String, String)>, ApplyError> {
    let mut c = ns.ip();
    c.args([
        "-j",
        "-4",
        "route",
        "show",
        "table",
        "main",
        "proto",
        &ROUTE_PROTO.to_string(),
    ]);
    Ok(json(c)?
        .iter()
        .filter_map(|r| {
            let dst = r.get("dst")?.as_str()?.to_owned();
            let hop = r
                .get("gateway")
                .or_else(|| r.get("dev"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            Some((dst, hop))
        })
        .collect())
}

/// Puts `blade`'s part of `plan` in place in `ns`: forwarding on, a tap per
/// local VM (up, the VC's gateway on it, proxy ARP), stale taps and routes
/// gone, a /32 route to every VM, and the nftables table replaced.
pub fn apply(ns: &Netns, plan: &NetPlan, blade: &BladeNet) -> Result<Report, ApplyError> {
    let mut report = Report::default();
    sysctl(ns, "net.ipv4.ip_forward", "1")?;

    let want: BTreeSet<&str> = blade.local.iter().map(|l| l.tap.as_str()).collect();
    let have = taps(ns)?;
    for stale in have.iter().filter(|t| !want.contains(t.as_str())) {
        let mut c = ns.ip();
        c.args(["link", "del", "dev", stale]);
        run(c, None)?;
        report.taps_removed.push(stale.clone());
    }
    for vm in &blade.local {
        if !have.contains(&vm.tap) {
            let mut c = ns.ip();
            c.args(["tuntap", "add", "dev", &vm.tap, "mode", "tap"]);
            run(c, None)?;
            report.taps_added.push(vm.tap.clone());
        }
        let mut c = ns.ip();
        c.args(["link", "set", "dev", &vm.tap, "up"]);
        run(c, None)?;
        let mut c = ns.ip();
        c.args([
            "addr",
            "replace",
            &render::tap_addr(vm.gateway, vm.subnet.prefix()),
            "dev",
            &vm.tap,
            "noprefixroute",
        ]);
        run(c, None)?;
        sysctl(ns, &format!("net.ipv4.conf.{}.proxy_arp", vm.tap), "1")?;
        // The kernel delays proxy ARP answers by up to 0.8 s by default
        // (proxy_delay, for hosts that would answer themselves); nobody
        // else answers for a VM's neighbours on its tap.
        sysctl(ns, &format!("net.ipv4.neigh.{}.proxy_delay", vm.tap), "0")?;
    }

    let dests: BTreeSet<String> = blade
        .local
        .iter()
        .map(|l| l.addr.to_string())
        .chain(blade.routes.iter().map(|r| r.dest.to_string()))
        .collect();
    for (dst, hop) in routes(ns)? {
        if !dests.contains(&dst) {
            let mut c = ns.ip();
            c.args([
                "route",
                "del",
                &format!("{dst}/32"),
                "proto",
                &ROUTE_PROTO.to_string(),
            ]);
            run(c, None)?;
            report.routes_removed.push(format!("{dst} via {hop}"));
        }
    }
    let batch = render::routes(blade);
    if !batch.is_empty() {
        let mut c = ns.ip();
        c.args(["-batch", "-"]);
        run(c, Some(&batch))?;
    }
    report.routes = blade.local.len() + blade.routes.len();

    let mut c = ns.wrap("nft");
    c.args(["-f", "-"]);
    run(c, Some(&render::nftables(plan, blade)))?;
    Ok(report)
}

/// The blade's VC dnsmasq config (its own instance: `dnsmasq
/// --conf-file=/etc/vlx/vc-dnsmasq.conf`), relative to the root.
pub const DNSMASQ_CONF: &str = "etc/vlx/vc-dnsmasq.conf";
/// Every VM's name, for the cluster dnsmasq's `addn-hosts=`.
/// `contracts::names::vc::HOSTS`, relative to the root.
pub const HOSTS: &str = "etc/vlx/vc-hosts";
/// The VCs' NFS exports, read by `exportfs -r` on the blade that holds the
/// shared volume.
pub const EXPORTS: &str = "etc/exports.d/vlx-vc.exports";
/// The same exports for nfs-ganesha ([`render::ganesha_exports`]), which
/// the blade's ganesha config includes (`%include`) and re-reads on
/// SIGHUP where the storage holder's kernel has no nfsd.
pub const GANESHA_EXPORTS: &str = "etc/ganesha/vlx-vc.exports.conf";

/// Writes the blade's VC files under `root` ([`DNSMASQ_CONF`], [`HOSTS`],
/// [`EXPORTS`], [`GANESHA_EXPORTS`]), each replaced by a rename only when
/// its text changed, and returns the ones that changed: the caller reloads
/// dnsmasq (SIGHUP for the hosts file, a restart for its config), runs
/// `exportfs -r` or sends nfs-ganesha SIGHUP for those.
pub fn write_files(
    root: &Path,
    plan: &NetPlan,
    blade: &BladeNet,
) -> Result<Vec<PathBuf>, ApplyError> {
    let mut changed = Vec::new();
    for (rel, text) in [
        (DNSMASQ_CONF, render::dnsmasq(plan, blade)),
        (HOSTS, render::hosts(plan)),
        (EXPORTS, render::exports(plan)),
        (GANESHA_EXPORTS, render::ganesha_exports(plan)),
    ] {
        let path = root.join(rel);
        let io = |source| ApplyError::Io {
            path: path.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(old) if old == text => continue,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("vlx-tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        // Read by daemons that dropped root (the cluster dnsmasq re-reads
        // the hosts file as its own user), whatever the umask.
        f.set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        changed.push(path);
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_file_is_where_the_cluster_dnsmasq_reads_it() {
        assert_eq!(format!("/{HOSTS}"), contracts::names::vc::HOSTS);
    }
}
