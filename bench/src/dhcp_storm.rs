//! A DHCP boot storm: `perfdhcp` (Debian's kea-admin) plays a row of
//! blades that all ask for their address at once, with the cluster's own
//! MACs, against the rendered dnsmasq of the blades that are up.
//!
//! perfdhcp's avalanche scenario sends one DISCOVER per client at once and
//! then retries every unanswered exchange with a back-off until all are
//! answered; it never gives up by itself, so [`run`] stops it at a deadline
//! (SIGINT, after which it still prints its statistics). It acts as a relay
//! (the DISCOVER carries its own address as `giaddr`), so it needs an
//! address in the cluster's network, one that no node and no VIP has.
//!
//! Clients: perfdhcp numbers its clients 0..N-1 and adds the number to the
//! base MAC octet by octet, *without carrying* from one octet into the next
//! ([`perfdhcp_macs`]). The clients' MACs are the cluster's own only when
//! that is the same as counting, so [`check_macs`] refuses a base whose
//! last octet would overflow.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cluster::MacAddr;
use cluster::plan::{NodePlan, Plan};

/// What one perfdhcp run reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// 4-way exchanges (DORA) per second, as perfdhcp computes it.
    pub rate: f64,
    /// From the first DISCOVER to the last ACK ("It took ... to provision"),
    /// when perfdhcp got every answer; `None` when it was stopped first.
    pub took: Option<Duration>,
    pub discovers_sent: u64,
    pub offers: u64,
    pub requests_sent: u64,
    pub acks: u64,
    /// Retransmissions the avalanche needed.
    pub resent: u64,
    /// The addresses of every ACK, in perfdhcp's order.
    pub leases: Vec<Ipv4Addr>,
}

/// The MACs perfdhcp gives clients 0..n when started with `-b mac=base
/// -R n`: client r's MAC is `base` with the bytes of r added to its last
/// octets one by one, each octet wrapping on its own.
pub fn perfdhcp_macs(base: MacAddr, n: usize) -> Vec<MacAddr> {
    (0..n as u32)
        .map(|r| {
            let mut mac = base.0;
            let mut r = r;
            for octet in mac.iter_mut().rev() {
                *octet = octet.wrapping_add(r as u8);
                if r < 256 {
                    break;
                }
                r >>= 8;
            }
            MacAddr(mac)
        })
        .collect()
}

/// Checks that perfdhcp's clients are exactly `clients`' MACs, in order:
/// then every client is a node of the cluster and no node is played twice.
pub fn check_macs(clients: &[&NodePlan]) -> anyhow::Result<MacAddr> {
    let first = clients
        .first()
        .and_then(|n| n.macs.first())
        .copied()
        .context("no clients")?;
    let played = perfdhcp_macs(first, clients.len());
    for (node, mac) in clients.iter().zip(&played) {
        if node.macs.first() != Some(mac) {
            bail!(
                "perfdhcp would play {mac} for node {} (MAC {}): it adds the client number octet by octet without carry, so the clients' first MAC must end in :00 when there are more than 256 - its last octet of them",
                node.name,
                node.macs
                    .first()
                    .map_or_else(String::new, |m| m.to_string()),
            );
        }
    }
    Ok(first)
}

/// An address in the plan's network that no node, VIP or gateway has: the
/// highest such host address. perfdhcp sends from it.
pub fn free_address(plan: &Plan) -> anyhow::Result<Ipv4Addr> {
    let net = plan.network.cidr;
    let taken: BTreeSet<Ipv4Addr> = plan
        .nodes
        .iter()
        .map(|n| n.ip)
        .chain(plan.network.vips.iter().map(|v| v.address))
        .chain(plan.network.gateway)
        .collect();
    let (lo, hi) = (u32::from(net.network()), u32::from(net.broadcast()));
    (lo + 1..hi)
        .rev()
        .map(Ipv4Addr::from)
        .find(|a| !taken.contains(a))
        .with_context(|| format!("no free address left in {net:?}"))
}

/// Runs perfdhcp in network namespace `ns` on `iface` as `n` clients from
/// MAC `base`, until every client has its lease or `deadline` passes (then
/// it is interrupted and reports what it got). Its whole output goes to
/// `log`.
pub fn run(
    ns: &str,
    iface: &str,
    base: MacAddr,
    n: usize,
    deadline: Duration,
    log: &Path,
) -> anyhow::Result<Report> {
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "perfdhcp",
            "-4",
            "--scenario",
            "avalanche",
        ])
        .arg(format!("-R{n}"))
        .arg(format!("-bmac={base}"))
        .arg(format!("-l{iface}"))
        // Print the leases, so that every address can be checked.
        .arg("-xl")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting perfdhcp (Debian package kea-admin)")?;
    let pid = child.id();
    let start = Instant::now();
    let stopper = std::thread::spawn(move || {
        while start.elapsed() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            if !alive(pid) {
                return false;
            }
        }
        // SIGINT: perfdhcp stops sending and prints its statistics. The
        // child is `ip netns exec`, which execs perfdhcp: the same pid.
        // SAFETY: kill has no memory effects; pid is our own child's.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
        true
    });
    let out = child.wait_with_output().context("waiting for perfdhcp")?;
    let stopped = stopper.join().unwrap_or(true);
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    std::fs::write(log, &text).with_context(|| format!("writing {}", log.display()))?;
    if !stopped && !out.status.success() {
        bail!(
            "perfdhcp failed ({}); its output is in {}",
            out.status,
            log.display()
        );
    }
    let mut report =
        parse(&text).with_context(|| format!("reading perfdhcp's output in {}", log.display()))?;
    if stopped {
        // An interrupted avalanche still prints "It took ... to provision
        // N clients", counting to the interrupt.
        report.took = None;
    }
    Ok(report)
}

/// Whether our child `pid` still runs (not yet reaped).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// Reads perfdhcp's final report (`-x l`, avalanche scenario).
pub fn parse(text: &str) -> anyhow::Result<Report> {
    let rate = text
        .lines()
        .find_map(|l| l.strip_prefix("Rate: "))
        .and_then(|r| r.split_whitespace().next())
        .context("no `Rate:` line")?
        .parse()
        .context("the rate is not a number")?;
    let section = |name: &str| -> anyhow::Result<&str> {
        let head = format!("***Statistics for: {name}***");
        let at = text.find(&head).with_context(|| format!("no `{head}`"))?;
        let rest = &text[at + head.len()..];
        Ok(rest.split("***").next().unwrap_or(rest))
    };
    let count = |section: &str, key: &str| -> anyhow::Result<u64> {
        section
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .with_context(|| format!("no `{key}`"))?
            .trim()
            .parse()
            .with_context(|| format!("`{key}` is not a number"))
    };
    let dora = section("DISCOVER-OFFER")?;
    let ra = section("REQUEST-ACK")?;
    let mut leases = Vec::new();
    if let Some(at) = text.find("***Leases for REQUEST-ACK***") {
        for line in text[at..].lines().skip(2) {
            if line.trim().is_empty() {
                break;
            }
            let addr = line
                .split(',')
                .nth(1)
                .with_context(|| format!("lease line `{line}` has no address"))?;
            leases.push(
                addr.parse()
                    .with_context(|| format!("`{addr}` in lease line `{line}` is no address"))?,
            );
        }
    }
    let took = text
        .lines()
        .find_map(|l| l.strip_prefix("It took "))
        .and_then(|l| l.split_whitespace().next())
        .map(parse_duration)
        .transpose()?;
    let resent = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests resent: "))
        .map(|v| v.trim().parse::<u64>())
        .transpose()
        .context("`Requests resent` is not a number")?
        .unwrap_or(0);
    Ok(Report {
        rate,
        took,
        discovers_sent: count(dora, "sent packets: ")?,
        offers: count(dora, "received packets: ")?,
        requests_sent: count(ra, "sent packets: ")?,
        acks: count(ra, "received packets: ")?,
        resent,
        leases,
    })
}

/// `HH:MM:SS.ffffff`, as boost prints a duration.
fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let bad = || format!("`{s}` is not HH:MM:SS.ffffff");
    let mut parts = s.split(':');
    let (Some(h), Some(m), Some(sec), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        bail!(bad());
    };
    let h: u64 = h.parse().with_context(bad)?;
    let m: u64 = m.parse().with_context(bad)?;
    let sec: f64 = sec.parse().with_context(bad)?;
    Ok(Duration::from_secs(h * 3600 + m * 60) + Duration::from_secs_f64(sec))
}

/// Checks that every client got its own fixed address: as many ACKs as
/// clients, no address twice, and exactly the clients' reserved addresses.
/// dnsmasq hands a reserved address to its MAC only (the configs have
/// static reservations and nothing else), so a full, duplicate-free set
/// means each client got its own.
pub fn check_leases(report: &Report, clients: &[&NodePlan]) -> anyhow::Result<()> {
    let want: BTreeSet<Ipv4Addr> = clients.iter().map(|n| n.ip).collect();
    let got: BTreeSet<Ipv4Addr> = report.leases.iter().copied().collect();
    if report.leases.len() != got.len() {
        bail!(
            "{} ACKs carried only {} distinct addresses",
            report.leases.len(),
            got.len()
        );
    }
    let missing: Vec<String> = want.difference(&got).map(|a| a.to_string()).collect();
    let strange: Vec<String> = got.difference(&want).map(|a| a.to_string()).collect();
    if !strange.is_empty() {
        bail!(
            "addresses no client owns were leased: {}",
            strange.join(" ")
        );
    }
    if !missing.is_empty() {
        bail!(
            "{} of {} clients got no lease ({} acks); first missing: {}",
            missing.len(),
            clients.len(),
            report.acks,
            missing
                .iter()
                .take(8)
                .cloned()
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const OUTPUT: &str = "Running: perfdhcp -4 -, avalanche -R 2\n\
Scenario: avalanche.\n\
***Rate statistics***\n\
Rate: 9.91277 4-way exchanges/second\n\
***Malformed Packets***\n\
Malformed packets: 0\n\
***Statistics for: DISCOVER-OFFER***\n\
sent packets: 2\n\
received packets: 2\n\
drops: 0\n\
\n\
***Statistics for: REQUEST-ACK***\n\
sent packets: 2\n\
received packets: 1\n\
drops: 0\n\
\n\
***Leases for DISCOVER-OFFER***\n\
client_id,adrress,prefix\n\
,10.96.0.12,\n\
,10.96.0.13,\n\
\n\
\n\
***Leases for REQUEST-ACK***\n\
client_id,adrress,prefix\n\
,10.96.0.12,\n\
\n\
\n\
It took 00:01:02.200241 to provision 2 clients. \n\
Requests sent + resent: 5\n\
Requests resent: 1\n\
Responses received: 3\n";

    #[test]
    fn reads_the_avalanche_report() {
        let r = parse(OUTPUT).unwrap();
        assert_eq!(r.rate, 9.91277);
        assert_eq!(r.took, Some(Duration::from_secs_f64(62.200241)));
        assert_eq!((r.discovers_sent, r.offers), (2, 2));
        assert_eq!((r.requests_sent, r.acks), (2, 1));
        assert_eq!(r.resent, 1);
        assert_eq!(r.leases, vec!["10.96.0.12".parse::<Ipv4Addr>().unwrap()]);
    }

    #[test]
    fn a_report_without_its_completion_line_has_no_completion_time() {
        let cut = OUTPUT.replace("It took 00:01:02.200241 to provision 2 clients. \n", "");
        assert_eq!(parse(&cut).unwrap().took, None);
        let err = parse("Running: perfdhcp\n").unwrap_err();
        assert!(err.to_string().contains("Rate:"), "{err}");
    }

    fn node(i: usize) -> NodePlan {
        NodePlan {
            index: i,
            name: format!("n{i:04}").parse().unwrap(),
            fqdn: format!("n{i:04}.test"),
            macs: vec![MacAddr([2, 0, 0, 0, 0, i as u8])],
            ip: Ipv4Addr::new(10, 0, 0, 10 + i as u8),
            extra_ips: vec![],
            cow: String::new(),
            swap: None,
            vrrp: vec![],
            services: vec![],
        }
    }

    fn acked(leases: &[u8]) -> Report {
        Report {
            rate: 1.0,
            took: None,
            discovers_sent: 3,
            offers: 3,
            requests_sent: 3,
            acks: leases.len() as u64,
            resent: 0,
            leases: leases.iter().map(|o| Ipv4Addr::new(10, 0, 0, *o)).collect(),
        }
    }

    #[test]
    fn every_client_must_have_its_own_address() {
        let nodes = [node(0), node(1), node(2)];
        let clients: Vec<&NodePlan> = nodes.iter().collect();
        check_leases(&acked(&[12, 10, 11]), &clients).unwrap();
        let err = check_leases(&acked(&[10, 11]), &clients).unwrap_err();
        assert!(
            err.to_string().contains("1 of 3 clients got no lease")
                && err.to_string().contains("10.0.0.12"),
            "{err}"
        );
        let err = check_leases(&acked(&[10, 11, 11]), &clients).unwrap_err();
        assert!(err.to_string().contains("only 2 distinct"), "{err}");
        let err = check_leases(&acked(&[10, 11, 99]), &clients).unwrap_err();
        assert!(
            err.to_string()
                .contains("no client owns were leased: 10.0.0.99"),
            "{err}"
        );
    }

    #[test]
    fn perfdhcp_adds_without_carry() {
        let base: MacAddr = "52:54:00:96:00:00".parse().unwrap();
        let macs = perfdhcp_macs(base, 1000);
        for (r, m) in macs.iter().enumerate() {
            assert_eq!(Some(*m), base.offset(r as u64), "client {r}");
        }
        let odd: MacAddr = "52:54:00:96:00:01".parse().unwrap();
        let macs = perfdhcp_macs(odd, 300);
        assert_eq!(macs[254].to_string(), "52:54:00:96:00:ff");
        // 1 + 255 wraps in the last octet and nothing carries.
        assert_eq!(macs[255].to_string(), "52:54:00:96:00:00");
        assert_eq!(macs[256].to_string(), "52:54:00:96:01:01");
    }
}
