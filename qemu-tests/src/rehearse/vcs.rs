//! A virtual cluster on the rig's blades: where the host image carries
//! `vlx-vcd` (the Debian host), step 5 imports the tiny guest once into
//! the shared volume, creates a 2-VM Cyclic VC with `vlx-vc` on the first
//! blade, waits for both guests to print `vlx-guest: ready` on their
//! consoles (QEMU under TCG inside the TCG blades: the time each took is
//! in the check's detail) and destroys the VC, so the later steps run
//! without VMs. Every command is the blade's own `vlx-vc`, over SSH, but
//! the wait for the guests: each VM's blade greps its console file.
//!
//! The VMs get 128 MiB: with 64 MiB the Debian cloud kernel of the tiny
//! guest never gets past its setup code (SeaBIOS's debug port shows the VM
//! rebooting right after "Probing EDD", over and over).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::Exec;
use crate::checks::{self, Node};
use crate::report::Checks;

const STEP: u8 = 5;
/// Where `vcd-start` mounts the shared volume on every blade.
const SHARED: &str = "/vlx/vc";
/// The VC's name, and the guest's.
const VC: &str = "rig";
const GUEST: &str = "tiny";
/// Where the guest's files land on the first blade before the import.
const UPLOAD: &str = "/var/tmp/vlx-rig-guest";
/// How long the agents get to start: each mounts the shared volume from
/// the VIP holder first, retried every 5 s by systemd.
const AGENTS_LIMIT: Duration = Duration::from_secs(240);
/// How long the guests get to print `ready`: a kernel booting under TCG
/// inside a TCG blade (measured: 200 to 300 s).
const READY_LIMIT: Duration = Duration::from_secs(900);
/// How long a destroyed VC's QEMU processes get to end.
const GONE_LIMIT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_secs(5);

impl Exec<'_> {
    /// Whether the first running blade carries the VC agent.
    fn blades_carry_vcd(&self) -> bool {
        let nodes = self.nodes();
        nodes.first().is_some_and(|n| {
            checks::sh(n, "test -x /usr/sbin/vlx-vcd", self.r.timeouts.command)
                .is_ok_and(|o| o.success())
        })
    }

    /// The VC checks of step 5 (see the module's comment); a host image
    /// without `vlx-vcd` is said and skipped.
    pub(super) fn virtual_cluster(&self, checks: &mut Checks) {
        if self.rig_key.is_none() || !self.blades_carry_vcd() {
            self.say("the blades carry no vlx-vcd: virtual clusters not checked");
            return;
        }
        let dir = self.logs.dir.join("vc-guest");
        let guest = match std::fs::create_dir_all(&dir)
            .map_err(anyhow::Error::from)
            .and_then(|()| vc::tiny::build(&dir))
        {
            Ok(g) => g,
            Err(e) => {
                checks.fail(STEP, "VC guest built", format!("{e:#}"));
                return;
            }
        };
        let limit = self.r.timeouts.command;
        let nodes = self.nodes();
        let say = |s: &str| self.say(s);
        if let Err(e) = run(checks, &nodes, &guest, limit, &say) {
            checks.fail(STEP, e.0, e.1);
        }
    }
}

/// A failed check: its name and why.
struct Failed(String, String);

fn failed(check: impl Into<String>, why: impl std::fmt::Display) -> Failed {
    Failed(check.into(), why.to_string())
}

fn run(
    checks: &mut Checks,
    nodes: &[Node<'_>],
    guest: &vc::tiny::TinyGuest,
    limit: Duration,
    say: &dyn Fn(&str),
) -> Result<(), Failed> {
    let first = nodes
        .first()
        .ok_or_else(|| failed("VC agents", "no blade runs"))?;

    // Every running blade's agent is up and registered.
    let check = "vlx-vcd registered on every blade";
    let want: BTreeSet<&str> = nodes.iter().map(|n| n.name).collect();
    let start = Instant::now();
    let got = loop {
        let o = checks::sh(
            first,
            "etcdctl --dial-timeout=2s --command-timeout=5s \
             --endpoints=\"$(sed -n 's/^endpoints *= *//p' /etc/vlx/etcd.conf | tr -d '\"[] ')\" \
             get --prefix --keys-only /vlx/blades/",
            limit,
        )
        .map_err(|e| failed(check, e))?;
        let got: BTreeSet<String> = o
            .lines
            .iter()
            .filter_map(|l| l.strip_prefix("/vlx/blades/"))
            .map(str::to_owned)
            .collect();
        if want.iter().all(|w| got.contains(*w)) {
            break got;
        }
        if start.elapsed() >= AGENTS_LIMIT {
            let states: Vec<String> = nodes
                .iter()
                .map(|n| {
                    let s = checks::sh(n, "systemctl is-active vlx-vcd", limit)
                        .map(|o| o.text())
                        .unwrap_or_else(|e| e.to_string());
                    format!("{}: {s}", n.name)
                })
                .collect();
            return Err(failed(
                check,
                format!(
                    "after {} s registered: {got:?}; vlx-vcd.service {}",
                    AGENTS_LIMIT.as_secs(),
                    states.join(", ")
                ),
            ));
        }
        std::thread::sleep(POLL);
    };
    checks.pass(
        STEP,
        check,
        format!(
            "{} under /vlx/blades/ after {:.0} s",
            got.into_iter().collect::<Vec<_>>().join(" "),
            start.elapsed().as_secs_f64()
        ),
    );

    // The guest, imported once into the shared volume.
    let check = format!("guest {GUEST} imported from {}", first.name);
    let mut remote = Vec::new();
    for (local, name) in [
        (&guest.kernel, "vmlinuz"),
        (&guest.initrd, "initrd.img"),
        (&guest.tarball, "root.tar.gz"),
    ] {
        let to = format!("{UPLOAD}/{name}");
        first
            .blade
            .shell()
            .send(local, &to, limit)
            .map_err(|e| failed(&check, e))?;
        remote.push(to);
    }
    let o = vlx_vc(
        first,
        &format!(
            "import-guest {GUEST} --kernel {} --initrd {} --tarball {} --shared {SHARED} \
             --size 64MiB --json",
            remote[0], remote[1], remote[2]
        ),
        limit.max(Duration::from_secs(120)),
    )
    .map_err(|e| failed(&check, e))?;
    checks.pass(STEP, check, o.trim().replace('\n', " "));

    // Two VMs, Cyclic: one on each of two blades.
    let check = "VC of 2 VMs placed Cyclic on 2 blades";
    let created = Instant::now();
    let o = vlx_vc(
        first,
        &format!(
            "create --name {VC} --guest {GUEST} --vms 2 --vcpus 1 --memory 128MiB \
             --placement cyclic --free --json"
        ),
        limit,
    )
    .map_err(|e| failed(check, e))?;
    let placed = placement(&o).map_err(|e| failed(check, e))?;
    let blades: BTreeSet<&str> = placed.iter().map(|(_, b)| b.as_str()).collect();
    if placed.len() != 2 || blades.len() != 2 {
        return Err(failed(check, format!("placed {placed:?}")));
    }
    checks.pass(
        STEP,
        check,
        placed
            .iter()
            .map(|(vm, b)| format!("{vm} on {b}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    say(&format!(
        "VC {VC} created; waiting up to {} s for its guests (TCG inside TCG)",
        READY_LIMIT.as_secs()
    ));

    // Both guests boot from their overlays and say so. Each VM's blade
    // watches its VM's console file itself, one command whose loop greps
    // it every 5 s, so that the wait costs the blades next to nothing:
    // asking the first blade for `vlx-vc console` of each VM every 5 s (an
    // SSH session and an etcd snapshot each) took about half of that
    // blade's emulated CPU, and its own guest twice as long to boot.
    // `vlx-vc console` then shows each guest's marker once.
    let mut by_blade: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (vm, blade) in &placed {
        by_blade
            .entry(blade.as_str())
            .or_default()
            .push(vm.as_str());
    }
    let offset = created.elapsed().as_secs_f64();
    let left = READY_LIMIT.saturating_sub(created.elapsed()).as_secs();
    let watched: Vec<(&str, Watched)> = std::thread::scope(|s| {
        let running: Vec<_> = by_blade
            .iter()
            .map(|(blade, vms)| {
                let node = nodes.iter().find(|n| n.name == *blade);
                let vms = vms.clone();
                (
                    *blade,
                    s.spawn(move || match node {
                        Some(n) => watch_consoles(n, &vms, left, limit),
                        None => Err(format!("{blade} is not a running blade of the rig")),
                    }),
                )
            })
            .collect();
        running
            .into_iter()
            .map(|(blade, h)| {
                let r = h
                    .join()
                    .unwrap_or_else(|_| Err("the watch panicked".into()));
                (blade, r)
            })
            .collect()
    });
    for (vm, blade) in &placed {
        let marker = format!("vlx-guest: ready {VC}/{vm}");
        let name = format!("VM {VC}/{vm} ready on {blade}");
        let seen = watched
            .iter()
            .find(|(b, _)| b == blade)
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| Err("not watched".into()));
        let at = seen
            .as_ref()
            .ok()
            .and_then(|v| v.iter().find(|(m, _)| m == vm).map(|(_, t)| *t));
        let console = vlx_vc(
            first,
            &format!("console {VC}/{vm} --shared {SHARED}"),
            limit,
        )
        .unwrap_or_else(|e| e);
        match at {
            Some(t) if console.contains(&marker) => checks.pass(
                STEP,
                name,
                format!(
                    "`{marker}` {:.0} s after create (QEMU, TCG inside the TCG blade; \
                     `vlx-vc console` shows it)",
                    offset + t
                ),
            ),
            Some(t) => checks.fail(
                STEP,
                name,
                format!(
                    "{blade} saw `{marker}` {:.0} s after create, but `vlx-vc console` \
                     does not show it: {}",
                    offset + t,
                    tail(&console, 3)
                ),
            ),
            None => {
                let state = vlx_vc(first, &format!("show {VC}"), limit).unwrap_or_default();
                let why = match &seen {
                    Err(e) => e.clone(),
                    Ok(_) => format!("no `{marker}` within {} s", READY_LIMIT.as_secs()),
                };
                checks.fail(
                    STEP,
                    name,
                    format!(
                        "{why}; console ends: {}; show: {}",
                        tail(&console, 3),
                        state.replace('\n', " | ")
                    ),
                );
            }
        }
    }

    // Destroyed: no key, and no QEMU left on any blade.
    let check = format!("VC {VC} destroyed, no QEMU left");
    vlx_vc(first, &format!("destroy {VC} --force"), limit).map_err(|e| failed(&check, e))?;
    let start = Instant::now();
    loop {
        let mut left = Vec::new();
        for n in nodes {
            // By executable (a pattern would match this very command).
            let o = checks::sh(n, "pidof qemu-system-x86_64 || true", limit)
                .map_err(|e| failed(&check, e))?;
            if !o.text().trim().is_empty() {
                left.push(format!("{}: pid {}", n.name, o.text().trim()));
            }
        }
        let listed = vlx_vc(first, "list", limit).map_err(|e| failed(&check, e))?;
        if left.is_empty() && !listed.contains(VC) {
            checks.pass(
                STEP,
                check,
                format!(
                    "`vlx-vc list` lacks it and no blade runs QEMU after {:.0} s",
                    start.elapsed().as_secs_f64()
                ),
            );
            return Ok(());
        }
        if start.elapsed() >= GONE_LIMIT {
            return Err(failed(
                check,
                format!("QEMU still runs on {}; list: {listed}", left.join(", ")),
            ));
        }
        std::thread::sleep(POLL);
    }
}

/// Runs `vlx-vc ARGS` on `node`; its standard output, or its error.
fn vlx_vc(node: &Node<'_>, args: &str, limit: Duration) -> Result<String, String> {
    let o = checks::sh(node, &format!("vlx-vc {args} 2>&1"), limit).map_err(|e| e.to_string())?;
    if o.success() {
        Ok(o.text())
    } else {
        Err(format!(
            "`vlx-vc {args}` on {} exited {}: {}",
            node.name,
            o.status,
            o.text()
        ))
    }
}

/// The VMs a blade saw ready, each with its seconds, or why it could not look.
type Watched = Result<Vec<(String, f64)>, String>;

/// Waits on `node` (one command) until each of `vms` has printed its
/// ready marker to its console file on the shared volume, or `secs` pass;
/// returns each VM seen and the seconds it took from the command's start.
/// The blade greps the files every 5 s: no SSH session, no `vlx-vc` and
/// no etcd request per look.
fn watch_consoles(node: &Node<'_>, vms: &[&str], secs: u64, limit: Duration) -> Watched {
    let cmd = watch_command(SHARED, vms, secs, 5);
    let o = checks::sh(node, &cmd, limit + Duration::from_secs(secs))
        .map_err(|e| format!("watching the consoles on {}: {e}", node.name))?;
    Ok(parse_ready(&o.lines))
}

/// The shell command of [`watch_consoles`]: the consoles under `shared`
/// (`vcs/VC/VM/console.log`), looked at every `every` seconds; exits 0
/// once every VM was seen, 1 after `secs`.
fn watch_command(shared: &str, vms: &[&str], secs: u64, every: u64) -> String {
    format!(
        "start=$(date +%s); left='{}'; while :; do still=; \
         for vm in $left; do \
         if grep -qF \"vlx-guest: ready {VC}/$vm\" {shared}/vcs/{VC}/$vm/console.log 2>/dev/null; \
         then echo \"ready $vm $(( $(date +%s) - start ))\"; else still=\"$still $vm\"; fi; done; \
         left=$still; [ -z \"$left\" ] && exit 0; \
         [ $(( $(date +%s) - start )) -ge {secs} ] && exit 1; sleep {every}; done",
        vms.join(" ")
    )
}

/// `(vm, seconds)` of each `ready VM SECONDS` line.
fn parse_ready(lines: &[String]) -> Vec<(String, f64)> {
    lines
        .iter()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            match (
                w.next(),
                w.next(),
                w.next().and_then(|t| t.parse().ok()),
                w.next(),
            ) {
                (Some("ready"), Some(vm), Some(t), None) => Some((vm.to_owned(), t)),
                _ => None,
            }
        })
        .collect()
}

/// `(vm, blade)` of each VM in `vlx-vc create --json`'s answer.
fn placement(json: &str) -> Result<Vec<(String, String)>, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("{e}: {json}"))?;
    let vms = v["vms"]
        .as_array()
        .ok_or_else(|| format!("no `vms` in {json}"))?;
    vms.iter()
        .map(|vm| {
            let name = match &vm["vm"] {
                serde_json::Value::Number(n) => format!("vm{n}"),
                // Named in a shell command later: `vm` and digits only.
                serde_json::Value::String(s)
                    if s.strip_prefix("vm").is_some_and(|n| {
                        !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
                    }) =>
                {
                    s.clone()
                }
                other => return Err(format!("a VM without an index: {other}")),
            };
            let blade = vm["blade"]
                .as_str()
                .ok_or_else(|| format!("{name} has no blade in {json}"))?;
            Ok((name, blade.to_owned()))
        })
        .collect()
}

/// The last `n` non-empty lines of `text`, joined.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_reads_the_vms_of_create() {
        let json = r#"{"created":"rig","id":7,"net":null,"vms":[
            {"vm":1,"blade":"blade01","mac":"02:00:00:00:07:01"},
            {"vm":2,"blade":"blade02","mac":"02:00:00:00:07:02"}]}"#;
        assert_eq!(
            placement(json).unwrap(),
            vec![
                ("vm1".to_owned(), "blade01".to_owned()),
                ("vm2".to_owned(), "blade02".to_owned())
            ]
        );
        assert!(placement(r#"{"vms":[{"vm":1}]}"#).is_err());
        assert!(placement("not json").is_err());
        assert_eq!(
            placement(r#"{"vms":[{"vm":"vm3","blade":"blade01"}]}"#).unwrap(),
            vec![("vm3".to_owned(), "blade01".to_owned())]
        );
        assert!(placement(r#"{"vms":[{"vm":"vm1'; reboot; '","blade":"blade01"}]}"#).is_err());
    }

    /// The watch command, run by a real shell on console files.
    #[test]
    fn the_watch_sees_each_marker_and_gives_up_after_its_time() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().to_str().unwrap();
        for vm in ["vm1", "vm2"] {
            std::fs::create_dir_all(d.path().join(format!("vcs/{VC}/{vm}"))).unwrap();
        }
        let console = |vm: &str| d.path().join(format!("vcs/{VC}/{vm}/console.log"));
        std::fs::write(console("vm1"), format!("boot\nvlx-guest: ready {VC}/vm1\n")).unwrap();
        // vm2 says the marker of another VM only, then nothing: not seen.
        std::fs::write(console("vm2"), format!("vlx-guest: ready {VC}/vm1\n")).unwrap();
        let run = |vms: &[&str], secs| {
            let o = std::process::Command::new("sh")
                .args(["-c", &watch_command(root, vms, secs, 1)])
                .output()
                .unwrap();
            let lines: Vec<String> = String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_owned)
                .collect();
            (o.status.code(), parse_ready(&lines))
        };
        let (code, seen) = run(&["vm1", "vm2"], 2);
        assert_eq!(code, Some(1));
        // vm1 at the first look: 0 s, or 1 s when that look straddles a
        // tick of `date +%s` (whole seconds; seen on a loaded machine).
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].0, "vm1");
        assert!(seen[0].1 <= 1.0, "not seen at the first look: {seen:?}");
        // A marker that lands while the command waits is seen.
        let late = console("vm2");
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1500));
            std::fs::write(late, format!("x\nvlx-guest: ready {VC}/vm2\n")).unwrap();
        });
        let (code, seen) = run(&["vm2"], 30);
        writer.join().unwrap();
        assert_eq!(code, Some(0));
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, "vm2");
        assert!(seen[0].1 >= 1.0, "seen before it was written: {seen:?}");
        assert_eq!(
            parse_ready(&["ready vm1 x".into(), "ready vm1 3 4".into()]),
            vec![]
        );
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\n\nb\nc\n", 2), "b | c");
        assert_eq!(tail("", 3), "");
    }
}
