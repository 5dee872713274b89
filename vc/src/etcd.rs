//! A small etcd v3 client over etcd's JSON gateway (`POST /v3/...`, keys
//! and values base64), on plain HTTP/1.1 over `std::net::TcpStream`.
//!
//! Why not the gRPC client: it needs protoc at build time and is tested
//! upstream against etcd 3.5+, while the blades run Debian's 3.4; the
//! gateway serves the same API in JSON and needs no dependency.
//!
//! Several endpoints may be given (the etcd members); a request goes to the
//! first that accepts a connection, so losing one member loses nothing.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};

/// How long to wait for a member to accept a connection before trying the
/// next: a member on a dead blade must not stall every command for long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one request may take: a write waits for a quorum, and under TCG
/// rigs an election takes a few seconds.
const IO_TIMEOUT: Duration = Duration::from_secs(15);

/// One key and value as etcd holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub lease: i64,
}

/// A condition of a transaction.
#[derive(Debug, Clone)]
pub enum Compare {
    /// The key does not exist.
    Absent(String),
    /// The key exists.
    Exists(String),
    /// The key holds exactly this value.
    ValueIs(String, Vec<u8>),
    /// The key was last changed at exactly this revision.
    ModIs(String, i64),
    /// No key in `[prefix, prefix_end(prefix))` changed after `rev`.
    PrefixUnchangedSince(String, i64),
}

/// An operation of a transaction.
#[derive(Debug, Clone)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        lease: Option<i64>,
    },
    Delete(String),
    DeletePrefix(String),
}

impl Op {
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease: None,
        }
    }
}

/// The members to talk to, as `http://HOST:PORT` URLs.
#[derive(Debug, Clone)]
pub struct Etcd {
    endpoints: Vec<String>,
}

impl Etcd {
    /// `urls`: `http://HOST:PORT`, at least one. HTTPS is not spoken: the
    /// cluster network is private to the blades.
    pub fn new(urls: &[String]) -> anyhow::Result<Etcd> {
        if urls.is_empty() {
            bail!("no etcd endpoint given");
        }
        let mut endpoints = Vec::new();
        for u in urls {
            let hostport = u
                .strip_prefix("http://")
                .ok_or_else(|| anyhow!("etcd endpoint `{u}` is not an http:// URL"))?
                .trim_end_matches('/');
            if hostport.is_empty() || hostport.contains('/') {
                bail!("etcd endpoint `{u}` is not of the form http://HOST:PORT");
            }
            endpoints.push(hostport.to_owned());
        }
        Ok(Etcd { endpoints })
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// POSTs `body` to `path` on the first member that answers.
    fn call(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let body = body.to_string();
        let mut errors = Vec::new();
        for ep in &self.endpoints {
            let stream = match connect(ep) {
                Ok(s) => s,
                Err(e) => {
                    errors.push(format!("{ep}: {e:#}"));
                    continue;
                }
            };
            let (status, resp) =
                exchange(stream, ep, path, &body).with_context(|| format!("etcd {ep}{path}"))?;
            let v: Value = serde_json::from_slice(&resp)
                .with_context(|| format!("etcd {ep}{path}: the answer is not JSON"))?;
            if status != 200 {
                let msg = v
                    .get("error")
                    .or_else(|| v.get("message"))
                    .and_then(Value::as_str)
                    .unwrap_or("no message");
                bail!("etcd {ep}{path}: HTTP {status}: {msg}");
            }
            return Ok(v);
        }
        bail!("no etcd member answers: {}", errors.join("; "))
    }

    /// The value of one key.
    pub fn get(&self, key: &str) -> anyhow::Result<Option<Kv>> {
        let v = self.call("/v3/kv/range", &json!({ "key": b64(key.as_bytes()) }))?;
        Ok(kvs(&v)?.into_iter().next())
    }

    /// Every key under `prefix`, sorted by key, and the store's revision.
    pub fn list(&self, prefix: &str) -> anyhow::Result<(Vec<Kv>, i64)> {
        let v = self.call(
            "/v3/kv/range",
            &json!({
                "key": b64(prefix.as_bytes()),
                "range_end": b64(&prefix_end(prefix)),
                "sort_order": "ASCEND",
                "sort_target": "KEY",
            }),
        )?;
        Ok((kvs(&v)?, header_revision(&v)?))
    }

    pub fn put(&self, key: &str, value: &[u8], lease: Option<i64>) -> anyhow::Result<()> {
        let mut body = json!({ "key": b64(key.as_bytes()), "value": b64(value) });
        if let Some(l) = lease {
            body["lease"] = json!(l.to_string());
        }
        self.call("/v3/kv/put", &body)?;
        Ok(())
    }

    /// Deletes every key under `prefix`; returns how many.
    pub fn delete_prefix(&self, prefix: &str) -> anyhow::Result<i64> {
        let v = self.call(
            "/v3/kv/deleterange",
            &json!({ "key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix)) }),
        )?;
        int_field(&v, "deleted")
    }

    /// Runs `ops` if every compare holds; returns whether they ran.
    pub fn txn(&self, compare: &[Compare], ops: &[Op]) -> anyhow::Result<bool> {
        let compare: Vec<Value> = compare.iter().map(compare_json).collect();
        let success: Vec<Value> = ops.iter().map(op_json).collect();
        let v = self.call(
            "/v3/kv/txn",
            &json!({ "compare": compare, "success": success }),
        )?;
        Ok(v.get("succeeded").and_then(Value::as_bool).unwrap_or(false))
    }

    /// A lease of `ttl` seconds; returns its id.
    pub fn lease_grant(&self, ttl: i64) -> anyhow::Result<i64> {
        let v = self.call("/v3/lease/grant", &json!({ "TTL": ttl }))?;
        int_field(&v, "ID")
    }

    /// Renews a lease; returns its remaining TTL, 0 when it has expired.
    pub fn lease_keepalive(&self, id: i64) -> anyhow::Result<i64> {
        let v = self.call("/v3/lease/keepalive", &json!({ "ID": id.to_string() }))?;
        let r = v.get("result").unwrap_or(&v);
        Ok(opt_int(r, "TTL")?.unwrap_or(0))
    }

    pub fn lease_revoke(&self, id: i64) -> anyhow::Result<()> {
        self.call("/v3/lease/revoke", &json!({ "ID": id.to_string() }))?;
        Ok(())
    }
}

fn connect(ep: &str) -> anyhow::Result<TcpStream> {
    let mut last = None;
    for addr in ep
        .to_socket_addrs()
        .with_context(|| format!("resolving {ep}"))?
    {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => anyhow!(e).context(format!("connecting to {ep}")),
        None => anyhow!("{ep} has no address"),
    })
}

/// One HTTP/1.1 request with `Connection: close`; returns status and body.
fn exchange(
    mut s: TcpStream,
    host: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<(u16, Vec<u8>)> {
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).context("sending the request")?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).context("reading the answer")?;
    parse_response(&resp)
}

/// Splits an HTTP/1.1 response into status and body (plain or chunked).
pub fn parse_response(resp: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    let end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("the answer has no end of headers"))?;
    let head = std::str::from_utf8(&resp[..end]).context("the headers are not text")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("bad status line `{status_line}`"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = &resp[end + 4..];
    if !chunked {
        return Ok((status, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let nl = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("a chunk has no size line"))?;
        let size_text = std::str::from_utf8(&rest[..nl]).context("chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size `{size_text}`"))?;
        rest = &rest[nl + 2..];
        if size == 0 {
            return Ok((status, out));
        }
        if rest.len() < size {
            bail!("a chunk is cut short");
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

fn compare_json(c: &Compare) -> Value {
    match c {
        Compare::Absent(k) => json!({
            "key": b64(k.as_bytes()), "target": "CREATE", "result": "EQUAL",
            "create_revision": "0",
        }),
        Compare::Exists(k) => json!({
            "key": b64(k.as_bytes()), "target": "CREATE", "result": "GREATER",
            "create_revision": "0",
        }),
        Compare::ValueIs(k, v) => json!({
            "key": b64(k.as_bytes()), "target": "VALUE", "result": "EQUAL",
            "value": b64(v),
        }),
        Compare::ModIs(k, rev) => json!({
            "key": b64(k.as_bytes()), "target": "MOD", "result": "EQUAL",
            "mod_revision": rev.to_string(),
        }),
        Compare::PrefixUnchangedSince(p, rev) => json!({
            "key": b64(p.as_bytes()), "range_end": b64(&prefix_end(p)),
            "target": "MOD", "result": "LESS", "mod_revision": (rev + 1).to_string(),
        }),
    }
}

fn op_json(o: &Op) -> Value {
    match o {
        Op::Put { key, value, lease } => {
            let mut p = json!({ "key": b64(key.as_bytes()), "value": b64(value) });
            if let Some(l) = lease {
                p["lease"] = json!(l.to_string());
            }
            json!({ "request_put": p })
        }
        Op::Delete(k) => json!({ "request_delete_range": { "key": b64(k.as_bytes()) } }),
        Op::DeletePrefix(p) => json!({ "request_delete_range": {
            "key": b64(p.as_bytes()), "range_end": b64(&prefix_end(p)),
        }}),
    }
}

/// The first key after every key that starts with `prefix`.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte 0xff: the range runs to the end of the key space.
    vec![0]
}

/// etcd's JSON writes 64-bit integers as strings.
fn opt_int(v: &Value, field: &str) -> anyhow::Result<Option<i64>> {
    match v.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .with_context(|| format!("etcd field `{field}` = `{s}` is not a number")),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| anyhow!("etcd field `{field}` is out of range")),
        Some(other) => bail!("etcd field `{field}` is {other}, not a number"),
    }
}

fn int_field(v: &Value, field: &str) -> anyhow::Result<i64> {
    // Proto3 leaves out zero values.
    Ok(opt_int(v, field)?.unwrap_or(0))
}

fn header_revision(v: &Value) -> anyhow::Result<i64> {
    let h = v
        .get("header")
        .ok_or_else(|| anyhow!("etcd's answer has no header"))?;
    int_field(h, "revision")
}

fn kvs(v: &Value) -> anyhow::Result<Vec<Kv>> {
    let Some(arr) = v.get("kvs").and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    arr.iter()
        .map(|kv| {
            let key = unb64(kv.get("key").and_then(Value::as_str).unwrap_or_default())?;
            let key = String::from_utf8(key).context("an etcd key is not UTF-8")?;
            Ok(Kv {
                value: unb64(kv.get("value").and_then(Value::as_str).unwrap_or_default())
                    .with_context(|| format!("the value of {key}"))?,
                create_revision: int_field(kv, "create_revision")?,
                mod_revision: int_field(kv, "mod_revision")?,
                lease: int_field(kv, "lease")?,
                key,
            })
        })
        .collect()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (what etcd's gateway reads and writes).
pub fn b64(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(c.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(c.get(2).copied().unwrap_or(0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                s.push('=');
            }
        }
    }
    s
}

pub fn unb64(s: &str) -> anyhow::Result<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for ch in s.bytes() {
        let v = B64
            .iter()
            .position(|&b| b == ch)
            .ok_or_else(|| anyhow!("`{}` is not base64", char::from(ch)))?;
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// Where `vlx-vc` and `vlx-vcd` find etcd when no `--etcd` is given.
pub const ETCD_ENV: &str = "VLX_ETCD";
pub const ETCD_CONF: &str = "/etc/vlx/etcd.conf";

/// The endpoints: `flag` (comma-separated), else `$VLX_ETCD`, else the
/// `endpoints` array of `/etc/vlx/etcd.conf` (TOML).
pub fn endpoints(flag: Option<&str>) -> anyhow::Result<Vec<String>> {
    let split = |s: &str| -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect()
    };
    if let Some(f) = flag {
        return Ok(split(f));
    }
    if let Ok(e) = std::env::var(ETCD_ENV) {
        return Ok(split(&e));
    }
    let text = std::fs::read_to_string(ETCD_CONF).with_context(|| {
        format!("no --etcd given, ${ETCD_ENV} is not set, and reading {ETCD_CONF} failed")
    })?;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Conf {
        endpoints: Vec<String>,
    }
    let c: Conf = toml::from_str(&text).with_context(|| format!("reading {ETCD_CONF}"))?;
    Ok(c.endpoints)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_matches_rfc4648() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(b64(plain.as_bytes()), enc);
            assert_eq!(unb64(enc).unwrap(), plain.as_bytes());
        }
        assert!(unb64("a*b").is_err());
    }

    #[test]
    fn prefix_end_is_the_next_key() {
        assert_eq!(prefix_end("/vlx/"), b"/vlx0");
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80");
    }

    #[test]
    fn chunked_answers_are_joined() {
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n3\r\n\":1\r\n1\r\n}\r\n0\r\n\r\n";
        assert_eq!(parse_response(r).unwrap(), (200, b"{\"a\":1}".to_vec()));
        let r = b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse_response(r).unwrap(), (404, b"{}".to_vec()));
    }
}
