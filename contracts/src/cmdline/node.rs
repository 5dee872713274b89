//! What every blade boots with: which cluster it belongs to and how it
//! reaches the SAN. `cluster` writes the line from the plan ([`write`]);
//! the node agent reads it ([`parse`]).
//!
//! | key | meaning |
//! |---|---|
//! | `vlx.cluster=<uuid>` | the cluster (required) |
//! | `vlx.san=disk\|iscsi` | the SAN transport (required) |
//! | `vlx.storage_ip`, `vlx.storage_port` | iSCSI: the portal (port 3260 without it) |
//! | `vlx.sif`, `vlx.sifip`, `vlx.sifnm`, `vlx.sifm` | iSCSI: the storage interface, `dhcp` or its address, netmask, modules |
//! | `vlx.ivid` | iSCSI: the target name |
//! | `vlx.san_wait=SECONDS` | the admin's: how long to wait for the SAN (1 to 3600) |

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ours, word};

/// How a blade reaches the SAN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "transport", rename_all = "lowercase")]
pub enum Transport {
    /// The LUN is a local block device on every blade (FC/SAS, or the rig's
    /// shared virtio disk).
    Disk,
    /// Every blade logs in to an iSCSI target with the seed's parameters.
    Iscsi(Iscsi),
}

/// The seed's iSCSI boot parameters, passed on the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Iscsi {
    pub storage_ip: Ipv4Addr,
    pub storage_port: u16,
    /// Storage interface, e.g. `eth0` or `ib0`.
    pub sif: String,
    /// `dhcp`, or one fixed address (a single-blade setup).
    pub sifip: String,
    pub sifnm: Option<Ipv4Addr>,
    /// Modules the storage interface needs, loaded before it is brought up.
    pub sifm: Vec<String>,
    /// Target name (IQN).
    pub ivid: String,
}

/// The iSCSI port without `vlx.storage_port=` (IANA's).
pub const DEFAULT_ISCSI_PORT: u16 = 3260;

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
pub const MAX_SAN_WAIT_SECS: u64 = 3600;

/// The one key of the line that is the administrator's rather than the
/// installer's (in a profile's `boot.kernel_args`, or typed at a boot
/// prompt).
pub const SAN_WAIT: &str = "san_wait";

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

/// Every key of the line, without the `vlx.` prefix.
pub const KEYS: &[&str] = &[
    "cluster",
    "san",
    "storage_ip",
    "storage_port",
    "sif",
    "sifip",
    "sifnm",
    "sifm",
    "ivid",
    SAN_WAIT,
];

/// Keys that are not about the transport: valid with either.
const ANY_TRANSPORT: &[&str] = &["cluster", "san", SAN_WAIT];

/// The words the installer writes for a cluster and its transport, in this
/// order; [`parse`] reads them back to the same values.
pub fn write(cluster: Uuid, transport: &Transport) -> Vec<String> {
    let mut words = vec![word("cluster", cluster)];
    match transport {
        Transport::Disk => words.push(word("san", "disk")),
        Transport::Iscsi(i) => {
            words.push(word("san", "iscsi"));
            words.push(word("storage_ip", i.storage_ip));
            words.push(word("storage_port", i.storage_port));
            words.push(word("sif", &i.sif));
            words.push(word("sifip", &i.sifip));
            if let Some(nm) = i.sifnm {
                words.push(word("sifnm", nm));
            }
            if !i.sifm.is_empty() {
                words.push(word("sifm", i.sifm.join(",")));
            }
            words.push(word("ivid", &i.ivid));
        }
    }
    words
}

/// The `vlx.` keys and their values, last value winning.
fn vlx_pairs(line: &str) -> Result<Vec<(String, String)>, CmdlineError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (key, value) in ours(line) {
        if !KEYS.contains(&key.as_str()) {
            return Err(CmdlineError::Unknown(key));
        }
        pairs.retain(|(k, _)| *k != key);
        pairs.push((key, value));
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

/// Reads a `vlx.san_wait=` value: whole seconds, 1 to [`MAX_SAN_WAIT_SECS`].
/// The error says what would be valid.
pub fn parse_san_wait(value: &str) -> Result<Duration, String> {
    match value.parse::<u64>() {
        Ok(n) if (1..=MAX_SAN_WAIT_SECS).contains(&n) => Ok(Duration::from_secs(n)),
        _ => Err(format!("give whole seconds, 1 to {MAX_SAN_WAIT_SECS}")),
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
    let san_wait = match get(SAN_WAIT) {
        None => DEFAULT_SAN_WAIT,
        Some(v) => parse_san_wait(v).map_err(|reason| bad(SAN_WAIT, v, reason))?,
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
        None => DEFAULT_ISCSI_PORT,
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
    fn reads_back_what_it_writes() {
        let full = iscsi(|i| {
            i.sifnm = Some(Ipv4Addr::new(255, 255, 255, 0));
            i.sifm = vec!["mlx4_core".into(), "ib_ipoib".into()];
            i.sifip = "10.10.0.7".into();
        });
        for t in [Transport::Disk, iscsi(|_| {}), full] {
            let line = format!("quiet {} console=ttyS0", write(uuid(), &t).join(" "));
            let back = parse(&line).unwrap();
            assert_eq!(back.transport, t, "{line}");
            assert_eq!(back.cluster, uuid());
        }
        assert_eq!(
            write(uuid(), &Transport::Disk),
            [format!("vlx.cluster={U}"), "vlx.san=disk".into()]
        );
    }
}
