//! Step 13 (`--day2`): the shared volume's holder hangs under a client.
//!
//! A running blade that will not take the shared volume's VIP (of the
//! blades that do not hold it, the one with the lowest VRRP priority for
//! it, read from its own keepalived config, so that another one takes
//! it) mounts the volume over NFS from the VIP the way blades do (NFSv4,
//! `hard`, [`OPTIONS`]), writes its file there and then writes in a loop,
//! noting its own uptime after each write that went through. The VIP
//! holder hangs: its keepalived and its lease keeper are stopped while its
//! kernel keeps the volume mounted and serves it (the case the fence is
//! for: a holder that is not dead, only silent). Its watchdog must reset
//! it (QEMU ends); once the VIP has moved, the client's file must read
//! back through the mount and its writes go on. The longest time a write
//! blocked, on the client's own clock, must stay within
//! [`NFS_RESUME_LIMIT`], and is reported with the time the new holder's
//! mount of the volume took (its `shared-volume` log line: the lease's
//! part of it too).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::{Exec, Fail, fail};
use crate::checks::{self, Node};
use crate::report::MarkKind;

/// The step's number (see [`crate::plan::Step::number`]).
const STEP: u8 = 13;
/// How long the client's writes may block when the holder dies, on its
/// own clock: about twice the sum of the move's parts on real disks
/// (about 16 s until the volume is served again, then the client's
/// reclaim, or at worst NFSv4's 10 s grace, and its retries:
/// `overlays/README.md`, "How long the shared volume's move takes"), for
/// TCG on a loaded two-core machine.
pub const NFS_RESUME_LIMIT: Duration = Duration::from_secs(60);
/// How long the host waits for the read through the hard mount once the
/// VIP has moved: its own deadline, past [`NFS_RESUME_LIMIT`].
const RESUME_WATCH: Duration = Duration::from_secs(180);
/// How long the host waits for the client's mount: the holder may still
/// be taking the volume over from step 12's reboots (waiting out the
/// lease of a holder that did not let it go), and `mount.nfs` retries
/// meanwhile (for two minutes).
const MOUNT_WATCH: Duration = Duration::from_secs(180);
/// The blades' own NFS mount options for the shared volume (as
/// `overlays/debian/usr/lib/vlx/vcd-start` mounts it): NFSv4 over TCP,
/// hard, first retry after 1 s and each one 1 s later than the one before,
/// the connection given up and made anew after 3 retries.
const OPTIONS: &str = "vers=4,proto=tcp,hard,timeo=10,retrans=3";
/// Where the client mounts the shared volume.
const MOUNT: &str = "/mnt/vlx-rig-nfs";
/// The client's own record: its uptime after each write that went
/// through.
const WROTE: &str = "/run/vlx-rig-nfs-wrote";
const PID: &str = "/run/vlx-rig-nfs.pid";

fn file(client: &str) -> String {
    format!("{MOUNT}/vlx-rig-nfs-{client}")
}

impl Exec<'_> {
    /// Step 13.
    pub(super) fn shared_failover(&mut self) -> Result<(), Fail> {
        let limit = self.r.timeouts.command;
        // Step 12 ends with a rollback that every blade reloads; the
        // holder is taken away from a cluster that has done so.
        self.await_followers(STEP);
        let (vip, holder, client) = {
            let nodes = self.nodes();
            let first = nodes
                .first()
                .ok_or_else(|| fail("shared volume's VIP", "no blade runs"))?;
            let vip = shared_vip(first, limit).map_err(|e| fail("shared volume's VIP", e))?;
            let holders = checks::vip_holders(&nodes, vip, limit)
                .map_err(|e| fail(format!("{vip} held by one blade"), e.to_string()))?;
            let holder = match holders.as_slice() {
                [one] => one.clone(),
                _ => {
                    return Err(fail(
                        format!("{vip} held by one blade"),
                        format!("held by [{}]", holders.join(", ")),
                    ));
                }
            };
            let mut others = Vec::new();
            for n in nodes.iter().filter(|n| n.name != holder) {
                let p = shared_priority(n, limit)
                    .map_err(|e| fail("VRRP priorities for the shared volume", e))?;
                others.push((p, n.name.to_string()));
            }
            if others.len() < 2 {
                return Err(fail(
                    "a client that does not take the VIP",
                    format!(
                        "besides {holder} only [{}] run: the client and the new holder must be \
                         two blades",
                        others
                            .iter()
                            .map(|(_, n)| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            others.sort();
            let client = others[0].1.clone();
            let h = nodes.iter().find(|n| n.name == holder).ok_or_else(|| {
                fail("shared volume's holder", format!("{holder} is not running"))
            })?;
            serving(h, MOUNT_WATCH)
                .map_err(|e| fail(format!("{holder} serves the shared volume over NFS"), e))?;
            let n = nodes
                .iter()
                .find(|n| n.name == client)
                .ok_or_else(|| fail("NFS client", format!("{client} is not running")))?;
            start(n, limit)
                .map_err(|e| fail(format!("{client} mounts the shared volume over NFS"), e))?;
            (vip, holder, client)
        };
        self.checks.pass(
            STEP,
            format!("{client} mounts the shared volume over NFS"),
            format!(
                "from {vip} ({OPTIONS}), held by {holder}; {client} has the lowest VRRP priority \
                 for it of the other blades; its writes go through"
            ),
        );
        self.say(&format!(
            "hanging {holder} (holder of {vip} and the shared volume): its keepalived and its \
             lease keeper stopped, its kernel, nfsd and mount left running"
        ));
        self.mark(&holder, MarkKind::Killed);
        {
            let nodes = self.nodes();
            let h = nodes.iter().find(|n| n.name == holder).ok_or_else(|| {
                fail("shared volume's holder", format!("{holder} is not running"))
            })?;
            hang(h, limit).map_err(|e| fail(format!("{holder} hangs"), e))?;
        }
        let hung = Instant::now();
        // The fence: the hung holder no longer renews its lease nor pets
        // its watchdog, which resets it (QEMU ends: -no-reboot).
        let check = format!("{holder}'s watchdog resets it once it hangs");
        let mut reset = None;
        while hung.elapsed() < RESET_WATCH {
            if self.live_mut(&holder).is_some_and(|b| b.is_running()) {
                std::thread::sleep(Duration::from_millis(200));
            } else {
                reset = Some(hung.elapsed());
                break;
            }
        }
        match reset {
            Some(t) => self.checks.pass(
                STEP,
                check,
                format!(
                    "its machine reset {:.1} s after the hang, as the rig saw it (its watchdog's \
                     timeout is 6 s)",
                    t.as_secs_f64()
                ),
            ),
            None => self.checks.fail(
                STEP,
                check,
                format!(
                    "it still runs {} s after the hang: a hung holder is not fenced; {holder}'s \
                     console ends: {}",
                    RESET_WATCH.as_secs(),
                    self.live(&holder)
                        .map(|b| b.console().tail(4).join(" | "))
                        .unwrap_or_default()
                ),
            ),
        }
        self.power_off(&holder);
        let check = format!("{vip} moves after {holder} hangs");
        let (new_holder, seen, passing) = {
            let nodes = self.nodes();
            let before = hung.elapsed();
            let (h, seen, passing) =
                await_settled_vip(&nodes, vip, self.r.timeouts.vip_watch, limit)
                    .map_err(|e| fail(check.clone(), e))?;
            (h, before + seen, passing)
        };
        self.mark(&new_holder, MarkKind::VipTaken);
        self.checks.expect(
            STEP,
            check,
            new_holder != client,
            format!(
                "{new_holder} holds it {:.1} s after the hang, as the rig saw it, and still \
                 {} s later{}{}",
                seen.as_secs_f64(),
                SETTLED.as_secs(),
                if passing.is_empty() {
                    String::new()
                } else {
                    format!(" (held for a moment before by {})", passing.join(", "))
                },
                if new_holder == client {
                    " (the client itself: the check needs a client that does not take it)"
                } else {
                    ""
                }
            ),
        );
        let check = format!(
            "the shared volume is served again within {} s of the hang",
            MOVE_LIMIT.as_secs()
        );
        let served = {
            let nodes = self.nodes();
            match nodes.iter().find(|n| n.name == new_holder) {
                Some(n) => serving(n, MOVE_WATCH).map(|()| hung.elapsed()),
                None => Err(format!("{new_holder} has no power")),
            }
        };
        match served {
            Ok(t) => {
                self.checks.expect(
                STEP,
                check,
                t <= MOVE_LIMIT,
                format!(
                    "{new_holder} serves it {:.1} s after the hang, as the rig saw it (the volume \
                     mounted, nfsd's threads running, the volume exported; looked at every \
                     second)",
                    t.as_secs_f64()
                ),
                );
            }
            Err(e) => {
                self.checks.fail(STEP, check, e);
            }
        }
        let check = format!("{client}'s hard NFS mount resumes after {holder} hangs");
        let result = {
            let nodes = self.nodes();
            match nodes.iter().find(|n| n.name == client) {
                Some(n) => resumed(n, limit),
                None => Err(format!("{client} has no power")),
            }
        };
        let mounted = {
            let nodes = self.nodes();
            nodes
                .iter()
                .find(|n| n.name == new_holder)
                .map(|n| format!("{}; its nfsd: {}", mount_took(n, limit), grace(n, limit)))
                .unwrap_or_else(|| "not running".into())
        };
        match result {
            Ok(gap) => {
                let detail = format!(
                    "its file read back through the mount; its writes blocked at most {gap:.1} s \
                     on {client}'s own clock (limit {} s); {new_holder}'s mount of the volume: \
                     {mounted}",
                    NFS_RESUME_LIMIT.as_secs()
                );
                self.checks
                    .expect(STEP, check, gap <= NFS_RESUME_LIMIT.as_secs_f64(), detail);
            }
            Err(e) => {
                let seen = {
                    let nodes = self.nodes();
                    let said = |name: &str, cmd: &str| {
                        nodes
                            .iter()
                            .find(|n| n.name == name)
                            .map(|n| last_words(n, cmd, limit))
                            .unwrap_or_else(|| "not running".into())
                    };
                    format!(
                        "{new_holder}'s log of the volume: {}; {client}'s kernel: {}",
                        said(&new_holder, &shared_log()),
                        said(&client, "dmesg | tail -n 8"),
                    )
                };
                self.checks.fail(
                    STEP,
                    check,
                    format!("{e}; {new_holder}'s mount of the volume: {mounted}; {seen}"),
                )
            }
        }
        Ok(())
    }
}

/// How long after the holder hangs the new holder must serve the volume
/// (mounted, nfsd's threads, exported), as the rig sees it: the move's
/// parts add up to about 16 s on real disks with one path (VRRP 3 to 4 s,
/// the lease 9 to 10 s, the claim 2 s, the mount and nfsd's start 1 s;
/// `overlays/README.md`, "How long the shared volume's move takes"), 20 s
/// the goal; twice that for TCG on a loaded two-core machine.
const MOVE_LIMIT: Duration = Duration::from_secs(40);
/// How long the host looks for the new holder serving.
const MOVE_WATCH: Duration = Duration::from_secs(120);

/// How long the host waits for the hung holder's watchdog to reset it:
/// its timeout is 6 s (`shared-lease`), and QEMU ends at the reset.
const RESET_WATCH: Duration = Duration::from_secs(60);

/// Hangs the shared volume's holder `n` the way that matters to the
/// fence: its lease keeper and keepalived stopped (SIGSTOP), so that it
/// neither renews the lease nor sends VRRP adverts, while its kernel still
/// runs, keeps the volume mounted and serves NFS (a node whose user space
/// hangs, a split brain's other half). Only its watchdog stops it.
fn hang(n: &Node<'_>, limit: Duration) -> Result<(), String> {
    must(
        n,
        "kill -STOP $(cat /run/vlx-shared-lease.pid) && killall -STOP keepalived",
        limit,
        "stopping the lease keeper and keepalived",
    )
}

/// Runs `cmd` on `n`; an exit other than 0 is an error naming `what`, the
/// exit and the output.
fn must(n: &Node<'_>, cmd: &str, limit: Duration, what: &str) -> Result<(), String> {
    let o = checks::sh(n, cmd, limit).map_err(|e| format!("{}: {what}: {e}", n.name))?;
    if !o.success() {
        return Err(format!(
            "{}: {what} (exit {}): {}",
            n.name,
            o.status,
            o.lines.join(" | ")
        ));
    }
    Ok(())
}

/// How long the VIP must stay with one blade before the step takes it as
/// the new holder.
const SETTLED: Duration = Duration::from_secs(3);

/// [`checks::await_vip`], then until the same blade alone has held the VIP
/// for [`SETTLED`]: when the holder dies, two backups whose timers slip
/// can both take it for about an advert interval, and the lower priority
/// steps back once it hears the higher. Returns the holder, when the rig
/// first saw it, and the blades that held the VIP for a moment before.
fn await_settled_vip(
    nodes: &[Node<'_>],
    vip: Ipv4Addr,
    watch: Duration,
    limit: Duration,
) -> Result<(String, Duration, Vec<String>), String> {
    let start = Instant::now();
    let (mut holder, mut seen) = checks::await_vip(nodes, vip, watch, limit)?;
    let mut passing = Vec::new();
    loop {
        std::thread::sleep(SETTLED);
        let now = checks::vip_holders(nodes, vip, limit).map_err(|e| e.to_string())?;
        match now.as_slice() {
            [one] if *one == holder => return Ok((holder, seen, passing)),
            _ if start.elapsed() >= watch => {
                return Err(format!(
                    "{vip} did not stay with one blade within {} s: held by [{}], before by {holder}",
                    watch.as_secs(),
                    now.join(", ")
                ));
            }
            [one] => {
                passing.push(std::mem::replace(&mut holder, one.clone()));
                seen = start.elapsed();
            }
            _ => {}
        }
    }
}

/// Waits (up to `watch`) until `n` serves the shared volume over NFS: the
/// volume mounted, nfsd's threads running, the volume in the export table.
/// The holder may have taken the volume over only just before (step 12's
/// reboots move the VIP), and a client should not mount in the middle of
/// that.
fn serving(n: &Node<'_>, watch: Duration) -> Result<(), String> {
    let cmd = ". /etc/vlx/node.env && grep -q \" $VLX_SHARED_MOUNT \" /proc/mounts && \
               [ \"$(cat /proc/fs/nfsd/threads 2>/dev/null)\" -gt 0 ] 2>/dev/null && \
               exportfs | grep -q \"^$VLX_SHARED_MOUNT\"";
    let start = Instant::now();
    loop {
        let o = checks::sh(n, cmd, watch).map_err(|e| e.to_string())?;
        if o.success() {
            return Ok(());
        }
        if start.elapsed() >= watch {
            return Err(format!(
                "{}: not serving {} s after the step began; its log of the volume: {}",
                n.name,
                watch.as_secs(),
                last_words(n, &shared_log(), watch)
            ));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// `shared-volume`'s log: the tiny image's syslog, or the journal.
const SHARED_LOG_SOURCE: &str =
    "{ logread 2>/dev/null || journalctl -q -t vlx-shared 2>/dev/null; }";

/// The last lines of `shared-volume`'s log.
fn shared_log() -> String {
    format!("{SHARED_LOG_SOURCE} | grep vlx-shared | tail -n 6")
}

/// What `cmd` prints on `n`, on one line, for a failure's detail.
fn last_words(n: &Node<'_>, cmd: &str, limit: Duration) -> String {
    match checks::sh(n, cmd, limit) {
        Ok(o) if !o.text().trim().is_empty() => o.lines.join(" | "),
        Ok(_) => "nothing".into(),
        Err(e) => format!("unread: {e}"),
    }
}

/// The shared volume's VIP, from `n`'s own `node.env`.
fn shared_vip(n: &Node<'_>, limit: Duration) -> Result<Ipv4Addr, String> {
    let o = checks::sh(n, ". /etc/vlx/node.env && echo \"$VLX_SHARED_VIP\"", limit)
        .map_err(|e| format!("{}: reading /etc/vlx/node.env: {e}", n.name))?;
    let text = o.text();
    text.trim().parse().map_err(|_| {
        format!(
            "{}: VLX_SHARED_VIP in /etc/vlx/node.env is {text:?}, not an address",
            n.name
        )
    })
}

/// `n`'s VRRP priority for the instance whose notify script is the
/// shared volume's, from its own keepalived config.
fn shared_priority(n: &Node<'_>, limit: Duration) -> Result<u8, String> {
    let conf = "/etc/keepalived/keepalived.conf";
    let o = checks::sh(
        n,
        &format!(
            "awk '/^vrrp_instance/ {{ p = \"\" }} $1 == \"priority\" {{ p = $2 }} \
             /shared-volume/ {{ print p }}' {conf}"
        ),
        limit,
    )
    .map_err(|e| format!("{}: reading {conf}: {e}", n.name))?;
    let text = o.text();
    text.trim().parse().map_err(|_| {
        format!(
            "{}: {conf} gives the shared volume's instance the priority {text:?}",
            n.name
        )
    })
}

/// Mounts the shared volume on `n` from the VIP (read from the node's own
/// `node.env`), writes its file there, and starts the write loop
/// (bounded: about ten minutes); waits until the first write is recorded.
fn start(n: &Node<'_>, limit: Duration) -> Result<(), String> {
    let f = file(n.name);
    let cmd = format!(
        ". /etc/vlx/node.env && mkdir -p {MOUNT} && \
         mount.nfs \"$VLX_SHARED_VIP:$VLX_SHARED_MOUNT\" {MOUNT} -o {OPTIONS} && \
         echo {name} > {f} && rm -f {WROTE} || exit 1; \
         (i=0; while [ $i -lt 3000 ]; do echo $i >> {f}.beat && \
         read -r up _ < /proc/uptime && echo \"$up\" >> {WROTE}; i=$((i + 1)); sleep 0.2; done) \
         </dev/null >/dev/null 2>&1 & echo $! > {PID}",
        name = n.name
    );
    must(n, &cmd, MOUNT_WATCH, "mounting the shared volume over NFS")?;
    // The mount and the first write are done (in the foreground, above):
    // the loop's first write follows within a command's time.
    let start = Instant::now();
    loop {
        let o = checks::sh(n, &format!("test -s {WROTE}"), limit).map_err(|e| e.to_string())?;
        if o.success() {
            return Ok(());
        }
        if start.elapsed() >= limit {
            return Err(format!("{}: no write to {f}.beat went through", n.name));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// After the holder's death: reads the client's file back through the
/// mount (blocking until the volume is served again, up to
/// [`RESUME_WATCH`]), waits for a write after that, stops the loop,
/// unmounts, and returns the longest time a write blocked, in seconds of
/// the client's uptime.
fn resumed(n: &Node<'_>, limit: Duration) -> Result<f64, String> {
    let f = file(n.name);
    let o = checks::sh(n, &format!("cat {f}"), RESUME_WATCH).map_err(|e| {
        format!(
            "{}: reading {f} back through the hard mount, within {} s: {e}",
            n.name,
            RESUME_WATCH.as_secs()
        )
    })?;
    if !(o.success() && o.text() == n.name) {
        return Err(format!("{}: {f} reads back {:?}", n.name, o.text()));
    }
    // One more write after the read, so the loop is past its blocked one.
    let o = checks::sh(
        n,
        &format!(
            "n=$(wc -l < {WROTE}); while [ $(wc -l < {WROTE}) -le $n ]; do sleep 0.2; done; \
             kill $(cat {PID}); cat {WROTE}"
        ),
        limit,
    )
    .map_err(|e| format!("{}: waiting for a write after the read: {e}", n.name))?;
    let ups: Vec<f64> = o
        .lines
        .iter()
        .filter_map(|l| l.trim().parse::<f64>().ok())
        .collect();
    if ups.len() < 2 {
        return Err(format!("{}: {WROTE} records {} writes", n.name, ups.len()));
    }
    let gap = ups.windows(2).map(|w| w[1] - w[0]).fold(0.0_f64, f64::max);
    // Nothing else uses the mount: gone before the blades power off.
    must(
        n,
        &format!("umount {MOUNT}"),
        limit,
        &format!("umount {MOUNT}"),
    )?;
    Ok(gap)
}

/// What the new holder's kernel said of nfsd's client records and its
/// grace period: who keeps the records (nfsdcld, or the legacy folder) and
/// whether the grace ended early, once every known client had reclaimed.
fn grace(n: &Node<'_>, limit: Duration) -> String {
    let cmd = "dmesg | grep -E 'NFSD: (Using .*client tracking|all clients done|starting .*grace)' \
               | tail -n 3 | sed 's/^\\[[^]]*\\] //'";
    match checks::sh(n, cmd, limit) {
        Ok(o) if !o.lines.is_empty() => o.lines.join(" / "),
        Ok(_) => "no NFSD lines in its kernel log".into(),
        Err(e) => format!("its kernel log unread: {e}"),
    }
}

/// What the new holder's `shared-volume` said of its mount (its syslog).
fn mount_took(n: &Node<'_>, limit: Duration) -> String {
    let cmd = format!(
        "{SHARED_LOG_SOURCE} | grep 'vlx-shared.*mounted' | tail -n 1 | sed 's/.*vlx-shared[^:]*: //'"
    );
    match checks::sh(n, &cmd, limit) {
        Ok(o) if !o.text().trim().is_empty() => o.text().trim().to_string(),
        Ok(_) => "no `mounted` line in its log".into(),
        Err(e) => format!("its log unread: {e}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The client mounts as the blades do: every option of vcd-start's
    /// NFSv4 mount is in [`OPTIONS`], and nothing else but the version.
    #[test]
    fn the_rig_client_mounts_with_the_blades_own_options() {
        let script = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../overlays/debian/usr/lib/vlx/vcd-start"),
        )
        .unwrap();
        let line = script
            .lines()
            .find(|l| l.trim_start().starts_with("mount -t nfs4 -o "))
            .expect("vcd-start mounts the shared volume with -t nfs4 -o");
        let theirs = line
            .trim_start()
            .trim_start_matches("mount -t nfs4 -o ")
            .split_whitespace()
            .next()
            .unwrap();
        let mut theirs: Vec<&str> = theirs.split(',').collect();
        let mut ours: Vec<&str> = OPTIONS.split(',').filter(|o| *o != "vers=4").collect();
        theirs.sort_unstable();
        ours.sort_unstable();
        assert_eq!(ours, theirs);
    }
}
