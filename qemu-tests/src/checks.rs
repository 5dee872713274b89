//! What the rig checks on running blades, using only what a person at a
//! blade's console would: `hostname`, `ip`, `udhcpc`, `nslookup`, `ping`,
//! `chronyc`, writing and reading a file. Nothing here changes a blade's
//! configuration.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::answer::{Output, ShellError};
use crate::blade::Powered;
use crate::report::Checks;

/// A node blade as the checks see it: its console shell and its entry in
/// the cluster table.
#[derive(Debug, Clone, Copy)]
pub struct Node<'a> {
    pub name: &'a str,
    pub fqdn: &'a str,
    pub ip: Ipv4Addr,
    pub blade: &'a Powered,
}

/// The step the checks of a running cluster belong to.
const STEP: u8 = 5;
/// How often a condition that takes time (the VIP, chrony, etcd) is looked at.
const POLL: Duration = Duration::from_millis(500);

/// Runs `command` on `node`'s check shell.
pub fn sh(node: &Node<'_>, command: &str, limit: Duration) -> Result<Output, ShellError> {
    node.blade.shell().run(command, limit)
}

/// Runs `f` for every node at once, a thread each (each blade answers on
/// its own console or SSH connection, so none need wait for another's
/// answer); returns the results in the nodes' order.
pub fn on_each<'a, T: Send>(nodes: &[Node<'a>], f: impl Fn(&Node<'a>) -> T + Sync) -> Vec<T> {
    let f = &f;
    std::thread::scope(|s| {
        let running: Vec<_> = nodes.iter().map(|n| s.spawn(move || f(n))).collect();
        running
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// [`on_each`] for checks: each node's checks are added to `checks` in
/// the nodes' order, so that the table reads as if they had run one node
/// after the other.
pub fn each_node<'a, T: Send>(
    checks: &mut Checks,
    nodes: &[Node<'a>],
    f: impl Fn(&mut Checks, &Node<'a>) -> T + Sync,
) -> Vec<T> {
    on_each(nodes, |n| {
        let mut mine = Checks::default();
        let t = f(&mut mine, n);
        (mine, t)
    })
    .into_iter()
    .map(|(mine, t)| {
        checks.0.extend(mine.0);
        t
    })
    .collect()
}

/// The file each blade writes to its own root.
pub fn marker_file(blade: &str) -> String {
    format!("/vlx-rig-{blade}")
}

/// Each blade's hostname and address are its own.
pub fn identity(checks: &mut Checks, step: u8, node: &Node<'_>, prefix: u8, limit: Duration) {
    let name = format!("hostname {}", node.name);
    match sh(node, "hostname", limit) {
        Ok(o) => {
            let got = o.text();
            checks.expect(
                step,
                name,
                o.success() && (got == node.name || got == node.fqdn),
                format!("`hostname` says {got:?}"),
            );
        }
        Err(e) => checks.fail(step, name, e.to_string()),
    }
    let name = format!("address {}", node.name);
    let want = format!("inet {}/{prefix} ", node.ip);
    match sh(node, "ip -o -4 addr show", limit) {
        Ok(o) => {
            let found = o.lines.iter().find(|l| l.contains(&want));
            checks.expect(
                step,
                name,
                found.is_some(),
                match found.and_then(|l| l.split_whitespace().nth(1)) {
                    Some(iface) => format!("{} has {}", iface.trim_end_matches(':'), want.trim()),
                    None => format!("no `{}` in: {}", want.trim(), o.lines.join(" | ")),
                },
            );
        }
        Err(e) => checks.fail(step, name, e.to_string()),
    }
}

/// [`identity`] of every node, all at once.
pub fn identities(checks: &mut Checks, step: u8, nodes: &[Node<'_>], prefix: u8, limit: Duration) {
    each_node(checks, nodes, |c, n| identity(c, step, n, prefix, limit));
}

/// A udhcpc script that reports the lease and changes nothing.
const DHCP_SCRIPT: &str = "/tmp/vlx-rig-dhcp";

/// Asks for a lease from each node (udhcpc, whose script only prints the
/// answer) and checks each got its own address; then that the answers came
/// from more than one blade. A blade's DHCP request never reaches its own
/// dnsmasq (udhcpc sends on a packet socket), so with two or more nodes
/// the servers seen are at least two unless DHCP is missing somewhere.
/// Returns the server of the first answer.
pub fn dhcp(checks: &mut Checks, nodes: &[Node<'_>], limit: Duration) -> Option<Ipv4Addr> {
    let servers: Vec<Ipv4Addr> = each_node(checks, nodes, |checks, n| ask_lease(checks, n, limit))
        .into_iter()
        .flatten()
        .collect();
    let distinct: BTreeSet<Ipv4Addr> = servers.iter().copied().collect();
    checks.expect(
        STEP,
        "dhcp from several blades",
        distinct.len() >= 2,
        format!(
            "answers came from {}",
            distinct
                .iter()
                .map(Ipv4Addr::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    servers.first().copied()
}

/// One node's lease, checked against the cluster table; returns the
/// server that answered.
fn ask_lease(checks: &mut Checks, n: &Node<'_>, limit: Duration) -> Option<Ipv4Addr> {
    let name = format!("dhcp answers {}", n.name);
    let iface = match interface_of(n, limit) {
        Ok(i) => i,
        Err(e) => {
            checks.fail(STEP, name, e);
            return None;
        }
    };
    let cmd = format!(
        "printf '#!/bin/sh\\n[ \"$1\" = bound ] && echo \"lease $ip from $serverid\"\\nexit 0\\n' > {DHCP_SCRIPT} && chmod +x {DHCP_SCRIPT} && udhcpc -i {iface} -f -q -n -t 4 -T 2 -s {DHCP_SCRIPT} 2>&1"
    );
    match sh(n, &cmd, limit) {
        Ok(o) => {
            let lease = o.lines.iter().find_map(|l| parse_lease(l));
            match lease {
                Some((ip, server)) if ip == n.ip => {
                    checks.pass(STEP, name, format!("lease {ip} from {server}"));
                    Some(server)
                }
                Some((ip, server)) => {
                    checks.fail(
                        STEP,
                        name,
                        format!(
                            "lease {ip} from {server}, but the cluster table says {}",
                            n.ip
                        ),
                    );
                    None
                }
                None => {
                    checks.fail(STEP, name, format!("no lease: {}", o.lines.join(" | ")));
                    None
                }
            }
        }
        Err(e) => {
            checks.fail(STEP, name, e.to_string());
            None
        }
    }
}

/// The interface that holds the node's address (the image may rename its
/// NICs).
pub fn interface_of(node: &Node<'_>, limit: Duration) -> Result<String, String> {
    let o = sh(node, "ip -o -4 addr show", limit).map_err(|e| e.to_string())?;
    let want = format!("inet {}/", node.ip);
    o.lines
        .iter()
        .find(|l| l.contains(&want))
        .and_then(|l| l.split_whitespace().nth(1))
        .map(|i| i.trim_end_matches(':').to_string())
        .ok_or_else(|| format!("no interface holds {}: {}", node.ip, o.lines.join(" | ")))
}

fn parse_lease(line: &str) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let rest = line.trim().strip_prefix("lease ")?;
    let (ip, server) = rest.split_once(" from ")?;
    Some((ip.trim().parse().ok()?, server.trim().parse().ok()?))
}

/// Asks each node's DNS server, from another node, for the asker's name;
/// then that more than one blade answered.
pub fn dns(checks: &mut Checks, nodes: &[Node<'_>], limit: Duration) {
    // Each server is asked by the node after it: each node asks once.
    let answering: Vec<&str> = each_node(checks, nodes, |checks, server| {
        let i = nodes
            .iter()
            .position(|n| n.name == server.name)
            .unwrap_or_default();
        let client = &nodes[(i + 1) % nodes.len()];
        let name = format!("dns answers on {}", server.name);
        match sh(
            client,
            &format!("nslookup {} {}", client.fqdn, server.ip),
            limit,
        ) {
            Ok(o) => {
                let ok = o.success() && o.lines.iter().any(|l| has_ip(l, client.ip));
                let answer = if ok {
                    client.ip.to_string()
                } else {
                    o.lines.join(" | ")
                };
                checks.expect(
                    STEP,
                    name,
                    ok,
                    format!(
                        "{} asked {} for {}: {answer}",
                        client.name, server.ip, client.fqdn
                    ),
                );
                ok.then_some(server.name)
            }
            Err(e) => {
                checks.fail(STEP, name, e.to_string());
                None
            }
        }
    })
    .into_iter()
    .flatten()
    .collect();
    checks.expect(
        STEP,
        "dns from several blades",
        answering.len() >= 2,
        format!("answered: {}", answering.join(", ")),
    );
}

/// Whether `line` holds `ip` as a whole address.
fn has_ip(line: &str, ip: Ipv4Addr) -> bool {
    line.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .any(|w| w == ip.to_string())
}

/// Which nodes hold `vip`, by `ip addr` on each.
pub fn vip_holders(
    nodes: &[Node<'_>],
    vip: Ipv4Addr,
    limit: Duration,
) -> Result<Vec<String>, ShellError> {
    let want = format!("inet {vip}/");
    let mut holders = Vec::new();
    for n in nodes {
        let o = sh(n, "ip -o -4 addr show", limit)?;
        if o.lines.iter().any(|l| l.contains(&want)) {
            holders.push(n.name.to_string());
        }
    }
    Ok(holders)
}

/// Waits until exactly one of `nodes` holds `vip`; returns it and how long
/// that took.
pub fn await_vip(
    nodes: &[Node<'_>],
    vip: Ipv4Addr,
    watch: Duration,
    limit: Duration,
) -> Result<(String, Duration), String> {
    let start = Instant::now();
    let mut last = Vec::new();
    while start.elapsed() < watch {
        last = vip_holders(nodes, vip, limit).map_err(|e| e.to_string())?;
        if let [one] = last.as_slice() {
            return Ok((one.clone(), start.elapsed()));
        }
        std::thread::sleep(POLL);
    }
    Err(if last.is_empty() {
        format!("no blade holds {vip} after {} s", watch.as_secs())
    } else {
        format!(
            "{} all hold {vip} after {} s",
            last.join(", "),
            watch.as_secs()
        )
    })
}

/// Where every node's `vrrp-master` (keepalived's `notify_master`, in the
/// node overlay) notes each VIP it takes: `INSTANCE UPTIME` lines.
pub const VRRP_MASTER_LOG: &str = "/run/vlx/vrrp-master";

/// Where a survivor notes, on its own clock, the last time the VIP's
/// holder answered it (see [`watch_alive`]).
pub const ALIVE_FILE: &str = "/tmp/vlx-rig-alive";

/// Starts, in the background on `node`, a watch of `holder`: while it
/// answers pings, `node` writes its own uptime (`/proc/uptime`) to
/// [`ALIVE_FILE`] every fifth of a second or so. Once the holder is
/// killed the file holds the last instant it was seen alive, on `node`'s
/// clock, so the kill is timed on the blade and not by the host, however
/// slowly the host's commands reach the blades. Waits (up to `limit`)
/// until the first note is there.
pub fn watch_alive(node: &Node<'_>, holder: Ipv4Addr, limit: Duration) -> Result<(), String> {
    // Bounded, in case the kill never comes: about ten minutes.
    let watch = format!(
        "rm -f {ALIVE_FILE}; (i=0; while [ $i -lt 3000 ] && ping -c 1 -W 2 {holder} >/dev/null 2>&1; do \
         read -r up _ < /proc/uptime; echo \"$up\" > {ALIVE_FILE}.new && mv {ALIVE_FILE}.new {ALIVE_FILE}; \
         i=$((i + 1)); sleep 0.2; done) </dev/null >/dev/null 2>&1 &"
    );
    let o = sh(node, &watch, limit).map_err(|e| e.to_string())?;
    if !o.success() {
        return Err(format!(
            "{}: the watch of {holder} did not start (exit {}): {}",
            node.name,
            o.status,
            o.text()
        ));
    }
    let start = Instant::now();
    loop {
        let o = sh(node, &format!("test -s {ALIVE_FILE}"), limit).map_err(|e| e.to_string())?;
        if o.success() {
            return Ok(());
        }
        if start.elapsed() >= limit {
            return Err(format!(
                "{}: {holder} never answered its pings within {} s",
                node.name,
                limit.as_secs()
            ));
        }
        std::thread::sleep(POLL);
    }
}

/// The last instant `node` saw the holder alive, in seconds of its uptime
/// (see [`watch_alive`]).
pub fn last_alive(node: &Node<'_>, limit: Duration) -> Result<f64, String> {
    let o = sh(node, &format!("cat {ALIVE_FILE}"), limit).map_err(|e| e.to_string())?;
    let text = o.text();
    match text.trim().parse::<f64>() {
        Ok(up) if o.success() => Ok(up),
        _ => Err(format!(
            "{}: {ALIVE_FILE} holds {text:?} (exit {})",
            node.name, o.status
        )),
    }
}

/// The first time, in seconds of uptime after `after`, that a node's
/// [`VRRP_MASTER_LOG`] says it took `instance`.
pub fn master_since(lines: &[String], instance: &str, after: f64) -> Option<f64> {
    lines
        .iter()
        .filter_map(|l| {
            let (name, up) = l.trim().split_once(' ')?;
            (name == instance).then_some(())?;
            up.trim().parse::<f64>().ok()
        })
        .filter(|up| *up >= after)
        .reduce(f64::min)
}

/// How long `node` took to enter MASTER for `instance` after `before`
/// (the last instant it saw the old holder alive), on its own clock: the
/// interval the VIP had no holder, at most.
pub fn vip_move_time(
    node: &Node<'_>,
    instance: &str,
    before: f64,
    limit: Duration,
) -> Result<Duration, String> {
    let o = sh(node, &format!("cat {VRRP_MASTER_LOG}"), limit).map_err(|e| e.to_string())?;
    if !o.success() {
        return Err(format!(
            "{}: no {VRRP_MASTER_LOG} (exit {}): {}",
            node.name,
            o.status,
            o.text()
        ));
    }
    let at = master_since(&o.lines, instance, before).ok_or_else(|| {
        format!(
            "{} holds the VIP, but its {VRRP_MASTER_LOG} notes no {instance} taken after {before:.2} s of uptime: {}",
            node.name,
            o.lines.join(" | ")
        )
    })?;
    Duration::try_from_secs_f64(at - before).map_err(|e| format!("{}: {e}", node.name))
}

/// The VIP is held by exactly one node and answers a ping from every node.
/// Returns the holder.
pub fn vip(
    checks: &mut Checks,
    nodes: &[Node<'_>],
    vip: Ipv4Addr,
    watch: Duration,
    limit: Duration,
) -> Option<String> {
    let holder = match await_vip(nodes, vip, watch, limit) {
        Ok((h, _)) => {
            checks.pass(STEP, "vip held by one blade", format!("{h} holds {vip}"));
            Some(h)
        }
        Err(e) => {
            checks.fail(STEP, "vip held by one blade", e);
            None
        }
    };
    each_node(checks, nodes, |c, n| ping(c, STEP, n, vip, limit));
    holder
}

/// `node` pings `ip`.
pub fn ping(checks: &mut Checks, step: u8, node: &Node<'_>, ip: Ipv4Addr, limit: Duration) {
    let name = format!("vip answers {}", node.name);
    match sh(node, &format!("ping -c 1 -W 3 {ip}"), limit) {
        Ok(o) => {
            let summary = o
                .lines
                .iter()
                .find(|l| l.contains("packets transmitted"))
                .cloned()
                .unwrap_or_else(|| o.lines.join(" | "));
            checks.expect(step, name, o.success(), summary);
        }
        Err(e) => checks.fail(step, name, e.to_string()),
    }
}

/// chrony on each node hears from at least one other node (a peer source
/// whose reach register is not zero), within `watch`.
pub fn chrony(checks: &mut Checks, nodes: &[Node<'_>], watch: Duration, limit: Duration) {
    let start = Instant::now();
    each_node(checks, nodes, |checks, n| {
        let name = format!("chrony peers {}", n.name);
        let others: Vec<Ipv4Addr> = nodes
            .iter()
            .filter(|o| o.name != n.name)
            .map(|o| o.ip)
            .collect();
        loop {
            match sh(n, "chronyc -n sources", limit) {
                Ok(o) if o.success() => {
                    let heard: Vec<String> = o
                        .lines
                        .iter()
                        .filter_map(|l| reached_peer(l, &others))
                        .collect();
                    if !heard.is_empty() {
                        checks.pass(STEP, name, format!("hears {}", heard.join(", ")));
                        return;
                    }
                    if start.elapsed() >= watch {
                        checks.fail(
                            STEP,
                            name,
                            format!(
                                "no peer reached within {} s: {}",
                                watch.as_secs(),
                                o.lines.join(" | ")
                            ),
                        );
                        return;
                    }
                }
                Ok(o) => {
                    checks.fail(STEP, name, o.lines.join(" | "));
                    return;
                }
                Err(e) => {
                    checks.fail(STEP, name, e.to_string());
                    return;
                }
            }
            std::thread::sleep(POLL);
        }
    });
}

/// How long etcd may take to elect a leader once the blades are ready: a
/// few election timeouts of the rig's profile (5 s), with room for TCG.
const ETCD_WATCH: Duration = Duration::from_secs(90);

/// etcd on the blades: the running voters are healthy (each answers
/// `/health` to the first node: etcd 3.4 says `true` only with a quorum
/// behind the member, and 503 without one, where `etcdctl endpoint health`
/// says unhealthy);
/// every node reaches every running voter, and they agree on one leader
/// (`/v3/maintenance/status`, all nodes at once: a status costs the voters
/// no consensus); and a value put through the first node is read through
/// the last (`/v3/kv/put`, `/v3/kv/range`, a linearizable read). All of it
/// through etcd's own HTTP face (its gRPC gateway) with busybox wget,
/// which both images carry: under TCG each start of `etcdctl`, a Go
/// program, took seconds, and sixteen blades starting it at once 15 s.
/// `endpoints` are the running voters' client URLs, from the plan the
/// blades were rendered from.
pub fn etcd(checks: &mut Checks, nodes: &[Node<'_>], endpoints: &[String], limit: Duration) {
    let start = Instant::now();
    let Some(first) = nodes.first() else {
        return;
    };
    let name = format!("etcd healthy from {}", first.name);
    let health = each_voter_command(endpoints, "/health", None);
    loop {
        let o = match sh(first, &health, limit) {
            Ok(o) => o,
            Err(e) => {
                checks.fail(STEP, name, e.to_string());
                return;
            }
        };
        match all_healthy(&o.lines, endpoints) {
            Ok(()) => {
                checks.pass(
                    STEP,
                    name,
                    format!("{} voters answer /health: true", endpoints.len()),
                );
                break;
            }
            Err(why) if start.elapsed() >= ETCD_WATCH => {
                checks.fail(STEP, name, format!("{why}: {}", o.lines.join(" | ")));
                return;
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
    let status = each_voter_command(endpoints, "/v3/maintenance/status", Some("{}"));
    each_node(checks, nodes, |checks, n| {
        let name = format!("etcd answers {}", n.name);
        loop {
            let o = match sh(n, &status, limit) {
                Ok(o) => o,
                Err(e) => {
                    checks.fail(STEP, name, e.to_string());
                    return;
                }
            };
            let verdict = one_leader(&o.lines, endpoints);
            match verdict {
                Ok(leader) if o.success() => {
                    checks.pass(
                        STEP,
                        name,
                        format!("{} voters answer; leader {leader}", endpoints.len()),
                    );
                    return;
                }
                _ if start.elapsed() >= ETCD_WATCH => {
                    let why = verdict
                        .err()
                        .unwrap_or_else(|| format!("exit {}", o.status));
                    checks.fail(STEP, name, format!("{why}: {}", o.lines.join(" | ")));
                    return;
                }
                _ => std::thread::sleep(POLL),
            }
        }
    });
    let (Some(first), Some(last)) = (nodes.first(), nodes.last()) else {
        return;
    };
    let name = format!("etcd put on {}, get on {}", first.name, last.name);
    let key = "/vlx/rig/check";
    match sh(first, &put_command(endpoints, key, first.name), limit) {
        Ok(o) => {
            if let Err(why) = put_answered(&o.lines) {
                checks.fail(STEP, name, format!("put: {why}: {}", o.lines.join(" | ")));
                return;
            }
        }
        Err(e) => {
            checks.fail(STEP, name, e.to_string());
            return;
        }
    }
    match sh(last, &range_command(endpoints, key), limit) {
        Ok(o) => match range_value(&o.lines) {
            Ok(v) => {
                checks.expect(
                    STEP,
                    name,
                    v.as_deref() == Some(first.name),
                    match &v {
                        Some(v) => format!("reads {v:?}"),
                        None => format!("{key} is not there"),
                    },
                );
            }
            Err(why) => checks.fail(STEP, name, format!("get: {why}: {}", o.lines.join(" | "))),
        },
        Err(e) => checks.fail(STEP, name, e.to_string()),
    }
}

/// Asks each of `endpoints` for `path` (a GET, or a POST of `body`);
/// prints one line per endpoint: its URL, a space, and its answer (JSON)
/// or wget's complaint. busybox 1.35's `wget -T` segfaults, so `timeout`
/// bounds each ask.
fn each_voter_command(endpoints: &[String], path: &str, body: Option<&str>) -> String {
    let post = body
        .map(|b| format!("--post-data '{b}' "))
        .unwrap_or_default();
    format!(
        "for u in {}; do printf '%s ' \"$u\"; \
         timeout 5 busybox wget -q -O - {post}\"$u{path}\" 2>&1 \
         || printf ' (no answer)'; echo; done",
        quoted(endpoints)
    )
}

/// POSTs `body` to `path` on the first of `endpoints` that answers (as a
/// client goes on to the next voter when one does not); each answer or
/// complaint ends its line.
fn first_answer_command(endpoints: &[String], path: &str, body: &str) -> String {
    format!(
        "for u in {}; do if timeout 5 busybox wget -q -O - --post-data '{body}' \"$u{path}\" 2>&1; \
         then echo; break; fi; echo; done",
        quoted(endpoints)
    )
}

/// The endpoints as single-quoted shell words (they come from the plan:
/// `http://` and an address).
fn quoted(endpoints: &[String]) -> String {
    endpoints
        .iter()
        .map(|e| format!("'{e}'"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Puts `value` at `key` (the gateway's JSON carries both in base64).
fn put_command(endpoints: &[String], key: &str, value: &str) -> String {
    let body = serde_json::json!({
        "key": vc::etcd::b64(key.as_bytes()),
        "value": vc::etcd::b64(value.as_bytes()),
    });
    first_answer_command(endpoints, "/v3/kv/put", &body.to_string())
}

/// Reads `key` (linearizable, etcd's default).
fn range_command(endpoints: &[String], key: &str) -> String {
    let body = serde_json::json!({ "key": vc::etcd::b64(key.as_bytes()) });
    first_answer_command(endpoints, "/v3/kv/range", &body.to_string())
}

/// The first answer of the gateway among `lines`: a JSON object with a
/// header (an error's JSON has none).
fn gateway_answer(lines: &[String]) -> Option<serde_json::Value> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .find(|v| v.get("header").is_some())
}

/// A put's answer came back.
fn put_answered(lines: &[String]) -> Result<(), String> {
    gateway_answer(lines)
        .map(|_| ())
        .ok_or_else(|| "no voter took the put".to_owned())
}

/// A range's answer: the value of its key, decoded (`None` when the key
/// is not there).
fn range_value(lines: &[String]) -> Result<Option<String>, String> {
    let v = gateway_answer(lines).ok_or_else(|| "no voter answered the get".to_owned())?;
    let Some(kv) = v.get("kvs").and_then(|k| k.get(0)) else {
        return Ok(None);
    };
    // etcd leaves an empty value out of the JSON.
    let value = kv
        .get("value")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    let bytes = vc::etcd::unb64(value).map_err(|e| format!("the value: {e}"))?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| "the value is not UTF-8".to_owned())
}

/// The JSON `endpoint` answered among [`each_voter_command`]'s lines
/// (`None`: no line of it, or a complaint instead of an answer).
fn voter_answer(lines: &[String], endpoint: &str) -> Option<serde_json::Value> {
    lines
        .iter()
        .filter_map(|l| l.split_once(' '))
        .find(|(url, _)| *url == endpoint)
        .and_then(|(_, json)| serde_json::from_str(json.trim()).ok())
}

/// From `/health` lines ([`each_voter_command`]): every one of
/// `endpoints` says `"health": "true"` (a string in etcd 3.4's answer).
fn all_healthy(lines: &[String], endpoints: &[String]) -> Result<(), String> {
    let bad: Vec<&str> = endpoints
        .iter()
        .filter(|e| {
            let health = voter_answer(lines, e).and_then(|v| v.get("health").cloned());
            !matches!(&health, Some(serde_json::Value::String(s)) if s == "true")
                && health != Some(serde_json::Value::Bool(true))
        })
        .map(String::as_str)
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!("not healthy: {}", bad.join(", ")))
    }
}

/// From the status lines ([`each_voter_command`]): every one of `endpoints` answered,
/// all name the same leader, and that leader is one of them; returns the
/// leader's URL.
fn one_leader(lines: &[String], endpoints: &[String]) -> Result<String, String> {
    let field = |v: &serde_json::Value, path: &[&str]| {
        path.iter()
            .try_fold(v, |v, k| v.get(k))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    // (URL, its member ID, the leader's ID it names)
    let mut rows: Vec<(&str, String, String)> = Vec::new();
    let mut missing = Vec::new();
    for e in endpoints {
        let answer = voter_answer(lines, e).and_then(|v| {
            Some((
                field(&v, &["header", "member_id"])?,
                field(&v, &["leader"])?,
            ))
        });
        match answer {
            Some((id, leader)) => rows.push((e, id, leader)),
            None => missing.push(e.as_str()),
        }
    }
    if !missing.is_empty() {
        return Err(format!("no status from {}", missing.join(", ")));
    }
    let named: BTreeSet<&str> = rows.iter().map(|r| r.2.as_str()).collect();
    if named.len() > 1 {
        return Err(format!(
            "the voters name different leaders: {}",
            rows.iter()
                .map(|r| format!("{} says {}", r.0, r.2))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let leaders: Vec<&str> = rows.iter().filter(|r| r.1 == r.2).map(|r| r.0).collect();
    match leaders.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => Err(format!(
            "no voter says it leads (they name {})",
            named.into_iter().next().unwrap_or("none")
        )),
        many => Err(format!("several voters say they lead: {}", many.join(", "))),
    }
}

/// A `chronyc -n sources` line of a source among `peers` whose reach
/// register (octal, fifth column) is not zero.
fn reached_peer(line: &str, peers: &[Ipv4Addr]) -> Option<String> {
    let cols: Vec<&str> = line.split_whitespace().collect();
    if cols.len() < 5 {
        return None;
    }
    let addr: Ipv4Addr = cols[1].parse().ok()?;
    if !peers.contains(&addr) || cols[4] == "0" || u32::from_str_radix(cols[4], 8).is_err() {
        return None;
    }
    Some(format!("{addr} (reach {})", cols[4]))
}

/// Each node writes a file named after itself to its root; each then must
/// see its own file and no other node's.
pub fn private_roots(checks: &mut Checks, nodes: &[Node<'_>], limit: Duration) {
    // Every file is written before any root is looked at.
    each_node(checks, nodes, |checks, n| {
        let f = marker_file(n.name);
        if let Err(e) = write_marker(n, limit) {
            checks.fail(
                STEP,
                format!("root of {} is its own", n.name),
                format!("writing {f}: {e}"),
            );
        }
    });
    each_node(checks, nodes, |checks, n| {
        let name = format!("root of {} is its own", n.name);
        match sh(n, "ls / | grep '^vlx-rig-' ; true", limit) {
            Ok(o) => {
                let seen: Vec<&str> = o
                    .lines
                    .iter()
                    .map(|l| l.trim())
                    .filter(|l| !l.is_empty())
                    .collect();
                let own = format!("vlx-rig-{}", n.name);
                checks.expect(
                    STEP,
                    name,
                    seen == [own.as_str()],
                    format!(
                        "/ holds {}",
                        if seen.is_empty() {
                            "no vlx-rig file".to_string()
                        } else {
                            seen.join(", ")
                        }
                    ),
                );
            }
            Err(e) => checks.fail(STEP, name, e.to_string()),
        }
    });
}

/// Writes the node's file to its root and syncs it to its snapshot.
pub fn write_marker(n: &Node<'_>, limit: Duration) -> Result<(), String> {
    let f = marker_file(n.name);
    let o = sh(n, &format!("echo {} > {f} && sync", n.name), limit).map_err(|e| e.to_string())?;
    if o.success() {
        Ok(())
    } else {
        Err(o.lines.join(" | "))
    }
}

/// Addresses of the servers an iPXE console names: the DHCP answer's next
/// server, and every `http://A/...` or `tftp://A/...` it fetched.
pub fn boot_servers(lines: &[String]) -> BTreeSet<Ipv4Addr> {
    let mut found = BTreeSet::new();
    for l in lines {
        if let Some(ip) = l
            .trim()
            .strip_prefix("Next server: ")
            .and_then(|a| a.trim().parse().ok())
        {
            found.insert(ip);
        }
        for scheme in ["http://", "tftp://"] {
            for (i, _) in l.match_indices(scheme) {
                let host: String = l[i + scheme.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.')
                    .collect();
                if let Ok(ip) = host.parse() {
                    found.insert(ip);
                }
            }
        }
    }
    found
}

/// How long systemd may still be starting units after the blade said its
/// services are ready (timers, gettys): `is-system-running --wait` waits
/// for the end of the boot.
const BOOT_END_LIMIT: Duration = Duration::from_secs(180);

/// On a systemd image checked over SSH: `systemctl is-system-running` is
/// `running` once the boot has ended, or the check names every failed
/// unit; the journal is kept on the node's own root
/// (`/var/log/journal/<machine id>/`); and the NFS server runs only where
/// the shared volume is mounted.
pub fn systemd(checks: &mut Checks, step: u8, node: &Node<'_>, limit: Duration) {
    let name = node.name;
    match sh(
        node,
        "systemctl is-system-running --wait; systemctl list-units --failed --plain --no-legend",
        limit.max(BOOT_END_LIMIT),
    ) {
        Ok(o) => {
            let state = o.lines.first().cloned().unwrap_or_default();
            let failed: Vec<&str> = o
                .lines
                .iter()
                .skip(1)
                .filter_map(|l| l.split_whitespace().next())
                .collect();
            if state.trim() == "running" {
                checks.pass(
                    step,
                    format!("{name} systemd running"),
                    "systemctl is-system-running: running (as root over SSH with the rig's key)",
                );
            } else {
                checks.fail(
                    step,
                    format!("{name} systemd running"),
                    format!(
                        "systemctl is-system-running: {state}; failed units: {}",
                        if failed.is_empty() {
                            "none".to_string()
                        } else {
                            failed.join(", ")
                        }
                    ),
                );
            }
        }
        Err(e) => checks.fail(step, format!("{name} systemd running"), e.to_string()),
    }
    match sh(
        node,
        "d=/var/log/journal/$(cat /etc/machine-id); test -d \"$d\" && ls \"$d\" | grep -c '^system.*journal$'",
        limit,
    ) {
        Ok(o) if o.success() => checks.pass(
            step,
            format!("{name} journal on its own root"),
            format!(
                "{} system journal file(s) under /var/log/journal/<machine id>",
                o.text().trim()
            ),
        ),
        Ok(o) => checks.fail(
            step,
            format!("{name} journal on its own root"),
            format!("no persistent journal (exit {}): {}", o.status, o.text()),
        ),
        Err(e) => checks.fail(
            step,
            format!("{name} journal on its own root"),
            e.to_string(),
        ),
    }
    // The holder of the shared volume's VIP must have it mounted and
    // served, every other node neither. A node may be on its way: taking
    // the volume's lease (its wait and claim after a holder that did not
    // let go), mounting, starting nfs-server, or letting go; so it gets
    // 40 s to settle.
    match sh(
        node,
        ". /etc/vlx/node.env; i=0; while :; do m=no; mountpoint -q /vlx/shared && m=yes; \
         n=$(systemctl is-active nfs-server.service); \
         v=no; [ -n \"$VLX_SHARED_VIP\" ] && ip -4 addr show dev \"$VLX_IFACE\" | \
         grep -q \"inet $VLX_SHARED_VIP/\" && v=yes; \
         if [ $v = yes ]; then [ $m = yes ] && [ \"$n\" = active ] && break; \
         elif [ $m = yes ]; then [ \"$n\" = active ] && break; \
         else [ \"$n\" != active ] && break; fi; \
         [ $i -lt 40 ] || break; i=$((i + 1)); sleep 1; done; echo \"$m $n $v\"",
        limit.max(Duration::from_secs(60)),
    ) {
        Ok(o) => {
            let t = o.text();
            let mut w = t.split_whitespace();
            let (mounted, nfs, vip) = (
                w.next().unwrap_or(""),
                w.next().unwrap_or(""),
                w.next().unwrap_or(""),
            );
            let ok = (mounted == "yes") == (nfs == "active") && (vip != "yes" || mounted == "yes");
            let detail = format!(
                "shared volume mounted: {mounted}, nfs-server.service: {nfs}, holds the shared \
                 volume's VIP: {vip}"
            );
            if ok {
                checks.pass(
                    step,
                    format!("{name} NFS server only with the shared volume"),
                    detail,
                );
            } else {
                checks.fail(
                    step,
                    format!("{name} NFS server only with the shared volume"),
                    detail,
                );
            }
        }
        Err(e) => checks.fail(
            step,
            format!("{name} NFS server only with the shared volume"),
            e.to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_parse_from_the_script_line() {
        assert_eq!(
            parse_lease("lease 10.77.0.12 from 10.77.0.13"),
            Some((Ipv4Addr::new(10, 77, 0, 12), Ipv4Addr::new(10, 77, 0, 13)))
        );
        assert_eq!(parse_lease("udhcpc: sending discover"), None);
    }

    #[test]
    fn etcd_status_needs_every_voter_and_one_leader() {
        let eps: Vec<String> = ["http://10.77.0.11:2379", "http://10.77.0.12:2379"]
            .map(String::from)
            .to_vec();
        // etcd 3.4's answer, as busybox wget prints it.
        let line = |ep: &str, id: &str, leader: &str| {
            format!(
                "{ep} {{\"header\":{{\"cluster_id\":\"9293039067862754639\",\"member_id\":\"{id}\",\
                 \"revision\":\"2\",\"raft_term\":\"4\"}},\"version\":\"3.4.23\",\
                 \"dbSize\":\"20480\",\"leader\":\"{leader}\",\"raftIndex\":\"12\"}}"
            )
        };
        let both = [line(&eps[0], "11", "22"), line(&eps[1], "22", "22")];
        assert_eq!(one_leader(&both, &eps), Ok(eps[1].clone()));
        let failed = [
            line(&eps[0], "11", "11"),
            format!(
                "{} wget: can't connect to remote host: Connection refused (no answer)",
                eps[1]
            ),
        ];
        assert_eq!(
            one_leader(&failed, &eps),
            Err("no status from http://10.77.0.12:2379".to_owned())
        );
        let none = [line(&eps[0], "11", "33"), line(&eps[1], "22", "33")];
        assert!(
            one_leader(&none, &eps)
                .unwrap_err()
                .contains("no voter says")
        );
        let split = [line(&eps[0], "11", "11"), line(&eps[1], "22", "22")];
        assert!(
            one_leader(&split, &eps)
                .unwrap_err()
                .contains("different leaders")
        );
        let cut = [
            line(&eps[0], "11", "22"),
            line(&eps[1], "22", "22")[..60].to_owned(),
        ];
        assert!(one_leader(&cut, &eps).is_err());
    }

    #[test]
    fn the_status_command_asks_each_voter_in_a_real_shell() {
        // A stand-in busybox that prints its arguments: the loop prints one
        // line per voter, its URL first, and the gateway's path.
        let dir = tempfile::tempdir().expect("tempdir");
        let bb = dir.path().join("busybox");
        std::fs::write(
            &bb,
            "#!/bin/sh\necho \"$*\" | grep -q 10.77.0.12 && exit 1\nprintf \"{%s}\" \"$*\"\n",
        )
        .expect("stand-in");
        std::fs::set_permissions(&bb, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let eps: Vec<String> = ["http://10.77.0.11:2379", "http://10.77.0.12:2379"]
            .map(String::from)
            .to_vec();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(each_voter_command(
                &eps,
                "/v3/maintenance/status",
                Some("{}"),
            ))
            .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
            .output()
            .expect("sh");
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].starts_with("http://10.77.0.11:2379 {wget -q -O - --post-data {} http://10.77.0.11:2379/v3/maintenance/status}"),
            "{text}"
        );
        assert!(lines[1].starts_with("http://10.77.0.12:2379 "), "{text}");
        assert!(lines[1].ends_with("(no answer)"), "{text}");
    }

    /// One etcd member on loopback (Debian's etcd-server, which the tiny
    /// image takes from this machine), killed on drop.
    struct LoopbackEtcd {
        child: std::process::Child,
        url: String,
        _dir: tempfile::TempDir,
    }

    impl Drop for LoopbackEtcd {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port()
    }

    /// The lines `command` prints in a real shell.
    fn shell_lines(command: &str) -> Vec<String> {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .output()
            .expect("sh");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn loopback_etcd() -> LoopbackEtcd {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("http://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{}", free_port());
        let child = std::process::Command::new("etcd")
            .arg("--name=t")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={url}"))
            .arg(format!("--advertise-client-urls={url}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=t={peer}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting etcd (Debian package etcd-server; `cargo xtask deps` installs it)");
        let e = LoopbackEtcd {
            child,
            url,
            _dir: dir,
        };
        // A wait for the member to start, not a measurement.
        let eps = [e.url.clone()];
        let deadline = Instant::now() + Duration::from_secs(60);
        while all_healthy(
            &shell_lines(&each_voter_command(&eps, "/health", None)),
            &eps,
        )
        .is_err()
        {
            assert!(Instant::now() < deadline, "etcd did not start within 60 s");
            std::thread::sleep(Duration::from_millis(200));
        }
        e
    }

    #[test]
    fn the_etcd_checks_ask_a_real_etcd_through_busybox_wget() {
        let e = loopback_etcd();
        // A voter that does not answer (nothing listens on port 1) first.
        let gone = "http://127.0.0.1:1".to_owned();
        let eps = vec![gone.clone(), e.url.clone()];
        let live = &eps[1..];

        let health = shell_lines(&each_voter_command(&eps, "/health", None));
        assert_eq!(all_healthy(&health, live), Ok(()), "{health:?}");
        assert_eq!(
            all_healthy(&health, &eps),
            Err(format!("not healthy: {gone}")),
            "{health:?}"
        );

        let key = "/vlx/rig/check";
        let before = shell_lines(&range_command(&eps, key));
        assert_eq!(range_value(&before), Ok(None), "{before:?}");
        let put = shell_lines(&put_command(&eps, key, "blade01"));
        assert_eq!(put_answered(&put), Ok(()), "{put:?}");
        let after = shell_lines(&range_command(&eps, key));
        assert_eq!(
            range_value(&after),
            Ok(Some("blade01".to_owned())),
            "{after:?}"
        );
        // Nobody to take a put or answer a get.
        let nobody = std::slice::from_ref(&gone);
        assert!(put_answered(&shell_lines(&put_command(nobody, key, "x"))).is_err());
        assert!(range_value(&shell_lines(&range_command(nobody, key))).is_err());

        // A lone member leads itself.
        let status = shell_lines(&each_voter_command(
            live,
            "/v3/maintenance/status",
            Some("{}"),
        ));
        assert_eq!(one_leader(&status, live), Ok(e.url.clone()), "{status:?}");
    }

    #[test]
    fn gateway_errors_and_unhealthy_voters_are_refused() {
        let eps = vec!["http://10.77.0.11:2379".to_owned()];
        // An error's JSON, as the gateway's body holds one (wget prints
        // none on a 503; then no JSON line comes at all).
        let error = ["{\"error\":\"etcdserver: request timed out\",\"code\":14}".to_owned()];
        assert!(put_answered(&error).is_err());
        assert!(range_value(&error).is_err());
        let sick = [format!(
            "{} {{\"health\":\"false\",\"reason\":\"RAFT NO LEADER\"}}",
            eps[0]
        )];
        assert!(all_healthy(&sick, &eps).is_err());
        let cut = [format!("{} {{\"health\":\"tr", eps[0])];
        assert!(all_healthy(&cut, &eps).is_err());
        // A value that is not base64 is not taken for one.
        let odd = ["{\"header\":{},\"kvs\":[{\"key\":\"a2V5\",\"value\":\"!!\"}]}".to_owned()];
        assert!(range_value(&odd).is_err());
    }

    #[test]
    fn reach_must_be_nonzero_for_a_peer() {
        let peers = [Ipv4Addr::new(10, 77, 0, 12), Ipv4Addr::new(10, 77, 0, 13)];
        // chronyc 4.3 output.
        let lines = [
            "MS Name/IP address         Stratum Poll Reach LastRx Last sample",
            "===============================================================================",
            "=? 10.77.0.12                    0   6     0     -     +0ns[   +0ns] +/-    0ns",
            "=* 10.77.0.13                   10   6   377    12   +104us[ +120us] +/-  180us",
            "^? 192.0.2.1                     0   6   377     -     +0ns[   +0ns] +/-    0ns",
        ];
        let got: Vec<String> = lines
            .iter()
            .filter_map(|l| reached_peer(l, &peers))
            .collect();
        assert_eq!(got, ["10.77.0.13 (reach 377)"]);
    }

    #[test]
    fn a_vip_is_taken_at_its_first_note_after_the_kill() {
        let lines: Vec<String> = [
            "vip1 12.50",
            "vip2 13.00",
            "vip1 80.25",
            "vip1 95.00",
            "junk",
        ]
        .iter()
        .map(|l| l.to_string())
        .collect();
        assert_eq!(master_since(&lines, "vip1", 70.0), Some(80.25));
        assert_eq!(master_since(&lines, "vip2", 70.0), None);
        assert_eq!(master_since(&lines, "vip1", 96.0), None);
        assert_eq!(master_since(&lines, "vip", 0.0), None);
    }

    #[test]
    fn addresses_are_matched_whole() {
        let ip = Ipv4Addr::new(10, 77, 0, 1);
        assert!(has_ip("Address: 10.77.0.1", ip));
        assert!(!has_ip("Address: 10.77.0.11", ip));
        assert!(!has_ip("Address 1: 110.77.0.1", ip));
    }

    #[test]
    fn boot_servers_come_from_ipxe_urls() {
        let lines = [
            "Next server: 10.77.0.11".to_string(),
            "Filename: http://10.77.0.12/boot.ipxe".to_string(),
            "http://10.77.0.12/boot.ipxe... ok".to_string(),
            "tftp://10.77.0.13/vmlinuz... ok".to_string(),
            "net0: 10.77.0.14/255.255.255.0".to_string(),
        ];
        let got: Vec<String> = boot_servers(&lines).iter().map(|i| i.to_string()).collect();
        assert_eq!(got, ["10.77.0.11", "10.77.0.12", "10.77.0.13"]);
    }
}
