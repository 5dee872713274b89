//! `vlx-vcd`: the VC agent of one blade (see `vc::agent`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;
use cluster::{Bytes, NodeName};
use vc::agent::Agent;
use vc::etcd::{self, Compare, Etcd, Op};
use vc::state::BladeRecord;
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
    /// count as lost after that.
    #[arg(long, default_value_t = 10)]
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
    /// (`/vlx/net`) when nobody has yet; `vlx-vc set-net` changes it later.
    /// No file: nothing is recorded.
    #[arg(long, value_name = "FILE", default_value = vc::state::NET_SETTINGS_FILE)]
    net_settings: PathBuf,
    /// The cluster dnsmasq's pid file: sent SIGHUP when the VC names
    /// (`/etc/vlx/vc-hosts`) change (default: /run/dnsmasq/dnsmasq.pid,
    /// else /run/dnsmasq.pid).
    #[arg(long, value_name = "FILE")]
    cluster_dnsmasq_pid: Option<PathBuf>,
}

/// The settings file to record in etcd, if there is one; a file that does
/// not read is bad input.
fn settings_to_record(path: &Path) -> Result<Option<Vec<u8>>, String> {
    if !path.exists() {
        return Ok(None);
    }
    let s = vc::state::NetSettings::read(path)?;
    serde_json::to_vec(&s)
        .map(Some)
        .map_err(|e| format!("encoding {}: {e}", path.display()))
}

/// Records the settings under `/vlx/net` unless the key exists (one
/// transaction: the first agent up wins, a later `set-net` is kept).
fn record_settings(etcd: &Etcd, value: &[u8]) -> anyhow::Result<bool> {
    etcd.txn(
        &[Compare::Absent(vc::state::NET.into())],
        &[Op::put(vc::state::NET, value.to_vec())],
    )
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
    let mut settings = match settings_to_record(&a.net_settings) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vlx-vcd: {e}");
            return ExitCode::from(2);
        }
    };
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
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&stop)) {
            eprintln!("vlx-vcd: cannot handle signal {sig}: {e}");
            return ExitCode::from(1);
        }
    }
    eprintln!("vlx-vcd: blade {} up", agent.me);
    while !stop.load(Ordering::Relaxed) {
        if let Some(value) = &settings {
            match record_settings(&agent.etcd, value) {
                Ok(recorded) => {
                    if recorded {
                        eprintln!(
                            "vlx-vcd: recorded {} as {}",
                            a.net_settings.display(),
                            vc::state::NET
                        );
                    }
                    settings = None;
                }
                Err(e) => eprintln!("vlx-vcd: recording {}: {e:#}", a.net_settings.display()),
            }
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
