//! Virtual clusters: creating a VC (placement, its etcd transaction and a
//! qcow2 overlay per VM, not the boot) for 1, 16, 64 and 256 VMs against a
//! real etcd on loopback. The time should stay flat in the number of VMs
//! (64 VMs in under 1 s); the reference is the same overlays made with one
//! `qemu-img create` per VM. (For scale: AIST's manager needed about 45
//! minutes per VC.)
//!
//! Then, with the tiny guest under TCG: power-on to `vlx-guest: ready`
//! (median of 5), and saving and restoring a 256 MiB VM against copying
//! 256 MiB on the same disk.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cluster::Bytes;
use vc::etcd::Etcd;
use vc::state::{Snapshot, apply, plan_create, plan_destroy};
use vc::vm::{Accel, Host};
use vc::{Fit, Policy, Restart, VcId, VcName, VcSpec, VmIndex};

use crate::util::{ms, timed};

const SIZES: [u32; 4] = [1, 16, 64, 256];
/// Blades registered for the benchmark: room for 256 VMs under Free.
const BLADES: usize = 64;

struct EtcdProc(Child);

impl Drop for EtcdProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start_etcd(dir: &std::path::Path) -> anyhow::Result<(EtcdProc, Etcd)> {
    let (c, p) = (free_port()?, free_port()?);
    let url = format!("http://127.0.0.1:{c}");
    let peer = format!("http://127.0.0.1:{p}");
    let child = Command::new("etcd")
        .arg("--name=bench")
        .arg(format!("--data-dir={}", dir.join("etcd").display()))
        .arg(format!("--listen-client-urls={url}"))
        .arg(format!("--advertise-client-urls={url}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster=bench={peer}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting etcd (Debian etcd-server)")?;
    let proc = EtcdProc(child);
    let etcd = Etcd::new(&[url])?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while etcd.list("/").is_err() {
        if Instant::now() > deadline {
            bail!("etcd did not answer within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((proc, etcd))
}

fn spec(n: u32) -> anyhow::Result<VcSpec> {
    let name: VcName = format!("bench{n}").parse()?;
    Ok(VcSpec {
        id: VcId::from_name(&name),
        name,
        guest: "tiny".into(),
        vms: n,
        vcpus: 1,
        memory: Bytes::mib(128),
        placement: Policy::Cyclic,
        mode: Fit::Free,
        restart: Restart::Manual,
    })
}

/// One creation: placement and transaction, then every overlay.
fn create(etcd: &Etcd, host: &Host, s: &VcSpec) -> anyhow::Result<Duration> {
    let t = Instant::now();
    apply(etcd, |snap| {
        let (c, _) = plan_create(snap, s)?;
        Ok((Some(c), ()))
    })
    .map_err(|f| anyhow::anyhow!("{:#}", f.error()))?;
    for vm in s.indices() {
        host.ensure_overlay(s, vm)?;
    }
    Ok(t.elapsed())
}

fn destroy(etcd: &Etcd, host: &Host, s: &VcSpec) -> anyhow::Result<()> {
    let snap = Snapshot::read(etcd)?;
    let c = plan_destroy(&snap, &s.name, true).map_err(|f| anyhow::anyhow!("{:#}", f.error()))?;
    etcd.txn(&c.compare, &c.ops)?;
    for vm in s.indices() {
        host.remove(&s.name, vm)?;
    }
    Ok(())
}

pub fn run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (_proc, etcd) = start_etcd(dir.path())?;
    for i in 0..BLADES {
        etcd.put(
            &format!("/vlx/blades/blade{i:02}"),
            br#"{"cores":8,"memory":68719476736}"#,
            None,
        )?;
    }
    etcd.put(
        "/vlx/guests/tiny",
        br#"{"base":"guests/tiny/base.raw"}"#,
        None,
    )?;
    let host = Host {
        shared: dir.path().join("shared"),
        run: dir.path().join("run"),
        accel: Accel::Tcg,
    };
    let gdir = host.guest_dir("tiny");
    std::fs::create_dir_all(&gdir)?;
    let base = gdir.join("base.raw");
    std::fs::File::create(&base)?.set_len(1 << 30)?;

    println!(
        "{:>5} {:>12} {:>10} {:>16} {:>7}",
        "VMs", "create ms", "per VM ms", "qemu-img ms", "ratio"
    );
    for n in SIZES {
        let s = spec(n)?;
        // Fastest of three: the least disturbed by the shared machine.
        let mut best = Duration::MAX;
        for _ in 0..3 {
            best = best.min(create(&etcd, &host, &s)?);
            destroy(&etcd, &host, &s)?;
        }
        // Reference: the same overlays with one qemu-img process each.
        let refdir = dir.path().join(format!("ref{n}"));
        std::fs::create_dir_all(&refdir)?;
        let mut reference = Duration::ZERO;
        for i in 1..=n {
            reference += timed(
                Command::new("qemu-img")
                    .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
                    .arg(&base)
                    .arg(refdir.join(format!("{}.qcow2", VmIndex(i)))),
            )?;
        }
        std::fs::remove_dir_all(&refdir)?;
        println!(
            "{n:>5} {:>12.1} {:>10.3} {:>16.1} {:>6.1}x",
            ms(best),
            ms(best) / f64::from(n),
            ms(reference),
            ms(reference) / ms(best).max(f64::MIN_POSITIVE)
        );
    }
    boots(dir.path())
}

/// How long a tiny guest may take to boot on a loaded machine.
const BOOT_WAIT: Duration = Duration::from_secs(120);

fn wait_ready(host: &Host, s: &VcSpec, vm: VmIndex, count: usize) -> anyhow::Result<()> {
    let log = host.console_log(&s.name, vm);
    let line = format!("vlx-guest: ready {}/{vm}", s.name);
    let deadline = Instant::now() + BOOT_WAIT;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.matches(&line).count() >= count {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{}/{vm} not ready within {BOOT_WAIT:?}: {text}", s.name);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn record(s: &VcSpec, vm: VmIndex) -> anyhow::Result<vc::state::VmRecord> {
    Ok(vc::state::VmRecord {
        vm,
        blade: "bench".parse()?,
        mac: vc::vm_mac(s.id, vm),
    })
}

fn boots(dir: &std::path::Path) -> anyhow::Result<()> {
    let shared = dir.join("boot-shared");
    let gdir = dir.join("boot-guest");
    std::fs::create_dir_all(&gdir)?;
    let g = vc::tiny::build(&gdir)?;
    vc::vm::import_guest(
        &shared,
        "tiny",
        &g.tarball,
        &g.kernel,
        &g.initrd,
        Bytes::mib(64),
    )?;
    let host = Host {
        shared,
        run: dir.join("boot-run"),
        accel: Accel::Tcg,
    };
    let mut s = spec(5)?;
    s.name = "boot".parse()?;
    let mut times = Vec::new();
    for vm in s.indices() {
        let t = Instant::now();
        host.start(&s, &record(&s, vm)?, false)?;
        wait_ready(&host, &s, vm, 1)?;
        times.push(t.elapsed());
        host.stop(&s.name, vm)?;
    }
    times.sort();
    println!(
        "power-on to ready (tiny guest, TCG): median {:.0} ms of {} (min {:.0}, max {:.0})",
        ms(times[times.len() / 2]),
        times.len(),
        ms(times[0]),
        ms(times[times.len() - 1])
    );

    let mut s = spec(1)?;
    s.name = "save".parse()?;
    s.memory = Bytes::mib(256);
    let vm = VmIndex(1);
    host.start(&s, &record(&s, vm)?, false)?;
    wait_ready(&host, &s, vm, 1)?;
    let t = Instant::now();
    host.save(&s.name, vm)?;
    let save = t.elapsed();
    let state = host.save_file(&s.name, vm);
    let state_size = std::fs::metadata(&state)?.len();
    let copy_src = dir.join("copy-src");
    std::fs::write(&copy_src, vec![0x5au8; 256 << 20])?;
    let copy = timed(Command::new("cp").arg(&copy_src).arg(dir.join("copy-dst")))?;
    let t = Instant::now();
    host.start(&s, &record(&s, vm)?, true)?;
    let restore = t.elapsed();
    host.stop(&s.name, vm)?;
    println!(
        "save of a 256 MiB VM: {:.0} ms ({:.1} MiB state); restore: {:.0} ms; cp of 256 MiB: {:.0} ms",
        ms(save),
        crate::util::mib(state_size),
        ms(restore),
        ms(copy)
    );
    Ok(())
}
