//! Blades as network namespaces on one bridge, and processes inside them.
//! Nothing touches the host's own network: the bridge lives in a "switch"
//! namespace, and every veth is created there.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};

/// Runs `ip ARGS` and fails with its stderr.
pub fn ip(args: &[&str]) -> anyhow::Result<()> {
    let o = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (Debian iproute2)")?;
    if !o.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(())
}

/// The switch and blade namespaces of one rig run; deleted on drop (which
/// ends every process still inside them).
#[derive(Debug)]
pub struct Net {
    pub switch: String,
    pub blades: Vec<String>,
    /// The outside namespace, once [`Net::add_outside`] made it.
    pub outside: Option<String>,
}

impl Net {
    /// `n` blades `PREFIX-b<i>` with `10.250.0.<i>/24` on `eth0`.
    pub fn create(prefix: &str, n: usize) -> anyhow::Result<Net> {
        let mut net = Net {
            switch: format!("{prefix}-sw"),
            blades: Vec::new(),
            outside: None,
        };
        ip(&["netns", "add", &net.switch])?;
        ip(&["-n", &net.switch, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &net.switch, "link", "set", "br0", "up"])?;
        for i in 1..=n {
            let ns = format!("{prefix}-b{i}");
            ip(&["netns", "add", &ns])?;
            net.blades.push(ns.clone());
            let port = format!("p{i}");
            ip(&[
                "-n",
                &net.switch,
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &ns,
            ])?;
            ip(&[
                "-n",
                &net.switch,
                "link",
                "set",
                &port,
                "master",
                "br0",
                "up",
            ])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", addr(i)),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// Starts `cmd` inside blade `i` (1-based), stderr and stdout to `log`.
    pub fn spawn(&self, i: usize, cmd: &[String], log: &Path) -> anyhow::Result<Child> {
        let f =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let f2 = f.try_clone()?;
        Command::new("ip")
            .args(["netns", "exec", &self.blades[i - 1]])
            .args(cmd)
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(f2)
            .spawn()
            .with_context(|| format!("starting {} in {}", cmd.join(" "), self.blades[i - 1]))
    }

    /// Runs `cmd` inside blade `i` and returns its output.
    pub fn run(&self, i: usize, cmd: &[&str]) -> anyhow::Result<std::process::Output> {
        Command::new("ip")
            .args(["netns", "exec", &self.blades[i - 1]])
            .args(cmd)
            .output()
            .with_context(|| format!("running {} in {}", cmd.join(" "), self.blades[i - 1]))
    }
}

/// The outside network's address on the blades' segment (the blades'
/// route to [`OUTSIDE_NET`] goes through it).
pub const OUTSIDE_GW: &str = "10.250.0.254";
/// A network beyond the blades, routed by the outside namespace.
pub const OUTSIDE_NET: &str = "172.31.255.0/24";
/// An address in it: what a VC that may go out reaches.
pub const OUTSIDE_ADDR: &str = "172.31.255.1";

impl Net {
    /// The "outside": a namespace on the blades' segment at [`OUTSIDE_GW`]
    /// holding [`OUTSIDE_ADDR`], and on every blade a route to
    /// [`OUTSIDE_NET`] through it. It has no route back to any VC subnet,
    /// so only a masqueraded VM gets an answer.
    pub fn add_outside(&mut self) -> anyhow::Result<String> {
        let ns = format!("{}-out", self.switch.trim_end_matches("-sw"));
        ip(&["netns", "add", &ns])?;
        self.outside = Some(ns.clone());
        ip(&[
            "-n",
            &self.switch,
            "link",
            "add",
            "pout",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &ns,
        ])?;
        ip(&[
            "-n",
            &self.switch,
            "link",
            "set",
            "pout",
            "master",
            "br0",
            "up",
        ])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{OUTSIDE_GW}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{OUTSIDE_ADDR}/32"),
            "dev",
            "lo",
        ])?;
        for b in &self.blades {
            ip(&["-n", b, "route", "add", OUTSIDE_NET, "via", OUTSIDE_GW])?;
        }
        Ok(ns)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self
            .blades
            .iter()
            .chain(self.outside.iter())
            .chain(std::iter::once(&self.switch))
        {
            // What a blade's daemons left behind (a VC dnsmasq whose
            // vlx-vcd was killed) would outlive its namespace.
            if let Ok(o) = Command::new("ip").args(["netns", "pids", ns]).output() {
                let pids: Vec<String> = String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter(|p| p.parse::<u32>().is_ok_and(|p| p > 1))
                    .map(str::to_owned)
                    .collect();
                if !pids.is_empty() {
                    let _ = Command::new("kill").arg("-9").args(&pids).output();
                }
            }
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// Blade `i`'s address.
pub fn addr(i: usize) -> String {
    format!("10.250.0.{i}")
}
