//! The `vlx.*` words of the kernel command line: which cluster this blade
//! belongs to and how it reaches the SAN.
//!
//! The installer writes the line (`cluster::plan`'s `cmdline()`); every key
//! it can write is read here, and a `vlx.` key it cannot write is refused
//! (a typo in a hand-edited boot entry should stop the boot with its name,
//! not be ignored). Words without the `vlx.` prefix belong to the kernel or
//! to init and are skipped. A key given twice takes its last value, as the
//! kernel does for its own parameters, so that a word appended at a boot
//! prompt wins over the stored line.

use std::net::Ipv4Addr;
use std::time::Duration;

use cluster::profile::{Iscsi, Transport, defaults};
use uuid::Uuid;

/// What the command line tells the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootArgs {
    pub cluster: Uuid,
    pub transport: Transport,
    /// How long to wait for the SAN's disk to appear (`vlx.san_wait=`
    /// seconds, [`DEFAULT_SAN_WAIT`] without it): HBAs that take long to
    /// scan their fabric need more.
    pub san_wait: Duration,
}

/// How long the agent waits for the SAN without `vlx.san_wait=`: FC and
/// SAS HBAs and iSCSI logins scan their LUNs asynchronously, some for tens
/// of seconds.
pub const DEFAULT_SAN_WAIT: Duration = Duration::from_secs(60);

/// The longest `vlx.san_wait=` taken: an hour.
const MAX_SAN_WAIT_SECS: u64 = 3600;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmdlineError {
    #[error("the kernel command line has no vlx.cluster=<uuid>")]
    NoCluster,
    #[error("the kernel command line has no vlx.san=disk or vlx.san=iscsi")]
    NoTransport,
    #[error("vlx.{key}={value} on the kernel command line: {reason}")]
    Bad {
        key: String,
        value: String,
        reason: String,
    },
    #[error("vlx.san=iscsi needs vlx.{0} on the kernel command line")]
    Missing(&'static str),
    #[error("vlx.{0} is an iSCSI parameter, but the command line says vlx.san=disk")]
    NotForDisk(String),
    #[error(
        "vlx.{0} on the kernel command line is not a vlx parameter (known: {known})",
        known = KEYS.join(", ")
    )]
    Unknown(String),
}

/// Every `vlx.` key, as the installer writes them.
const KEYS: &[&str] = &[
    "cluster",
    "san",
    "storage_ip",
    "storage_port",
    "sif",
    "sifip",
    "sifnm",
    "sifm",
    "ivid",
    "san_wait",
];

/// Keys that are not about the transport: valid with either.
const ANY_TRANSPORT: &[&str] = &["cluster", "san", "san_wait"];

/// Splits a command line into words the way the kernel does: at spaces,
/// except inside double quotes, which are dropped.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            c => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(word);
    }
    out
}

/// The `vlx.` keys and their values, last value winning.
fn vlx_pairs(line: &str) -> Result<Vec<(String, String)>, CmdlineError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for w in words(line) {
        let Some(rest) = w.strip_prefix("vlx.") else {
            continue;
        };
        let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
        if !KEYS.contains(&key) {
            return Err(CmdlineError::Unknown(key.to_owned()));
        }
        pairs.retain(|(k, _)| k != key);
        pairs.push((key.to_owned(), value.to_owned()));
    }
    Ok(pairs)
}

fn bad(key: &str, value: &str, reason: impl Into<String>) -> CmdlineError {
    CmdlineError::Bad {
        key: key.to_owned(),
        value: value.to_owned(),
        reason: reason.into(),
    }
}

/// Reads the `vlx.*` parameters of a kernel command line (the text of
/// `/proc/cmdline`).
pub fn parse(line: &str) -> Result<BootArgs, CmdlineError> {
    let pairs = vlx_pairs(line)?;
    let get = |k: &str| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    let cluster = get("cluster").ok_or(CmdlineError::NoCluster)?;
    let cluster = Uuid::parse_str(cluster).map_err(|e| bad("cluster", cluster, e.to_string()))?;
    let san = get("san").ok_or(CmdlineError::NoTransport)?;
    let transport = match san.as_str() {
        "disk" => {
            if let Some((k, _)) = pairs
                .iter()
                .find(|(k, _)| !ANY_TRANSPORT.contains(&k.as_str()))
            {
                return Err(CmdlineError::NotForDisk(k.clone()));
            }
            Transport::Disk
        }
        "iscsi" => Transport::Iscsi(iscsi(&get)?),
        other => return Err(bad("san", other, "use disk or iscsi")),
    };
    let san_wait = match get("san_wait") {
        None => DEFAULT_SAN_WAIT,
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (1..=MAX_SAN_WAIT_SECS).contains(&n) => Duration::from_secs(n),
            _ => {
                return Err(bad(
                    "san_wait",
                    v,
                    format!("give whole seconds, 1 to {MAX_SAN_WAIT_SECS}"),
                ));
            }
        },
    };
    Ok(BootArgs {
        cluster,
        transport,
        san_wait,
    })
}

fn iscsi<'a>(get: &impl Fn(&str) -> Option<&'a String>) -> Result<Iscsi, CmdlineError> {
    let ipv4 = |key: &str, v: &str| {
        v.parse::<Ipv4Addr>()
            .map_err(|_| bad(key, v, "not an IPv4 address"))
    };
    let storage_ip = get("storage_ip").ok_or(CmdlineError::Missing("storage_ip"))?;
    let storage_ip = ipv4("storage_ip", storage_ip)?;
    let storage_port = match get("storage_port") {
        None => defaults::ISCSI_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(bad("storage_port", p, "not a port (1 to 65535)")),
        },
    };
    let sif = get("sif").ok_or(CmdlineError::Missing("sif"))?;
    if sif.is_empty() || sif.contains('/') {
        return Err(bad("sif", sif, "not an interface name"));
    }
    let sifip = match get("sifip") {
        None => "dhcp".to_owned(),
        Some(v) if v == "dhcp" => v.clone(),
        Some(v) => ipv4("sifip", v)?.to_string(),
    };
    let sifnm = get("sifnm").map(|v| ipv4("sifnm", v)).transpose()?;
    let sifm = match get("sifm") {
        None => Vec::new(),
        Some(v) => {
            let names: Vec<String> = v.split(',').map(str::to_owned).collect();
            if names.iter().any(|n| n.is_empty() || n.contains('/')) {
                return Err(bad("sifm", v, "write module names separated by commas"));
            }
            names
        }
    };
    let ivid = get("ivid").ok_or(CmdlineError::Missing("ivid"))?;
    if ivid.is_empty() {
        return Err(bad("ivid", ivid, "the iSCSI target name is empty"));
    }
    Ok(Iscsi {
        storage_ip,
        storage_port,
        sif: sif.clone(),
        sifip,
        sifnm,
        sifm,
        ivid: ivid.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = "6f1c0a4e-3b8e-4d3a-9d2a-1f0e5c7b9a10";

    fn uuid() -> Uuid {
        Uuid::parse_str(U).unwrap()
    }

    fn iscsi(f: impl FnOnce(&mut Iscsi)) -> Transport {
        let mut i = Iscsi {
            storage_ip: Ipv4Addr::new(10, 10, 0, 250),
            storage_port: 3260,
            sif: "ib0".into(),
            sifip: "dhcp".into(),
            sifnm: None,
            sifm: Vec::new(),
            ivid: "iqn.2007-01.it.unipi.di:virtualinux.san0".into(),
        };
        f(&mut i);
        Transport::Iscsi(i)
    }

    #[test]
    fn reads_what_it_should() {
        let cases: Vec<(String, Transport)> = vec![
            (
                format!(
                    "BOOT_IMAGE=/vmlinuz vlx.cluster={U} vlx.san=disk console=ttyS0,115200 panic=30"
                ),
                Transport::Disk,
            ),
            (
                format!(
                    "vlx.cluster={U} vlx.san=iscsi vlx.storage_ip=10.10.0.250 vlx.storage_port=3260 \
                     vlx.sif=ib0 vlx.sifip=dhcp vlx.sifnm=255.255.255.0 \
                     vlx.sifm=mlx4_core,mlx4_ib,ib_ipoib vlx.ivid=iqn.2007-01.it.unipi.di:virtualinux.san0"
                ),
                iscsi(|i| {
                    i.sifnm = Some(Ipv4Addr::new(255, 255, 255, 0));
                    i.sifm = vec!["mlx4_core".into(), "mlx4_ib".into(), "ib_ipoib".into()];
                }),
            ),
            (
                // Defaults: port 3260 and DHCP; a fixed address; quotes.
                format!(
                    "vlx.cluster={U} vlx.san=iscsi vlx.storage_ip=10.10.0.250 vlx.sif=\"ib0\" \
                     vlx.sifip=10.10.0.7 vlx.ivid=iqn.2007-01.it.unipi.di:virtualinux.san0"
                ),
                iscsi(|i| i.sifip = "10.10.0.7".into()),
            ),
            (
                // The last value wins, as for the kernel's own parameters.
                format!("vlx.cluster={U} vlx.san=iscsi vlx.san=disk"),
                Transport::Disk,
            ),
        ];
        for (line, want) in cases {
            assert_eq!(
                parse(&line),
                Ok(BootArgs {
                    cluster: uuid(),
                    transport: want,
                    san_wait: DEFAULT_SAN_WAIT,
                }),
                "{line}"
            );
        }
    }

    #[test]
    fn san_wait_goes_with_either_transport() {
        let disk = parse(&format!("vlx.cluster={U} vlx.san=disk vlx.san_wait=5")).unwrap();
        assert_eq!(disk.san_wait, Duration::from_secs(5));
        let line = format!(
            "vlx.cluster={U} vlx.san=iscsi vlx.storage_ip=10.10.0.250 vlx.sif=ib0 \
             vlx.ivid=iqn.2007-01.it.unipi.di:virtualinux.san0 vlx.san_wait=3600"
        );
        assert_eq!(parse(&line).unwrap().san_wait, Duration::from_secs(3600));
    }

    #[test]
    fn refuses_what_it_should() {
        let cases: Vec<(String, &str)> = vec![
            (
                format!("vlx.cluster={U} vlx.san=disk vlx.san_wait=0"),
                "vlx.san_wait=0 on the kernel command line: give whole seconds, 1 to 3600",
            ),
            (
                format!("vlx.cluster={U} vlx.san=disk vlx.san_wait=1m"),
                "vlx.san_wait=1m",
            ),
            (
                format!("vlx.cluster={U} vlx.san=disk vlx.san_wait=3601"),
                "vlx.san_wait=3601",
            ),
            ("vlx.san=disk".into(), "no vlx.cluster"),
            (format!("vlx.cluster={U}"), "no vlx.san"),
            ("vlx.cluster=nope vlx.san=disk".into(), "vlx.cluster=nope"),
            (format!("vlx.cluster={U} vlx.san=nfs"), "use disk or iscsi"),
            (
                format!("vlx.cluster={U} vlx.san=disk vlx.sanx=1"),
                "vlx.sanx",
            ),
            (
                format!("vlx.cluster={U} vlx.san=disk vlx.sif=eth0"),
                "vlx.sif is an iSCSI parameter",
            ),
            (
                format!("vlx.cluster={U} vlx.san=iscsi vlx.sif=eth0 vlx.ivid=x"),
                "needs vlx.storage_ip",
            ),
            (
                format!("vlx.cluster={U} vlx.san=iscsi vlx.storage_ip=1.2.3.4 vlx.ivid=x"),
                "needs vlx.sif",
            ),
            (
                format!("vlx.cluster={U} vlx.san=iscsi vlx.storage_ip=1.2.3.4 vlx.sif=eth0"),
                "needs vlx.ivid",
            ),
            (
                format!(
                    "vlx.cluster={U} vlx.san=iscsi vlx.storage_ip=1.2.3 vlx.sif=eth0 vlx.ivid=x"
                ),
                "vlx.storage_ip=1.2.3",
            ),
            (
                format!(
                    "vlx.cluster={U} vlx.san=iscsi vlx.storage_ip=1.2.3.4 vlx.storage_port=0 vlx.sif=eth0 vlx.ivid=x"
                ),
                "vlx.storage_port=0",
            ),
            (
                format!(
                    "vlx.cluster={U} vlx.san=iscsi vlx.storage_ip=1.2.3.4 vlx.sif=eth0 vlx.sifip=auto vlx.ivid=x"
                ),
                "vlx.sifip=auto",
            ),
            (
                format!(
                    "vlx.cluster={U} vlx.san=iscsi vlx.storage_ip=1.2.3.4 vlx.sif=eth0 vlx.sifm=a,,b vlx.ivid=x"
                ),
                "vlx.sifm=a,,b",
            ),
        ];
        for (line, want) in cases {
            let err = parse(&line).expect_err(&line).to_string();
            assert!(err.contains(want), "{line}: {err}");
        }
    }

    #[test]
    fn words_split_like_the_kernel() {
        assert_eq!(
            words("  a=1  b=\"x y\" \"c\"=2 "),
            vec!["a=1", "b=x y", "c=2"]
        );
        assert_eq!(words(""), Vec::<String>::new());
    }
}
