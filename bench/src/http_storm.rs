//! An HTTP boot storm: many blades fetch the kernel and the initramfs at
//! once, each from the server that answered its DHCP, as iPXE's script
//! does (`boot.ipxe`: kernel, then initramfs, over HTTP from
//! `${next-server}`).
//!
//! Every client is a thread in the client's network namespace; all start
//! together behind a barrier and speak plain HTTP/1.0 (what the blades'
//! mini_httpd serves). A fetch counts only when the status is 200 and the body is
//! exactly the expected length. Each connection has a timeout, so a storm
//! ends by itself.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// One file a client fetches.
#[derive(Debug, Clone)]
pub struct Fetch {
    pub server: SocketAddr,
    /// The URL path, e.g. `/vmlinuz`.
    pub path: String,
    /// Its length in bytes, as the server must send it.
    pub len: u64,
}

/// What a storm did.
#[derive(Debug, Clone)]
pub struct Report {
    pub clients: usize,
    /// Clients whose every fetch was complete.
    pub complete: usize,
    /// Failed clients by reason (the error without client and file), with
    /// how many clients failed so and the first of them ("client 7:
    /// 10.0.0.1:80/vmlinuz").
    pub failures: BTreeMap<String, (usize, String)>,
    pub failed: usize,
    pub bytes: u64,
    /// From the barrier to the last client's last byte.
    pub last: Duration,
    /// Median of the clients' own times.
    pub median: Duration,
}

/// Runs one client per element of `clients` (each fetches its files in
/// order) from network namespace `ns`, all at once; each connection gives
/// up after `timeout` without progress.
pub fn run(ns: &str, clients: Vec<Vec<Fetch>>, timeout: Duration) -> anyhow::Result<Report> {
    let path = PathBuf::from("/run/netns").join(ns);
    let n = clients.len();
    let barrier = Arc::new(Barrier::new(n + 1));
    let mut threads = Vec::with_capacity(n);
    for (i, fetches) in clients.into_iter().enumerate() {
        let barrier = barrier.clone();
        let path = path.clone();
        let t = std::thread::Builder::new()
            // Small stacks: hundreds of clients on a 2-core machine.
            .stack_size(256 * 1024)
            .spawn(move || -> Result<(u64, Instant), (String, String)> {
                let entered =
                    crate::lab::enter(&path).map_err(|e| (format!("{e:#}"), format!("client {i}")));
                barrier.wait();
                entered?;
                let mut bytes = 0;
                for f in &fetches {
                    bytes += get(f, timeout).map_err(|e| {
                        (
                            format!("{e:#}"),
                            format!("client {i}: {}{}", f.server, f.path),
                        )
                    })?;
                }
                Ok((bytes, Instant::now()))
            })
            .context("starting a client thread")?;
        threads.push(t);
    }
    barrier.wait();
    let start = Instant::now();
    let mut report = Report {
        clients: n,
        complete: 0,
        failures: BTreeMap::new(),
        failed: 0,
        bytes: 0,
        last: Duration::ZERO,
        median: Duration::ZERO,
    };
    let mut times = Vec::with_capacity(n);
    for t in threads {
        match t.join() {
            Ok(Ok((bytes, end))) => {
                report.complete += 1;
                report.bytes += bytes;
                let d = end.saturating_duration_since(start);
                report.last = report.last.max(d);
                times.push(d);
            }
            Ok(Err((reason, who))) => {
                report.failed += 1;
                report.failures.entry(reason).or_insert((0, who)).0 += 1;
            }
            Err(_) => bail!("a client thread panicked"),
        }
    }
    times.sort();
    report.median = times.get(times.len() / 2).copied().unwrap_or_default();
    Ok(report)
}

/// One HTTP/1.0 GET; returns the body's length after checking it.
fn get(f: &Fetch, timeout: Duration) -> anyhow::Result<u64> {
    let mut s = TcpStream::connect_timeout(&f.server, timeout).context("connecting")?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: vlx-storm\r\n\r\n",
        f.path,
        f.server.ip()
    )
    .context("sending the request")?;
    // Large reads: the body is tens of MiB and only counted.
    let mut r = BufReader::with_capacity(256 * 1024, s);
    let mut status = String::new();
    r.read_line(&mut status).context("reading the status")?;
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("status {:?}", status.trim());
    }
    let mut declared = None;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).context("reading the headers")? == 0 {
            bail!("the headers end early");
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            declared = v.trim().parse::<u64>().ok();
        }
    }
    let mut body = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let k = r.read(&mut buf).context("reading the body")?;
        if k == 0 {
            break;
        }
        body += k as u64;
    }
    if body != f.len || declared.is_some_and(|d| d != f.len) {
        bail!(
            "got {body} bytes (declared {declared:?}), expected {}",
            f.len
        );
    }
    Ok(body)
}
