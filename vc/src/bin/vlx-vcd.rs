//! `vlx-vcd`: the VC agent of one blade (see `vc::agent`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;
use cluster::{Bytes, NodeName};
use vc::agent::Agent;
use vc::etcd::{self, Compare, Etcd, Op};
use vc::netreload::{GANESHA_PIDS, NfsServer};
use vc::state::BladeRecord;
use vc::state::{NET, NetSettings, Snapshot, VCS, check_settings};
use vc::vm::{Accel, Host};

/// Registers this blade's capacity under a lease, places VMs while it is
/// the elected placer, and runs the VMs etcd assigns to this blade.
#[derive(Debug, Parser)]
#[command(name = "vlx-vcd", version)]
struct Args {
    /// This blade's name.
    #[arg(long)]
    blade: NodeName,
    /// Cores for VMs.
    #[arg(long)]
    cores: u32,
    /// Memory for VMs, e.g. 8GiB.
    #[arg(long)]
    memory: Bytes,
    /// The shared volume: guests' base images, VMs' overlays and saves.
    #[arg(long, value_name = "DIR")]
    shared: PathBuf,
    /// This blade's run folder (QMP and console sockets).
    #[arg(long, value_name = "DIR", default_value = "/run/vlx-vcd")]
    run: PathBuf,
    /// etcd endpoints, comma-separated (default: $VLX_ETCD, else
    /// /etc/vlx/etcd.conf).
    #[arg(long, value_name = "URLS")]
    etcd: Option<String>,
    /// Seconds the blade's registration outlives a silent agent; its VMs
    /// count as lost after that. Longer than the shared volume's NFS lease
    /// (10 s), so that a fenced blade's image locks are free before its
    /// VMs start elsewhere.
    #[arg(long, default_value_t = 15)]
    ttl: i64,
    /// Use KVM (only where a boot proved that it works; TCG otherwise).
    #[arg(long)]
    kvm: bool,
    /// Where the VC network files are written (the VC dnsmasq config, the
    /// VC hosts file, the NFS exports), as `/` is on a blade.
    #[arg(long, value_name = "DIR", default_value = "/")]
    net_root: PathBuf,
    /// The cluster's side of the VC networks (rendered by the installer
    /// from the cluster profile, `[vc]` pool included): recorded in etcd
    /// (`/vlx/net`) at the start when nobody has yet, and again whenever
    /// the file changes (unless it overlaps a VC); `vlx-vc set-net` sets
    /// it by hand. No file: nothing is recorded.
    #[arg(long, value_name = "FILE", default_value = vc::state::NET_SETTINGS_FILE)]
    net_settings: PathBuf,
    /// The cluster dnsmasq's pid file: sent SIGHUP when the VC names
    /// (`/etc/vlx/vc-hosts`) change (default: /run/dnsmasq/dnsmasq.pid,
    /// else /run/dnsmasq.pid).
    #[arg(long, value_name = "FILE")]
    cluster_dnsmasq_pid: Option<PathBuf>,
    /// The server of the VC shares while this blade holds the storage
    /// address: `kernel` (`exportfs -r` of /etc/exports.d/vlx-vc.exports),
    /// `ganesha` (SIGHUP to nfs-ganesha, whose config includes
    /// /etc/ganesha/vlx-vc.exports.conf), or `auto`: the kernel's where it
    /// has nfsd (loaded, built in, or its module in
    /// /lib/modules/RELEASE/kernel/fs/nfsd), else ganesha.
    #[arg(long, value_enum, default_value_t = NfsServerArg::Auto)]
    nfs_server: NfsServerArg,
    /// nfs-ganesha's pid file (default: /run/ganesha/ganesha.pid).
    #[arg(long, value_name = "FILE")]
    ganesha_pid: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum NfsServerArg {
    Auto,
    Kernel,
    Ganesha,
}

/// The settings file (`--net-settings`) and what this agent did with it:
/// at the start it is recorded as `/vlx/net` unless the key exists; when
/// its text changes later (the installer's rendering, updated by a change
/// of the cluster), it replaces `/vlx/net`, unless a cluster network of it
/// overlaps a VC's subnet.
#[derive(Debug)]
struct SettingsFile {
    path: PathBuf,
    /// The text last recorded (or found bad); `None` before the first.
    seen: Option<Vec<u8>>,
}

impl SettingsFile {
    /// The file's text when it differs from what was seen; `None` when it
    /// is the same or absent.
    fn changed(&self) -> Result<Option<Vec<u8>>, String> {
        match std::fs::read(&self.path) {
            Ok(t) if self.seen.as_ref() == Some(&t) => Ok(None),
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("reading {}: {e}", self.path.display())),
        }
    }

    /// Checks the file at the start: bad input stops the agent.
    fn check(&self) -> Result<(), String> {
        match self.changed()? {
            Some(_) => NetSettings::read(&self.path).map(drop),
            None => Ok(()),
        }
    }

    /// Records the file when it changed; says what it did.
    fn sync(&mut self, etcd: &Etcd) -> Result<Option<String>, String> {
        let Some(text) = self.changed()? else {
            return Ok(None);
        };
        let file = self.path.display().to_string();
        let settings = match NetSettings::read(&self.path) {
            Ok(s) => s,
            Err(e) => {
                // Said once; the file is read again when it changes.
                self.seen = Some(text);
                return Err(e);
            }
        };
        let value = serde_json::to_vec(&settings).map_err(|e| format!("encoding {file}: {e}"))?;
        let said = if self.seen.is_none() {
            let put = etcd
                .txn(&[Compare::Absent(NET.into())], &[Op::put(NET, value)])
                .map_err(|e| format!("recording {file}: {e:#}"))?;
            put.then(|| format!("recorded {file} as {NET}"))
        } else {
            let snap = Snapshot::read(etcd).map_err(|e| format!("reading /vlx/: {e:#}"))?;
            if let Err(e) = check_settings(&snap, &settings, &file) {
                self.seen = Some(text);
                return Err(format!("{e}; {NET} is left as it was"));
            }
            let put = etcd
                .txn(
                    &[Compare::PrefixUnchangedSince(VCS.into(), snap.revision)],
                    &[Op::put(NET, value)],
                )
                .map_err(|e| format!("recording {file}: {e:#}"))?;
            if !put {
                // A VC changed meanwhile: checked again next round.
                return Ok(None);
            }
            Some(format!("{file} changed: recorded as {NET}"))
        };
        self.seen = Some(text);
        Ok(said)
    }
}

/// How often the agent reconciles: a third of the shortest sensible TTL,
/// so the lease is renewed in time.
const TICK: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    let a = Args::parse();
    let eps = match etcd::endpoints(a.etcd.as_deref()).and_then(|e| Etcd::new(&e)) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("vlx-vcd: {e:#}");
            return ExitCode::from(2);
        }
    };
    if a.ttl < 3 {
        eprintln!("vlx-vcd: --ttl {} is too short (at least 3 seconds)", a.ttl);
        return ExitCode::from(2);
    }
    let mut settings = SettingsFile {
        path: a.net_settings.clone(),
        seen: None,
    };
    if let Err(e) = settings.check() {
        eprintln!("vlx-vcd: {e}");
        return ExitCode::from(2);
    }
    let host = Host {
        shared: a.shared,
        run: a.run,
        accel: if a.kvm { Accel::Kvm } else { Accel::Tcg },
    };
    let cap = BladeRecord {
        cores: a.cores,
        memory: a.memory,
    };
    let mut agent = Agent::new(a.blade, cap, eps, host, a.ttl);
    agent.net_root = a.net_root;
    if let Some(p) = a.cluster_dnsmasq_pid {
        agent.cluster_dnsmasq_pid = vec![p];
    }
    let ganesha = NfsServer::Ganesha {
        pidfiles: match a.ganesha_pid {
            Some(p) => vec![p],
            None => GANESHA_PIDS.iter().map(PathBuf::from).collect(),
        },
    };
    agent.nfs_server = match a.nfs_server {
        NfsServerArg::Auto => match NfsServer::detect() {
            NfsServer::Kernel => NfsServer::Kernel,
            NfsServer::Ganesha { .. } => ganesha,
        },
        NfsServerArg::Kernel => NfsServer::Kernel,
        NfsServerArg::Ganesha => ganesha,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&stop)) {
            eprintln!("vlx-vcd: cannot handle signal {sig}: {e}");
            return ExitCode::from(1);
        }
    }
    eprintln!("vlx-vcd: blade {} up", agent.me);
    while !stop.load(Ordering::Relaxed) {
        match settings.sync(&agent.etcd) {
            Ok(Some(said)) => eprintln!("vlx-vcd: {said}"),
            Ok(None) => {}
            Err(e) => eprintln!("vlx-vcd: {e}"),
        }
        match agent.tick() {
            Ok(errors) => {
                for e in errors {
                    eprintln!("vlx-vcd: {e}");
                }
            }
            Err(e) => {
                eprintln!("vlx-vcd: {e:#}");
                for vm in agent.fence_if_cut_off() {
                    eprintln!("vlx-vcd: cut off from etcd: killed {vm}");
                }
            }
        }
        std::thread::sleep(TICK);
    }
    // VMs keep running, and the registration lives out its lease: an agent
    // restarted within the TTL re-adopts its VMs before anyone counts them
    // lost.
    ExitCode::SUCCESS
}
