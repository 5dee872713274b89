//! With `--day2`, step 6 also has a client of the shared volume: a
//! survivor mounts it over NFS from the VIP (hard, NFSv3) before the VIP
//! holder is killed and writes to it in a loop; after the kill its writes
//! must resume once the new holder has mounted and exported the volume,
//! and what it wrote before must read back. The time its writes blocked
//! is measured on the client's own clock and reported.

use std::time::Duration;

use super::{Exec, Fail, fail};
use crate::checks::{self, Node};

impl Exec<'_> {
    /// Mounts the shared volume on the first survivor of `victims`' loss
    /// and starts its writes ([`start`]); returns its name.
    pub(super) fn nfs_client(&self, victims: &[String]) -> Result<String, Fail> {
        let limit = self.r.timeouts.command;
        let nodes = self.nodes();
        let n = nodes
            .iter()
            .find(|n| !victims.iter().any(|v| v == n.name))
            .ok_or_else(|| fail("NFS client of the shared volume", "no blade survives"))?;
        start(n, limit)
            .map_err(|e| fail(format!("{} mounts the shared volume over NFS", n.name), e))?;
        Ok(n.name.to_string())
    }

    /// The check of the client's hard mount after `holder` died.
    pub(super) fn nfs_resumed(&mut self, client: &str, holder: &str) {
        let limit = self.r.timeouts.command;
        let check = format!("{client}'s hard NFS mount resumes after {holder} dies");
        let result = {
            let nodes = self.nodes();
            match nodes.iter().find(|n| n.name == client) {
                Some(n) => resumed(n, limit),
                None => Err(format!("{client} has no power")),
            }
        };
        match result {
            Ok(gap) => self.checks.pass(
                6,
                check,
                format!(
                    "its file read back through the mount; its writes blocked at most {gap:.1} s \
                     on {client}'s own clock"
                ),
            ),
            Err(e) => self.checks.fail(6, check, e),
        }
    }
}

/// Where the client mounts the shared volume.
const MOUNT: &str = "/mnt/vlx-rig-nfs";
/// The client's own record: its uptime after each write that went
/// through.
const WROTE: &str = "/run/vlx-rig-nfs-wrote";
const PID: &str = "/run/vlx-rig-nfs.pid";
/// How long the rig waits for the client's blocked write to go through:
/// the host's own deadline, generous for a loaded machine (the new
/// holder waits out the dead one's multiple-mount protection first).
pub(super) const RESUME_WATCH: Duration = Duration::from_secs(300);

fn file(client: &str) -> String {
    format!("{MOUNT}/vlx-rig-nfs-{client}")
}

/// Mounts the shared volume on `n` from the VIP (read from the node's own
/// `node.env`), writes its file there, and starts the write loop
/// (bounded: about ten minutes); waits until the first write is recorded.
pub(super) fn start(n: &Node<'_>, limit: Duration) -> Result<(), String> {
    let f = file(n.name);
    // hard: the client waits for the server however long it is away;
    // timeo=10 (1 s) and TCP: it retries soon once the address answers
    // again; nolock: no lock manager on a test client.
    let cmd = format!(
        ". /etc/vlx/node.env && mkdir -p {MOUNT} && \
         mount.nfs \"$VLX_SHARED_VIP:$VLX_SHARED_MOUNT\" {MOUNT} -o vers=3,proto=tcp,hard,timeo=10,nolock && \
         echo {name} > {f} && rm -f {WROTE} && \
         (i=0; while [ $i -lt 3000 ]; do echo $i >> {f}.beat && \
         read -r up _ < /proc/uptime && echo \"$up\" >> {WROTE}; i=$((i + 1)); sleep 0.2; done) \
         </dev/null >/dev/null 2>&1 & echo $! > {PID}",
        name = n.name
    );
    let o = checks::sh(n, &cmd, limit).map_err(|e| e.to_string())?;
    if !o.success() {
        return Err(format!(
            "{}: mounting the shared volume over NFS (exit {}): {}",
            n.name,
            o.status,
            o.lines.join(" | ")
        ));
    }
    let start = std::time::Instant::now();
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
/// [`RESUME_WATCH`]), waits for a write after that, stops the loop, and
/// returns the longest time a write blocked, in seconds of the client's
/// uptime.
pub(super) fn resumed(n: &Node<'_>, limit: Duration) -> Result<f64, String> {
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
    .map_err(|e| e.to_string())?;
    let ups: Vec<f64> = o
        .lines
        .iter()
        .filter_map(|l| l.trim().parse::<f64>().ok())
        .collect();
    let gap = ups.windows(2).map(|w| w[1] - w[0]).fold(0.0_f64, f64::max);
    // The mount stays until the blade powers off; nothing else uses it.
    Ok(gap)
}
