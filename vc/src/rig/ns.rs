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
}

impl Net {
    /// `n` blades `PREFIX-b<i>` with `10.250.0.<i>/24` on `eth0`.
    pub fn create(prefix: &str, n: usize) -> anyhow::Result<Net> {
        let mut net = Net {
            switch: format!("{prefix}-sw"),
            blades: Vec::new(),
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

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.blades.iter().chain(std::iter::once(&self.switch)) {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// Blade `i`'s address.
pub fn addr(i: usize) -> String {
    format!("10.250.0.{i}")
}
