//! The VC rig: three blades as network namespaces on this machine, each
//! with a real etcd member and a real `vlx-vcd`, QEMU (TCG) VMs of the tiny
//! guest, and the checks of a virtual cluster's life: placement as planned,
//! boots, refusals, private overlays, save and restore with a new policy,
//! the loss of a blade, a VM never running twice, and destroy; and the VC
//! networks: `vlx-vcd` recording the cluster's settings file in etcd, DHCP,
//! `route <vm> via <blade>` after placement and after a remap, `vc ping`
//! across blades, `vc isolation` between VCs and towards its blade's SSH
//! port (a listener the rig starts) and its blade's DNS and DHCP server (a
//! cluster dnsmasq on every blade, the node template
//! `overlays/node/etc/dnsmasq.conf.hbs` rendered for the rig's blades),
//! `vc dns`, VC names on every blade (that dnsmasq, reloaded by
//! `vlx-vcd`), `vc outside` (an "outside" namespace on the blades'
//! segment, routed from every blade: the VC created with `--outside`
//! reaches it masqueraded, the other is refused), and `vc shared`: blade01
//! holds the storage address and runs nfs-ganesha (the host kernel has no
//! nfsd) on the exports its `vlx-vcd` renders and reloads by SIGHUP, the
//! shares on a small ext4 volume the rig mounts (loop) under `OUT`; every
//! VM mounts its VC's share at `/vc` (`vlx.share=` on its command line), a
//! file one VM writes is read by a VM of its VC on another blade, and a VM
//! of another VC is refused the share by the export's client list; then
//! the storage address moves (blade01's server killed, blade02 takes the
//! address with a gratuitous ARP and starts its own server on the exports
//! its `vlx-vcd` wrote) and the VMs' mounts from boot read and write on.
//!
//! The report goes to `OUT` (default `target/rehearsal-vc/`): `checks.json`
//! (each check with its step's start and end in seconds), `timeline.svg`,
//! `consoles/`, and the blades' logs (`blades/<blade>/etcd.log`, `vcd.log`).

mod console;
mod ns;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::state::VmRecord;
use crate::vm::{Accel, Host};

/// The rig's profile (`profiles/vcs/rig.toml`); paths are relative to it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RigProfile {
    pub blades: PathBuf,
    pub block: PathBuf,
    pub cyclic: PathBuf,
    pub etcd_heartbeat_ms: u32,
    pub etcd_election_ms: u32,
    pub lease_ttl: u32,
}

/// One line of the check table.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    /// Seconds from the rig's start to the start and end of the step.
    pub start_s: f64,
    pub end_s: f64,
}

/// How long boots, restarts and lease expiries may take on a loaded
/// machine under TCG (waits, not speed checks): eight tiny guests booting
/// at once on a shared 2-core machine at a load of 15 took over 4 minutes.
const WAIT: Duration = Duration::from_secs(600);

struct Rig {
    net: ns::Net,
    out: PathBuf,
    shared: PathBuf,
    bin: PathBuf,
    profile_dir: PathBuf,
    profile: RigProfile,
    /// Per blade: etcd, its cluster dnsmasq and vlx-vcd.
    procs: Vec<Vec<Child>>,
    /// nfs-ganesha of the blade that holds the storage address.
    ganesha: Option<Child>,
    checks: Vec<Check>,
    n: usize,
    t0: Instant,
    /// When the step being checked began (the end of the one before).
    step: Instant,
}

impl Rig {
    fn check(&mut self, name: &str, r: anyhow::Result<String>) -> bool {
        let (ok, detail) = match r {
            Ok(d) => (true, d),
            Err(e) => (false, format!("{e:#}")),
        };
        println!("{} {name}: {detail}", if ok { "PASS" } else { "FAIL" });
        let now = Instant::now();
        self.checks.push(Check {
            name: name.into(),
            ok,
            detail,
            start_s: (self.step - self.t0).as_secs_f64(),
            end_s: (now - self.t0).as_secs_f64(),
        });
        self.step = now;
        ok
    }

    /// `vlx-vc ARGS` run on blade `i`, against every member (its own first).
    fn vc_on(&self, i: usize, args: &[&str]) -> anyhow::Result<Output> {
        let mut eps: Vec<String> = vec![format!("http://{}:2379", ns::addr(i))];
        eps.extend(
            (1..=self.n)
                .filter(|&j| j != i)
                .map(|j| format!("http://{}:2379", ns::addr(j))),
        );
        let exe = self.bin.join("vlx-vc");
        let exe = exe.to_string_lossy();
        let eps = eps.join(",");
        let mut cmd: Vec<&str> = vec![&exe];
        cmd.extend(args);
        cmd.extend(["--etcd", &eps]);
        self.net.run(i, &cmd)
    }

    fn vc_json(&self, i: usize, args: &[&str]) -> anyhow::Result<Value> {
        let o = self.vc_on(i, args)?;
        if !o.status.success() {
            bail!(
                "vlx-vc {} exited {:?}: {}",
                args.join(" "),
                o.status.code(),
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        serde_json::from_slice(&o.stdout).context("vlx-vc's JSON")
    }

    fn etcd_keys(&self, i: usize, prefix: &str) -> anyhow::Result<Vec<String>> {
        let o = self.net.run(
            i,
            &[
                "env",
                "ETCDCTL_API=3",
                "etcdctl",
                &format!("--endpoints=http://{}:2379", ns::addr(i)),
                "get",
                "--prefix",
                "--keys-only",
                prefix,
            ],
        )?;
        if !o.status.success() {
            bail!(
                "etcdctl get {prefix}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    fn run_dir(&self, i: usize) -> PathBuf {
        self.out
            .join("blades")
            .join(format!("blade0{i}"))
            .join("run")
    }

    fn start_blade(&mut self, i: usize) -> anyhow::Result<()> {
        let dir = self.out.join("blades").join(format!("blade0{i}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let me = ns::addr(i);
        let cluster: Vec<String> = (1..=self.n)
            .map(|j| format!("blade0{j}=http://{}:2380", ns::addr(j)))
            .collect();
        let etcd: Vec<String> = vec![
            "etcd".into(),
            format!("--name=blade0{i}"),
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls=http://{me}:2379"),
            format!("--advertise-client-urls=http://{me}:2379"),
            format!("--listen-peer-urls=http://{me}:2380"),
            format!("--initial-advertise-peer-urls=http://{me}:2380"),
            format!("--initial-cluster={}", cluster.join(",")),
            "--initial-cluster-state=new".into(),
            format!("--heartbeat-interval={}", self.profile.etcd_heartbeat_ms),
            format!("--election-timeout={}", self.profile.etcd_election_ms),
        ];
        let e = self.net.spawn(i, &etcd, &dir.join("etcd.log"))?;
        let blades = crate::cli::read_blades(&self.profile_dir.join(&self.profile.blades))
            .map_err(|f| anyhow::anyhow!("{:#}", f.error()))?;
        let b = blades
            .get(i - 1)
            .with_context(|| format!("the blades file has no blade {i}"))?;
        let dnsmasq = self.cluster_dnsmasq(i, &dir)?;
        let mut procs = vec![e, dnsmasq];
        if i == STORAGE_BLADE {
            self.ganesha = Some(self.ganesha(i)?);
        }
        let mut eps = vec![format!("http://{me}:2379")];
        eps.extend(
            (1..=self.n)
                .filter(|&j| j != i)
                .map(|j| format!("http://{}:2379", ns::addr(j))),
        );
        let vcd: Vec<String> = vec![
            self.bin.join("vlx-vcd").display().to_string(),
            "--blade".into(),
            b.name.to_string(),
            "--cores".into(),
            b.cores.to_string(),
            "--memory".into(),
            b.memory.to_string(),
            "--shared".into(),
            self.shared.display().to_string(),
            "--run".into(),
            self.run_dir(i).display().to_string(),
            "--ttl".into(),
            self.profile.lease_ttl.to_string(),
            "--etcd".into(),
            eps.join(","),
            "--net-root".into(),
            dir.join("root").display().to_string(),
            "--net-settings".into(),
            self.out.join("net.toml").display().to_string(),
            "--cluster-dnsmasq-pid".into(),
            dir.join("cluster-dnsmasq.pid").display().to_string(),
            "--nfs-server".into(),
            "ganesha".into(),
            "--ganesha-pid".into(),
            dir.join("ganesha.pid").display().to_string(),
        ];
        procs.push(self.net.spawn(i, &vcd, &dir.join("vcd.log"))?);
        self.procs.push(procs);
        Ok(())
    }

    /// The VC shares' NFS server on blade `i`, which holds the storage
    /// address: nfs-ganesha (this host's kernel has no nfsd) on its rendered
    /// config (`vc_net::render::ganesha_conf`), including the exports file
    /// `vlx-vcd` writes under the blade's root and reloads by SIGHUP. Until
    /// `vlx-vcd` writes it, that file says there is no VC (a blade taking
    /// the address over finds its own agent's file there); the wait for
    /// ganesha to serve keeps a SIGHUP from coming before its pid file.
    /// The clients' recovery records are one folder of the rig (standing for
    /// the shared volume's), so that a blade taking the address over grants
    /// the VMs' clients their reclaims.
    fn ganesha(&self, i: usize) -> anyhow::Result<Child> {
        let dir = self.out.join("blades").join(format!("blade0{i}"));
        let dir = dir.as_path();
        let exports = dir.join("root").join(vc_net::apply::GANESHA_EXPORTS);
        let recovery = self.out.join("ganesha-recovery");
        for d in [exports.parent().unwrap_or(dir), recovery.as_path()] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        if !exports.exists() {
            std::fs::write(&exports, "# no VC yet\n")
                .with_context(|| format!("writing {}", exports.display()))?;
        }
        let conf = dir.join("ganesha.conf");
        std::fs::write(
            &conf,
            vc_net::render::ganesha_conf(
                &exports.display().to_string(),
                &recovery.display().to_string(),
            ),
        )
        .with_context(|| format!("writing {}", conf.display()))?;
        let log = dir.join("ganesha.log");
        let cmd: Vec<String> = vec![
            "ganesha.nfsd".into(),
            "-F".into(),
            "-f".into(),
            conf.display().to_string(),
            "-L".into(),
            log.display().to_string(),
            "-p".into(),
            dir.join("ganesha.pid").display().to_string(),
        ];
        let child = self.net.spawn(i, &cmd, &dir.join("ganesha.out"))?;
        self.wait("nfs-ganesha serves", || {
            std::fs::read_to_string(&log)
                .ok()?
                .contains("NFS SERVER INITIALIZED")
                .then_some(())
        })
        .with_context(|| format!("see {}", log.display()))?;
        Ok(child)
    }

    /// Blade `i`'s cluster dnsmasq: the cluster's own template
    /// (`overlays/node/etc/dnsmasq.conf.hbs`, built into the rig) rendered
    /// for the rig's blades (DNS and static DHCP of the blades' network, no
    /// network boot), so that its VC lines (off the taps, VC names from the
    /// file `vlx-vcd` keeps) are what a blade runs; then the rig's own lines:
    /// root (the rig's folders are not the `dnsmasq` user's to read), its
    /// files in the blade's folder, DHCP logged (a check reads it).
    /// (`--user=root`, as the file's `user=` may not be said twice.)
    fn cluster_dnsmasq(&self, i: usize, dir: &Path) -> anyhow::Result<Child> {
        let conf = dir.join("cluster-dnsmasq.conf");
        let hosts = dir.join("root").join(vc_net::apply::HOSTS);
        let mut text = render_cluster_dnsmasq(&dir.join("overlay"), i, self.n, &hosts)?;
        text.push_str(&format!(
            "\n# The VC rig's own.\npid-file={pid}\ndhcp-leasefile={leases}\nlog-dhcp\n",
            pid = dir.join("cluster-dnsmasq.pid").display(),
            leases = dir.join("cluster-dnsmasq.leases").display(),
        ));
        std::fs::write(&conf, text).with_context(|| format!("writing {}", conf.display()))?;
        let cmd: Vec<String> = vec![
            "dnsmasq".into(),
            "--keep-in-foreground".into(),
            "--log-facility=-".into(),
            // Beats the template's `user=dnsmasq`: a flag wins over the
            // file, where a second `user=` would be refused.
            "--user=root".into(),
            format!("--conf-file={}", conf.display()),
        ];
        self.net.spawn(i, &cmd, &dir.join("cluster-dnsmasq.log"))
    }

    /// VMs of `vc` as `(vm, blade, state)` from `show` on blade `i`.
    fn vms(&self, i: usize, vc: &str) -> anyhow::Result<Vec<(String, String, String)>> {
        let v = self.vc_json(i, &["show", vc, "--json"])?;
        Ok(v["vms"]
            .as_array()
            .context("show has no vms")?
            .iter()
            .map(|vm| {
                let s = |k: &str| vm[k].as_str().unwrap_or("-").to_owned();
                (s("name"), s("blade"), s("state"))
            })
            .collect())
    }

    fn readies(&self, vc: &str, vm: &str) -> usize {
        std::fs::read_to_string(
            self.shared
                .join("vcs")
                .join(vc)
                .join(vm)
                .join("console.log"),
        )
        .unwrap_or_default()
        .matches(&format!("vlx-guest: ready {vc}/{vm}"))
        .count()
    }

    fn wait<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(v) = f() {
                return Ok(v);
            }
            if Instant::now() > deadline {
                bail!("{what}: not within {WAIT:?}");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Runs a shell command in a VM's guest, on the blade that runs it.
    fn in_vm(&self, i: usize, vc: &str, vm: &str, cmd: &str) -> anyhow::Result<String> {
        let vms = self.vms(i, vc)?;
        let blade = &vms
            .iter()
            .find(|v| v.0 == vm)
            .with_context(|| format!("{vc} has no {vm}"))?
            .1;
        let n: usize = blade
            .trim_start_matches("blade")
            .parse()
            .with_context(|| format!("blade name {blade}"))?;
        console::exec(&self.run_dir(n).join(vc).join(vm).join("console.sock"), cmd)
    }

    /// `route <vc>/<vm> via <blade>` on every blade: the VM's own blade
    /// routes it to its tap, every other blade via the VM's blade.
    fn check_routes(&mut self, vc: &str, when: &str) {
        let shown = match self.vc_json(1, &["show", vc, "--json"]) {
            Ok(v) => v,
            Err(e) => {
                self.check(&format!("route {vc}/* {when}"), Err(e));
                return;
            }
        };
        let vms: Vec<(String, String, String)> = shown["vms"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|v| {
                        let s = |k: &str| v[k].as_str().unwrap_or("-").to_owned();
                        (s("name"), s("blade"), s("address"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (vm, blade, addr) in vms {
            let r = self.wait(&format!("routes to {vc}/{vm}"), || {
                let mut seen = Vec::new();
                for i in 1..=self.n {
                    let o = self.net.run(i, &["ip", "route", "get", &addr]).ok()?;
                    let text = String::from_utf8_lossy(&o.stdout).trim().to_owned();
                    let own = format!("blade0{i}") == blade;
                    let via = blade
                        .trim_start_matches("blade")
                        .parse::<usize>()
                        .map(ns::addr)
                        .ok()?;
                    let good = if own {
                        text.contains(" dev vx")
                    } else {
                        text.contains(&format!(" via {via} "))
                    };
                    if !good {
                        return None;
                    }
                    seen.push(format!("blade0{i}: {text}"));
                }
                Some(seen.join("; "))
            });
            self.check(&format!("route {vc}/{vm} via {blade} {when}"), r);
        }
    }

    fn all_running(&self, vc: &str, avoid: Option<&str>) -> Option<Vec<(String, String, String)>> {
        let vms = self.vms(1, vc).ok()?;
        vms.iter()
            .all(|v| v.2 == "running" && Some(v.1.as_str()) != avoid)
            .then_some(vms)
    }
}

fn blades_of(v: &Value) -> Vec<String> {
    v["vms"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|vm| vm["blade"].as_str().unwrap_or("-").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn sha256(p: &Path) -> anyhow::Result<String> {
    let o = Command::new("sha256sum")
        .arg(p)
        .output()
        .context("sha256sum")?;
    Ok(String::from_utf8_lossy(&o.stdout)
        .split(' ')
        .next()
        .unwrap_or("")
        .to_owned())
}

/// Runs the rig; returns the checks (all passed or not).
pub fn rehearse(profile_path: &Path, out: &Path, bin: &Path) -> anyhow::Result<Vec<Check>> {
    let text = std::fs::read_to_string(profile_path)
        .with_context(|| format!("reading {}", profile_path.display()))?;
    let profile: RigProfile =
        toml::from_str(&text).with_context(|| format!("reading {}", profile_path.display()))?;
    let profile_dir = profile_path.parent().unwrap_or(Path::new(".")).to_owned();
    if out.exists() {
        // A volume left mounted by a rig that was killed.
        VcVolume::unmount(&out.join(VC_VOLUME));
        std::fs::remove_dir_all(out).with_context(|| format!("clearing {}", out.display()))?;
    }
    let shared = out.join("shared");
    std::fs::create_dir_all(&shared).with_context(|| format!("creating {}", shared.display()))?;
    let volume = VcVolume::mount(out)?;
    let n = 3;
    let net = ns::Net::create(&format!("vlxvc{}", std::process::id()), n)?;
    let mut rig = Rig {
        net,
        out: out.to_owned(),
        shared,
        bin: bin.to_owned(),
        profile_dir,
        profile,
        procs: Vec::new(),
        ganesha: None,
        checks: Vec::new(),
        n,
        t0: Instant::now(),
        step: Instant::now(),
    };
    let r = run_checks(&mut rig);
    save_consoles(&rig);
    for p in rig.procs.iter_mut().flatten().chain(rig.ganesha.as_mut()) {
        let _ = p.kill();
        let _ = p.wait();
    }
    kill_qemus(&rig);
    drop(volume);
    if let Err(e) = r {
        rig.check("the rig ran to its end", Err(e));
    }
    let json = serde_json::to_string_pretty(&rig.checks).context("checks as JSON")?;
    std::fs::write(out.join("checks.json"), json + "\n").context("writing checks.json")?;
    std::fs::write(out.join("timeline.svg"), timeline(&rig.checks))
        .context("writing timeline.svg")?;
    Ok(rig.checks)
}

/// The blade that holds the storage address and runs the NFS server.
const STORAGE_BLADE: usize = 1;
/// The storage address (the VIP of the shared volume's holder).
const STORAGE_ADDR: &str = "10.250.0.250";
/// The shared volume of the VC shares, under `OUT`: its own small ext4 (a
/// loop mount), since `vlx-vcd` makes the VCs' folders only on a mounted
/// volume.
const VC_VOLUME: &str = "vc-volume";

/// The VC shares' ext4 volume, mounted at `OUT/vc-volume` for the rig's
/// run; unmounted on drop.
struct VcVolume {
    mount: PathBuf,
}

impl VcVolume {
    fn mount(out: &Path) -> anyhow::Result<VcVolume> {
        let img = out.join("vc-volume.img");
        let mount = out.join(VC_VOLUME);
        std::fs::create_dir_all(&mount).with_context(|| format!("creating {}", mount.display()))?;
        let f =
            std::fs::File::create(&img).with_context(|| format!("creating {}", img.display()))?;
        f.set_len(64 << 20)
            .with_context(|| format!("sizing {}", img.display()))?;
        for (what, cmd) in [
            (
                "mkfs.ext4 (Debian e2fsprogs)",
                vec!["mkfs.ext4", "-q", "-F"],
            ),
            ("mount -o loop", vec!["mount", "-o", "loop"]),
        ] {
            let mut c = Command::new(cmd[0]);
            c.args(&cmd[1..]).arg(&img);
            if cmd[0] == "mount" {
                c.arg(&mount);
            }
            let o = c.output().with_context(|| format!("running {what}"))?;
            if !o.status.success() {
                bail!(
                    "{what} of {}: {}",
                    img.display(),
                    String::from_utf8_lossy(&o.stderr).trim()
                );
            }
        }
        Ok(VcVolume { mount })
    }

    /// Unmounts `mount` if it is mounted (lazily: a server killed a moment
    /// ago may still hold it).
    fn unmount(mount: &Path) {
        let _ = Command::new("umount").arg("-l").arg(mount).output();
    }
}

impl Drop for VcVolume {
    fn drop(&mut self) {
        VcVolume::unmount(&self.mount);
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One bar per check, from its step's start to its end, on a time axis.
pub fn timeline(checks: &[Check]) -> String {
    const ROW: f64 = 22.0;
    const LABEL: f64 = 430.0;
    const WIDTH: f64 = 600.0;
    let end = checks.iter().map(|c| c.end_s).fold(1.0_f64, f64::max);
    let scale = WIDTH / end;
    let h = ROW * (checks.len() as f64 + 2.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{h}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n",
        LABEL + WIDTH + 60.0
    );
    for (i, c) in checks.iter().enumerate() {
        let y = ROW * (i as f64 + 0.5);
        let x = LABEL + c.start_s * scale;
        let w = ((c.end_s - c.start_s) * scale).max(1.0);
        let fill = if c.ok { "#3a3" } else { "#c33" };
        s.push_str(&format!(
            "<text x=\"4\" y=\"{:.1}\">{}</text>\n\
             <rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{fill}\">\
             <title>{:.1}–{:.1} s</title></rect>\n\
             <text x=\"{:.1}\" y=\"{:.1}\">{:.1} s</text>\n",
            y + 12.0,
            xml(&c.name),
            y + 2.0,
            ROW - 6.0,
            c.start_s,
            c.end_s,
            x + w + 4.0,
            y + 12.0,
            c.end_s - c.start_s
        ));
    }
    let y = ROW * (checks.len() as f64 + 1.0);
    s.push_str(&format!(
        "<line x1=\"{LABEL}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#000\"/>\n\
         <text x=\"{LABEL}\" y=\"{:.1}\">0 s</text>\n\
         <text x=\"{:.1}\" y=\"{:.1}\">{end:.0} s</text>\n</svg>\n",
        LABEL + WIDTH,
        y + 14.0,
        LABEL + WIDTH - 20.0,
        y + 14.0
    ));
    s
}

fn save_consoles(rig: &Rig) {
    let dir = rig.out.join("consoles");
    let _ = std::fs::create_dir_all(&dir);
    let Ok(vcs) = std::fs::read_dir(rig.shared.join("vcs")) else {
        return;
    };
    for vc in vcs.flatten() {
        for vm in std::fs::read_dir(vc.path()).into_iter().flatten().flatten() {
            let log = vm.path().join("console.log");
            let name = format!(
                "{}-{}.log",
                vc.file_name().to_string_lossy(),
                vm.file_name().to_string_lossy()
            );
            let _ = std::fs::copy(&log, dir.join(name));
        }
    }
}

/// Pids of every QEMU the blades ran (from their pid files).
fn qemu_pids(rig: &Rig) -> Vec<i32> {
    let mut pids = Vec::new();
    for i in 1..=rig.n {
        let run = rig.run_dir(i);
        for vc in std::fs::read_dir(&run).into_iter().flatten().flatten() {
            for vm in std::fs::read_dir(vc.path()).into_iter().flatten().flatten() {
                if let Ok(t) = std::fs::read_to_string(vm.path().join("qemu.pid"))
                    && let Ok(p) = t.trim().parse::<i32>()
                    && Path::new(&format!("/proc/{p}")).exists()
                {
                    pids.push(p);
                }
            }
        }
    }
    pids
}

fn kill_qemus(rig: &Rig) {
    for p in qemu_pids(rig) {
        let _ = Command::new("kill").args(["-9", &p.to_string()]).status();
    }
}

/// The cluster's dnsmasq template, as the installer renders it on every
/// blade.
const CLUSTER_DNSMASQ_HBS: &str = include_str!("../../../overlays/node/etc/dnsmasq.conf.hbs");

/// [`CLUSTER_DNSMASQ_HBS`] rendered (in an overlay folder `scratch`) for
/// blade `i` of `n`, with the template context's keys as the installer
/// names them (`overlays/README.md`): the blades' network, DNS and DHCP on,
/// network boot off, VC names from `hosts`.
pub fn render_cluster_dnsmasq(
    scratch: &Path,
    i: usize,
    n: usize,
    hosts: &Path,
) -> anyhow::Result<String> {
    let rel = Path::new("etc/dnsmasq.conf.hbs");
    let file = scratch.join(rel);
    if let Some(d) = file.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    std::fs::write(&file, CLUSTER_DNSMASQ_HBS)
        .with_context(|| format!("writing {}", file.display()))?;
    let node = |j: usize| {
        serde_json::json!({
            "name": format!("blade0{j}"),
            "fqdn": format!("blade0{j}.{RIG_DOMAIN}"),
            "ip": ns::addr(j),
            "macs": [format!("02:76:ff:00:00:0{j}")],
            "extra_ips": [],
        })
    };
    let ctx = serde_json::json!({
        "cluster": {
            "name": "vcrig",
            "uuid": "00000000-0000-4000-8000-000000000001",
            "domain": RIG_DOMAIN,
        },
        "node": node(i),
        "nodes": (1..=n).map(node).collect::<Vec<_>>(),
        "vips": [],
        "services": { "dns": true, "dhcp": true, "boot": false, "ntp": false },
        "dns": { "upstream": [], "resolvers": [] },
        "network": { "address": "10.250.0.0", "netmask": "255.255.255.0", "gateway": null },
        "dhcp": { "lease_max": n },
        "ipv6": { "prefix": "fd76:7263::", "prefix_len": 64 },
        "vc_tap_prefix": vc_net::model::TAP_PREFIX,
        "vc_hosts": hosts.display().to_string(),
    });
    let entries = templating::Overlay::load(scratch)?.render(&ctx)?;
    let e = entries
        .iter()
        .find(|e| e.path == Path::new("etc/dnsmasq.conf"))
        .with_context(|| format!("{} rendered no etc/dnsmasq.conf", scratch.display()))?;
    match &e.kind {
        templating::Kind::File(bytes) => Ok(String::from_utf8_lossy(bytes).into_owned()),
        other => bail!("etc/dnsmasq.conf rendered as {other:?}"),
    }
}

/// The VC networks' domain in the rig.
const RIG_DOMAIN: &str = "rig.test";

/// A VM's address and blade, from `show`.
fn vm_net(rig: &Rig, vc: &str, vm: &str) -> anyhow::Result<(String, String)> {
    let v = rig.vc_json(1, &["show", vc, "--json"])?;
    let e = v["vms"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == vm))
        .with_context(|| format!("{vc} has no {vm}"))?;
    Ok((
        e["address"].as_str().unwrap_or("-").to_owned(),
        e["blade"].as_str().unwrap_or("-").to_owned(),
    ))
}

/// The VC network checks: a ping inside a VC across two blades, the
/// insulation from another VC and from a blade's services, and names.
fn vc_net_checks(rig: &mut Rig) {
    // Every VM has taken its address (DHCP is asked for after `ready`).
    let r = rig.wait("every VM bound its address", || {
        let all = ["demo", "cyc"].iter().all(|vc| {
            (1..=4).all(|i| {
                std::fs::read_to_string(
                    rig.shared
                        .join("vcs")
                        .join(vc)
                        .join(format!("vm{i}"))
                        .join("console.log"),
                )
                .is_ok_and(|c| c.contains(&format!("vlx-guest: address vm{i} ")))
            })
        });
        all.then(|| "8 of 8 VMs printed `vlx-guest: address`".to_owned())
    });
    rig.check("every VM takes its address by DHCP", r);

    let r = (|| {
        let (a1, b1) = vm_net(rig, "demo", "vm1")?;
        let (a3, b3) = vm_net(rig, "demo", "vm3")?;
        if b1 == b3 {
            bail!("demo/vm1 and demo/vm3 share {b1}");
        }
        let out = rig.in_vm(
            1,
            "demo",
            "vm1",
            &format!("ping -c 2 -W 10 {a3} && echo PING-OK"),
        )?;
        if !out.contains("PING-OK") {
            bail!("vm1 ({a1} on {b1}) -> vm3 ({a3} on {b3}): {out}");
        }
        Ok(format!("{a1} on {b1} -> {a3} on {b3}: 2 replies"))
    })();
    rig.check("vc ping demo/vm1 -> demo/vm3", r);

    let r = (|| {
        let (c1, cb) = vm_net(rig, "cyc", "vm1")?;
        let out = rig.in_vm(
            1,
            "demo",
            "vm1",
            &format!("ping -c 1 -W 5 {c1} >/dev/null 2>&1 && echo REACHED || echo BLOCKED"),
        )?;
        if !out.contains("BLOCKED") {
            bail!("demo/vm1 reached cyc/vm1 ({c1} on {cb}): {out}");
        }
        Ok(format!("demo/vm1 -/-> cyc/vm1 ({c1} on {cb})"))
    })();
    rig.check("vc isolation demo -/-> cyc", r);

    // A blade's SSH port: a listener on the VM's own blade, reached from
    // another blade (so it serves), not from the VM.
    let r = (|| {
        let (_, b1) = vm_net(rig, "demo", "vm1")?;
        let n: usize = b1.trim_start_matches("blade").parse()?;
        let other = if n == 1 { 2 } else { 1 };
        let blade = ns::addr(n);
        let cmd: Vec<String> = ["busybox", "nc", "-ll", "-p", "22", "-e", "/bin/true"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let mut listener = rig.net.spawn(
            n,
            &cmd,
            &rig.out.join(format!("blades/blade0{n}/ssh-port.log")),
        )?;
        let probe = format!(
            "busybox nc -w 5 {blade} 22 </dev/null >/dev/null 2>&1 && echo REACHED || echo BLOCKED"
        );
        let served = rig.wait("the blade's port 22 serves another blade", || {
            let o = rig.net.run(other, &["sh", "-c", &probe]).ok()?;
            String::from_utf8_lossy(&o.stdout)
                .contains("REACHED")
                .then_some(())
        });
        let from_vm = served.and_then(|()| rig.in_vm(1, "demo", "vm1", &probe));
        let _ = listener.kill();
        let _ = listener.wait();
        let out = from_vm?;
        if !out.contains("BLOCKED") {
            bail!("demo/vm1 reached port 22 of {b1} ({blade}): {out}");
        }
        Ok(format!(
            "blade0{other} reaches {b1}:22; demo/vm1 on {b1} does not"
        ))
    })();
    rig.check("vc isolation demo/vm1 -/-> its blade's SSH port", r);

    let r = (|| {
        let (a2, _) = vm_net(rig, "demo", "vm2")?;
        let name = format!("vm2.demo.{RIG_DOMAIN}");
        let out = rig.in_vm(1, "demo", "vm1", &format!("nslookup {name}"))?;
        if !out.contains(&a2) {
            bail!("{name} should be {a2}: {out}");
        }
        Ok(format!("{name} = {a2}"))
    })();
    rig.check("vc dns demo/vm1", r);

    // Every blade's cluster dnsmasq answers the VMs' names (vlx-vcd wrote
    // the file and sent it SIGHUP).
    let r = (|| {
        let (a2, _) = vm_net(rig, "demo", "vm2")?;
        let name = format!("vm2.demo.{RIG_DOMAIN}");
        let mut said = Vec::new();
        for i in 1..=rig.n {
            let server = ns::addr(i);
            let got = rig.wait(&format!("{name} at blade0{i}'s cluster dnsmasq"), || {
                let o = rig
                    .net
                    .run(i, &["busybox", "nslookup", &name, &server])
                    .ok()?;
                let text = String::from_utf8_lossy(&o.stdout).into_owned();
                (o.status.success() && text.contains(&a2)).then_some(())
            });
            got?;
            said.push(format!("blade0{i}"));
        }
        Ok(format!("{name} = {a2} at {}", said.join(", ")))
    })();
    rig.check("vc names on every blade", r);

    // The blade's own DNS and DHCP server, which another blade reaches, are
    // not a VM's: TCP and UDP 53 of its blade's address are refused to it,
    // and the cluster dnsmasq never heard a VM's DHCP (its log would name
    // the tap).
    let r = (|| {
        let (_, b1) = vm_net(rig, "demo", "vm1")?;
        let n: usize = b1.trim_start_matches("blade").parse()?;
        let other = if n == 1 { 2 } else { 1 };
        let blade = ns::addr(n);
        let probe = format!(
            "busybox nc -w 5 {blade} 53 </dev/null >/dev/null 2>&1 && echo REACHED || echo BLOCKED"
        );
        let o = rig.net.run(other, &["sh", "-c", &probe])?;
        if !String::from_utf8_lossy(&o.stdout).contains("REACHED") {
            bail!("blade0{other} does not reach {b1}'s DNS ({blade}:53/tcp)");
        }
        let tcp = rig.in_vm(1, "demo", "vm1", &probe)?;
        if !tcp.contains("BLOCKED") {
            bail!("demo/vm1 reached {b1}'s DNS ({blade}:53/tcp): {tcp}");
        }
        let name = format!("blade0{n}.{RIG_DOMAIN}");
        let udp = rig.in_vm(
            1,
            "demo",
            "vm1",
            &format!("nslookup {name} {blade} >/dev/null 2>&1 && echo ANSWERED || echo BLOCKED"),
        )?;
        if !udp.contains("BLOCKED") {
            bail!("demo/vm1 got an answer from {b1}'s DNS ({blade}:53/udp): {udp}");
        }
        let mut heard = Vec::new();
        for i in 1..=rig.n {
            let log = rig
                .out
                .join(format!("blades/blade0{i}/cluster-dnsmasq.log"));
            let text = std::fs::read_to_string(&log)
                .with_context(|| format!("reading {}", log.display()))?;
            let tap = format!("({}", vc_net::model::TAP_PREFIX);
            heard.extend(
                text.lines()
                    .filter(|l| l.contains("DHCP") && l.contains(&tap))
                    .map(|l| format!("blade0{i}: {l}")),
            );
        }
        if !heard.is_empty() {
            bail!(
                "a cluster dnsmasq served DHCP on a tap: {}",
                heard.join("; ")
            );
        }
        Ok(format!(
            "blade0{other} reaches {b1}:53; demo/vm1 on {b1} does not (tcp, udp); no cluster dnsmasq heard a tap"
        ))
    })();
    rig.check(
        "vc isolation demo/vm1 -/-> its blade's DNS and DHCP server",
        r,
    );

    // The outside: cyc was created with --outside, demo was not.
    let probe = format!(
        "ping -c 2 -W 10 {} >/dev/null 2>&1 && echo REACHED || echo BLOCKED",
        ns::OUTSIDE_ADDR
    );
    let r = (|| {
        let (a, b) = vm_net(rig, "cyc", "vm1")?;
        let out = rig.in_vm(1, "cyc", "vm1", &probe)?;
        if !out.contains("REACHED") {
            bail!("cyc/vm1 ({a} on {b}) -> {}: {out}", ns::OUTSIDE_ADDR);
        }
        Ok(format!(
            "cyc/vm1 ({a} on {b}) reaches {} beyond the blades, masqueraded",
            ns::OUTSIDE_ADDR
        ))
    })();
    rig.check("vc outside cyc/vm1", r);
    // Refused by its blade's rules (ICMP admin-prohibited: "No route to
    // host" at once), not lost for want of a way back.
    let r = (|| {
        let (a, b) = vm_net(rig, "demo", "vm1")?;
        let out = rig.in_vm(
            1,
            "demo",
            "vm1",
            &format!(
                "busybox nc -w 10 {} 80 </dev/null 2>&1; echo END",
                ns::OUTSIDE_ADDR
            ),
        )?;
        if !out.contains("No route to host") {
            bail!(
                "demo/vm1 ({a} on {b}) -> {}:80 was not refused: {out}",
                ns::OUTSIDE_ADDR
            );
        }
        Ok(format!(
            "demo/vm1 ({a} on {b}) -/-> {} (its VC stays inside)",
            ns::OUTSIDE_ADDR
        ))
    })();
    rig.check("vc outside demo/vm1 refused", r);
}

/// The console lines of `vc/vm` that say how its share went.
fn share_said(rig: &Rig, vc: &str, vm: &str) -> Option<String> {
    let log = std::fs::read_to_string(rig.shared.join("vcs").join(vc).join(vm).join("console.log"))
        .ok()?;
    log.lines()
        .rev()
        .find(|l| l.contains("vlx-guest: shared "))
        .map(|l| l.trim().to_owned())
}

/// `vc shared`: every VM mounts its VC's share at boot (from the storage
/// blade's nfs-ganesha, `vlx.share=` on its command line); a file one VM
/// writes there is read by another VM of its VC on another blade, and
/// lands on the shared volume owned by nobody (root squashed). A VM of
/// another VC is refused that share by the export's client list.
fn vc_shared_checks(rig: &mut Rig) {
    let r = (|| {
        let (a1, b1) = vm_net(rig, "demo", "vm1")?;
        let (a3, b3) = vm_net(rig, "demo", "vm3")?;
        if b1 == b3 {
            bail!("demo/vm1 and demo/vm3 share {b1}");
        }
        for vm in ["vm1", "vm3"] {
            let said = rig.wait(&format!("demo/{vm} mounts its share"), || {
                share_said(rig, "demo", vm)
            })?;
            if !said.contains("vlx-guest: shared mounted") {
                bail!("demo/{vm}: {said}");
            }
        }
        let token = format!(
            "rig-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        let file = format!("{}/from-vm1", vc_net::render::GUEST_SHARED_MOUNT);
        let wrote = rig.in_vm(
            1,
            "demo",
            "vm1",
            &format!("echo {token} > {file} && sync && echo WROTE"),
        )?;
        if !wrote.contains("WROTE") {
            bail!("demo/vm1 ({a1} on {b1}) could not write {file}: {wrote}");
        }
        let read = rig.in_vm(1, "demo", "vm3", &format!("cat {file}"))?;
        if !read.contains(&token) {
            bail!("demo/vm3 ({a3} on {b3}) reads `{read}` in {file}, not {token}");
        }
        let landed = rig
            .out
            .join(VC_VOLUME)
            .join(vc_net::render::VC_DIR)
            .join("demo")
            .join("from-vm1");
        use std::os::unix::fs::MetadataExt as _;
        let uid = std::fs::metadata(&landed)
            .with_context(|| format!("the file on the shared volume, {}", landed.display()))?
            .uid();
        if uid != 65534 {
            bail!(
                "{} is owned by uid {uid}, not nobody (65534): root not squashed",
                landed.display()
            );
        }
        Ok(format!(
            "demo/vm1 on {b1} wrote {file}, demo/vm3 on {b3} read it; on the volume it is nobody's"
        ))
    })();
    rig.check("vc shared demo", r);

    let r = (|| {
        let (c1, cb) = vm_net(rig, "cyc", "vm1")?;
        let own = rig.wait("cyc/vm1 mounts its share", || share_said(rig, "cyc", "vm1"))?;
        if !own.contains("vlx-guest: shared mounted") {
            bail!("cyc/vm1 did not mount its own share: {own}");
        }
        let demo =
            vc_net::render::vc_dir_in(&rig.out.join(VC_VOLUME).display().to_string(), "demo");
        let out = rig.in_vm(
            1,
            "cyc",
            "vm1",
            &format!(
                "mkdir -p /mnt/other; mount -t nfs4 {STORAGE_ADDR}:{demo} /mnt/other \
                 -o vers=4.2,addr={STORAGE_ADDR} 2>&1 && echo MOUNTED || echo REFUSED"
            ),
        )?;
        if !out.contains("REFUSED") || !out.contains("No such file or directory") {
            bail!("cyc/vm1 ({c1} on {cb}) mounting demo's share: {out}");
        }
        Ok(format!(
            "cyc/vm1 ({c1} on {cb}) has its own share; demo's is not exported to it ({})",
            out.lines().next().unwrap_or("").trim()
        ))
    })();
    rig.check("vc shared isolation cyc -/-> demo's share", r);
}

/// The blade the storage address moves to in `vc shared after the storage
/// address moves`.
const STORAGE_TAKER: usize = 2;

/// The line of `/proc/self/mountinfo` of the VM's share (its mount id
/// first): the same line after a move means the same mount.
fn share_mount(rig: &Rig, vc: &str, vm: &str) -> anyhow::Result<String> {
    let at = vc_net::render::GUEST_SHARED_MOUNT;
    let out = rig.in_vm(1, vc, vm, &format!("grep ' {at} ' /proc/self/mountinfo"))?;
    let line = out
        .lines()
        .find(|l| l.contains(&format!(" {at} ")) && !l.contains("grep"))
        .with_context(|| format!("{vc}/{vm} has nothing mounted at {at}: {out}"))?;
    Ok(line.trim().to_owned())
}

/// `vc shared` across a move of the storage address (the shared volume's
/// VIP moving after its holder dies): the holder's nfs-ganesha is killed
/// with SIGKILL, the address leaves that blade and another takes it,
/// announced by gratuitous ARP as keepalived announces a VIP, and starts
/// nfs-ganesha on the exports its own `vlx-vcd` wrote, with the same
/// clients' records. The VMs keep the mounts they made at boot (the same
/// mount before and after): demo/vm3 reads the file demo/vm1 wrote before
/// the move and writes one that demo/vm1 reads. The time from the kill to
/// that first read is reported (ganesha's grace period is 20 s).
fn vc_shared_move_check(rig: &mut Rig) {
    let r = (|| {
        let at = vc_net::render::GUEST_SHARED_MOUNT;
        let before = format!("{at}/from-vm1");
        let token = rig.in_vm(1, "demo", "vm1", &format!("cat {before}"))?;
        let token = token.lines().last().unwrap_or("").trim().to_owned();
        if token.is_empty() {
            bail!("demo/vm1 reads nothing in {before} before the move");
        }
        let (_, b1) = vm_net(rig, "demo", "vm1")?;
        let (_, b3) = vm_net(rig, "demo", "vm3")?;
        let mounts = [
            share_mount(rig, "demo", "vm1")?,
            share_mount(rig, "demo", "vm3")?,
        ];

        let t0 = Instant::now();
        if let Some(mut g) = rig.ganesha.take() {
            let _ = g.kill();
            let _ = g.wait();
        }
        let cidr = format!("{STORAGE_ADDR}/24");
        ns::ip(&[
            "-n",
            &rig.net.blades[STORAGE_BLADE - 1],
            "addr",
            "del",
            &cidr,
            "dev",
            "eth0",
        ])?;
        ns::ip(&[
            "-n",
            &rig.net.blades[STORAGE_TAKER - 1],
            "addr",
            "add",
            &cidr,
            "dev",
            "eth0",
        ])?;
        let o = rig.net.run(
            STORAGE_TAKER,
            &["arping", "-U", "-c", "2", "-I", "eth0", STORAGE_ADDR],
        )?;
        if !o.status.success() {
            bail!(
                "arping -U {STORAGE_ADDR} (Debian iputils-arping) on blade0{STORAGE_TAKER}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        rig.ganesha = Some(rig.ganesha(STORAGE_TAKER)?);
        let serving = t0.elapsed();

        let read = rig.in_vm(1, "demo", "vm3", &format!("cat {before}"))?;
        let first_read = t0.elapsed();
        if !read.contains(&token) {
            bail!("after the move demo/vm3 on {b3} reads `{read}` in {before}, not {token}");
        }
        let after = format!("{at}/from-vm3");
        let token2 = format!("{token}-after-move");
        let wrote = rig.in_vm(
            1,
            "demo",
            "vm3",
            &format!("echo {token2} > {after} && sync && echo WROTE"),
        )?;
        if !wrote.contains("WROTE") {
            bail!("after the move demo/vm3 on {b3} could not write {after}: {wrote}");
        }
        let back = rig.in_vm(1, "demo", "vm1", &format!("cat {after}"))?;
        if !back.contains(&token2) {
            bail!("after the move demo/vm1 on {b1} reads `{back}` in {after}, not {token2}");
        }
        for (vm, was) in ["vm1", "vm3"].iter().zip(&mounts) {
            let now = share_mount(rig, "demo", vm)?;
            if &now != was {
                bail!("demo/{vm}'s share is another mount after the move: `{was}` then `{now}`");
            }
        }
        Ok(format!(
            "nfs-ganesha of blade0{STORAGE_BLADE} killed, {STORAGE_ADDR} taken by \
             blade0{STORAGE_TAKER}, serving {:.1} s after the kill; on the mounts made at boot \
             demo/vm3 ({b3}) read demo/vm1's file {:.1} s after the kill and wrote one demo/vm1 \
             ({b1}) read",
            serving.as_secs_f64(),
            first_read.as_secs_f64()
        ))
    })();
    rig.check("vc shared after the storage address moves", r);
}

fn run_checks(rig: &mut Rig) -> anyhow::Result<()> {
    // The cluster's side of the VC networks, as the installer renders it
    // on every blade (`/etc/vlx/vc-net.toml`): the blades' network and
    // addresses, and the pool VC subnets are taken from. Every vlx-vcd is
    // given it; the first up records it in etcd.
    let mut net = format!(
        "domain = \"{RIG_DOMAIN}\"\nstorage = \"{STORAGE_ADDR}\"\nshared_dir = \"{}\"\n\
         cluster_nets = [{{ name = \"network.cidr\", cidr = \"10.250.0.0/24\" }}]\nblades = [\n",
        rig.out.join(VC_VOLUME).display()
    );
    for i in 1..=rig.n {
        net.push_str(&format!(
            "  {{ name = \"blade0{i}\", addr = \"{}\" }},\n",
            ns::addr(i)
        ));
    }
    net.push_str("]\n\n[pool]\nsubnet_pool = \"10.200.0.0/16\"\nprefix = 24\n");
    let net_file = rig.out.join("net.toml");
    std::fs::write(&net_file, net)?;
    rig.net.add_outside()?;
    // The storage blade holds the storage address, as the VIP's holder does.
    ns::ip(&[
        "-n",
        &rig.net.blades[STORAGE_BLADE - 1],
        "addr",
        "add",
        &format!("{STORAGE_ADDR}/24"),
        "dev",
        "eth0",
    ])?;

    for i in 1..=rig.n {
        rig.start_blade(i)?;
    }
    let ok = rig.wait("etcd answers and 3 blades register", || {
        let k = rig.etcd_keys(1, "/vlx/blades/").ok()?;
        (k.len() == rig.n).then_some(k)
    });
    let ok = ok.map(|k| format!("{} members; blades {}", rig.n, k.join(" ")));
    if !rig.check("etcd on 3 blades, 3 agents registered", ok) {
        bail!("the blades did not come up");
    }

    let r = rig.wait("/vlx/net recorded", || {
        let k = rig.etcd_keys(1, crate::state::NET).ok()?;
        k.iter()
            .any(|k| k == crate::state::NET)
            .then(|| format!("{} from {}", crate::state::NET, net_file.display()))
    });
    rig.check("vlx-vcd records the VC network settings file", r);

    // The guest, imported once.
    let gdir = rig.out.join("guest");
    std::fs::create_dir_all(&gdir)?;
    let g = crate::tiny::build(&gdir)?;
    let (t, k, ird, sh) = (
        g.tarball.display().to_string(),
        g.kernel.display().to_string(),
        g.initrd.display().to_string(),
        rig.shared.display().to_string(),
    );
    rig.vc_json(
        1,
        &[
            "import-guest",
            "tiny",
            "--tarball",
            &t,
            "--kernel",
            &k,
            "--initrd",
            &ird,
            "--shared",
            &sh,
            "--size",
            "64MiB",
            "--json",
        ],
    )?;
    let base = rig.shared.join("guests/tiny/base.raw");
    let base_sum = sha256(&base)?;

    // Placement exactly as planned.
    let blades_file = rig
        .profile_dir
        .join(&rig.profile.blades)
        .display()
        .to_string();
    let block = rig
        .profile_dir
        .join(&rig.profile.block)
        .display()
        .to_string();
    let cyclic = rig
        .profile_dir
        .join(&rig.profile.cyclic)
        .display()
        .to_string();
    let plan = |rig: &Rig, vc: &str, blades: &str| -> anyhow::Result<Value> {
        let o = Command::new(rig.bin.join("vlx-vc"))
            .args(["plan", "--vc", vc, "--blades", blades, "--json"])
            .output()
            .context("vlx-vc plan")?;
        if !o.status.success() {
            bail!("vlx-vc plan: {}", String::from_utf8_lossy(&o.stderr));
        }
        Ok(serde_json::from_slice(&o.stdout)?)
    };
    let p_block = plan(rig, &block, &blades_file)?;
    let created = rig.vc_json(1, &["create", "--vc", &block, "--json"]);
    let r = created.and_then(|c| {
        let (want, got) = (blades_of(&p_block), blades_of(&c));
        if want == got {
            Ok(format!("demo: {}", got.join(" ")))
        } else {
            bail!("planned {want:?}, placed {got:?}")
        }
    });
    rig.check("block VC placed as planned", r);
    // What is left of the blades after it, as a blades file for the plan.
    let mut free = String::new();
    for b in p_block["blades"].as_array().context("plan blades")? {
        let cores = b["cores"]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(b["vcpus"].as_u64().unwrap_or(0));
        let mem = b["memory"].as_u64().unwrap_or(0) - b["memory_used"].as_u64().unwrap_or(0);
        free.push_str(&format!(
            "[[blades]]\nname = \"{}\"\ncores = {}\nmemory = \"{}\"\n\n",
            b["blade"].as_str().unwrap_or("-"),
            cores.max(1),
            cluster::Bytes(mem)
        ));
    }
    let free_file = rig.out.join("blades-after-demo.toml");
    std::fs::write(&free_file, free)?;
    let p_cyc = plan(rig, &cyclic, &free_file.display().to_string())?;
    let r = rig
        .vc_json(2, &["create", "--vc", &cyclic, "--outside", "--json"])
        .and_then(|c| {
            let (want, got) = (blades_of(&p_cyc), blades_of(&c));
            if want == got {
                Ok(format!("cyc (created on blade02): {}", got.join(" ")))
            } else {
                bail!("planned {want:?}, placed {got:?}")
            }
        });
    rig.check("cyclic VC placed as planned", r);

    let r = rig.wait("8 VMs ready", || {
        let all = ["demo", "cyc"]
            .iter()
            .flat_map(|vc| (1..=4).map(move |i| (vc, format!("vm{i}"))))
            .all(|(vc, vm)| rig.readies(vc, &vm) >= 1);
        all.then(|| "8 of 8 VMs printed `vlx-guest: ready`".to_owned())
    });
    rig.check("every VM reaches ready", r);
    rig.check_routes("demo", "after placement");
    vc_net_checks(rig);
    vc_shared_checks(rig);
    vc_shared_move_check(rig);

    // Strict refuses what does not fit; nothing of it remains.
    let o = rig.vc_on(
        3,
        &[
            "create", "--name", "big", "--guest", "tiny", "--vms", "2", "--memory", "128MiB",
            "--strict",
        ],
    )?;
    let r = (|| {
        if o.status.code() != Some(3) {
            bail!(
                "exit {:?}, not 3: {}",
                o.status.code(),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let left = rig.etcd_keys(1, "/vlx/vc/big/")?;
        if !left.is_empty() {
            bail!("keys left: {left:?}");
        }
        Ok(String::from_utf8_lossy(&o.stderr).trim().to_owned())
    })();
    rig.check("strict refuses a VC that does not fit, leaving nothing", r);

    // Private overlays.
    let r = (|| {
        rig.wait("demo running", || rig.all_running("demo", None))?;
        rig.in_vm(1, "demo", "vm1", "echo rig-mark > /root/mark; sync")?;
        rig.in_vm(1, "demo", "vm3", "echo rig-mark > /root/mark; sync")?;
        let mine = rig.in_vm(1, "demo", "vm1", "cat /root/mark")?;
        let sibling = rig.in_vm(1, "demo", "vm2", "cat /root/mark 2>&1 || true")?;
        if !mine.contains("rig-mark") || sibling.contains("rig-mark") {
            bail!("vm1 reads `{mine}`, its sibling vm2 reads `{sibling}`");
        }
        Ok(format!("vm1: `{mine}`; vm2: `{sibling}`"))
    })();
    rig.check("a file written in a VM is not seen by its sibling", r);

    // Save, then restore under another policy.
    let r = (|| {
        let before = rig.vms(1, "demo")?;
        rig.vc_json(2, &["save", "demo", "--json"])?;
        rig.wait("demo saved", || {
            let v = rig.vms(1, "demo").ok()?;
            v.iter().all(|x| x.2 == "saved").then_some(())
        })?;
        rig.vc_json(
            3,
            &[
                "restore",
                "demo",
                "--placement",
                "cyclic",
                "--free",
                "--json",
            ],
        )?;
        let after = rig.wait("demo restored", || rig.all_running("demo", None))?;
        let moved: Vec<String> = before
            .iter()
            .zip(&after)
            .filter(|(a, b)| a.1 != b.1)
            .map(|(a, b)| format!("{} {}→{}", a.0, a.1, b.1))
            .collect();
        if moved.is_empty() {
            bail!("no VM moved: {after:?}");
        }
        let mark = rig.in_vm(1, "demo", "vm3", "cat /root/mark")?;
        if !mark.contains("rig-mark") {
            bail!("vm3 lost its file: `{mark}`");
        }
        Ok(format!(
            "moved {}; vm3 still reads `{mark}`",
            moved.join(", ")
        ))
    })();
    rig.check(
        "save → restore with another policy moves VMs, keeps their files",
        r,
    );
    rig.check_routes("demo", "after remap");

    // A blade dies: every process of blade03 killed with SIGKILL.
    let r = (|| {
        let on3: Vec<i32> = {
            let run = rig.run_dir(3);
            let mut p = Vec::new();
            for vc in std::fs::read_dir(&run).into_iter().flatten().flatten() {
                for vm in std::fs::read_dir(vc.path()).into_iter().flatten().flatten() {
                    if let Ok(t) = std::fs::read_to_string(vm.path().join("qemu.pid"))
                        && let Ok(x) = t.trim().parse::<i32>()
                    {
                        p.push(x);
                    }
                }
            }
            p
        };
        let lost: Vec<(String, String, usize)> = ["demo", "cyc"]
            .iter()
            .flat_map(|vc| {
                rig.vms(1, vc)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|v| v.1 == "blade03")
                    .map(|v| (vc.to_string(), v.0.clone(), rig.readies(vc, &v.0)))
            })
            .collect();
        if lost.is_empty() {
            bail!("no VM ran on blade03");
        }
        for c in rig.procs[2].iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for p in &on3 {
            let _ = Command::new("kill").args(["-9", &p.to_string()]).status();
        }
        // The survivors elect a new leader if blade03 led: until then a
        // member answers `leader changed` (HTTP 503); etcd must answer
        // again on its own.
        let listed = rig.wait("etcd answers after the loss", || {
            rig.vc_json(1, &["list", "--json"]).ok()
        })?;
        let n = listed.as_array().map_or(0, Vec::len);
        let back = rig.wait("VMs back on survivors", || {
            let a = rig.all_running("demo", Some("blade03"))?;
            let b = rig.all_running("cyc", Some("blade03"))?;
            // Each lost VM booted again on a survivor.
            lost.iter()
                .all(|(vc, vm, n)| rig.readies(vc, vm) > *n)
                .then_some(a.len() + b.len())
        })?;
        let names: Vec<String> = lost
            .iter()
            .map(|(vc, vm, _)| format!("{vc}/{vm}"))
            .collect();
        Ok(format!(
            "killed etcd, vlx-vcd and {} QEMU of blade03; etcd answers ({n} VCs listed); \
             {} booted again on survivors; {back} VMs running on blade01/02",
            on3.len(),
            names.join(" ")
        ))
    })();
    rig.check(
        "kill -9 of a blade: etcd answers, VMs come back on survivors",
        r,
    );

    // A running VM is refused a second start elsewhere.
    let r = (|| {
        let show = rig.vc_json(1, &["show", "cyc", "--json"])?;
        let spec: crate::VcSpec = serde_json::from_value(show["vc"].clone())?;
        let rec = VmRecord {
            vm: crate::VmIndex(1),
            blade: "blade03".parse()?,
            mac: show["vms"][0]["mac"].as_str().unwrap_or("").parse()?,
        };
        let other = Host {
            shared: rig.shared.clone(),
            run: rig.out.join("intruder"),
            accel: Accel::Tcg,
        };
        match other.start(&spec, &rec, false) {
            Ok(()) => bail!("a second QEMU started on cyc/vm1's overlay"),
            Err(e) => {
                let e = format!("{e:#}");
                if !e.contains("Failed to get \"write\" lock") {
                    bail!("refused, but not by the image lock: {e}");
                }
                Ok("QEMU: Failed to get \"write\" lock".to_owned())
            }
        }
    })();
    rig.check("starting a running VM on another blade is refused", r);

    // Destroy leaves nothing.
    save_consoles(rig);
    let r = (|| {
        for vc in ["demo", "cyc"] {
            rig.vc_json(2, &["destroy", vc, "--force", "--json"])?;
        }
        rig.wait("VMs and overlays gone", || {
            let gone = !rig.shared.join("vcs/demo").exists()
                && !rig.shared.join("vcs/cyc").exists()
                && qemu_pids(rig).is_empty();
            gone.then_some(())
        })?;
        let keys = rig.etcd_keys(1, "/vlx/vc")?;
        let status = rig.etcd_keys(1, "/vlx/status/")?;
        if !keys.is_empty() || !status.is_empty() {
            bail!("keys left: {keys:?} {status:?}");
        }
        let now = sha256(&base)?;
        if now != base_sum {
            bail!("the base image changed");
        }
        Ok("no overlay, no QEMU, no key; base image unchanged".to_owned())
    })();
    rig.check(
        "destroy leaves no overlay, process or key; base unchanged",
        r,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The rig's cluster dnsmasq is the cluster's template, rendered: its VC
    /// lines are there, and dnsmasq accepts the whole (with the rig's own
    /// lines and flag, as the rig runs it).
    #[test]
    fn the_rigs_cluster_dnsmasq_is_the_rendered_template_and_dnsmasq_accepts_it() {
        let tmp = tempfile::tempdir().unwrap();
        let hosts = tmp.path().join("vc-hosts");
        std::fs::write(&hosts, "10.200.0.2\tvm1.demo.rig.test\n").unwrap();
        let text = render_cluster_dnsmasq(&tmp.path().join("overlay"), 2, 3, &hosts).unwrap();
        for line in [
            "bind-dynamic".to_owned(),
            format!("except-interface={}*", vc_net::model::TAP_PREFIX),
            format!("addn-hosts={}", hosts.display()),
            "host-record=blade03.rig.test,blade03,10.250.0.3".to_owned(),
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
        let conf = tmp.path().join("dnsmasq.conf");
        std::fs::write(&conf, format!("{text}\nlog-dhcp\n")).unwrap();
        let o = Command::new("dnsmasq")
            .args(["--test", "--user=root"])
            .arg(format!("--conf-file={}", conf.display()))
            .output()
            .expect("running dnsmasq (Debian dnsmasq-base)");
        let said = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{said}\n{text}");
        assert!(said.contains("syntax check OK"), "{said}");
    }
}
