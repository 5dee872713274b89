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
//! | `rd.iscsi.firmware=1` | iSCSI: written instead of the target and interface words when the profile's `sifip` is `ibft` (the boot ROM's iBFT says them per blade) |
//! | `vlx.ivid` | iSCSI: the target name |
//! | `vlx.san_wait=SECONDS` | the admin's: how long to wait for the SAN (1 to 3600) |
//!
//! Besides these, [`parse`] reads an iSCSI root in the spellings of dracut,
//! Debian initramfs-tools, RFC 4173 and the firmware's iBFT
//! ([`super::iscsi`], where the mapping is); any of them makes the
//! transport iSCSI without `vlx.san=iscsi`. [`write`] writes the `vlx.*`
//! spelling only.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use super::error::CmdlineError;
pub use super::iscsi::{DEFAULT_ISCSI_PORT, FIRMWARE_WORD, Iscsi, SIFIP_IBFT};
use super::iscsi::{IscsiBoot, Scan, VLX_KEYS};
use super::{PREFIX, word, words};

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

/// How the command line tells a blade to reach the SAN, whatever the
/// spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SanBoot {
    Disk,
    Iscsi(IscsiBoot),
}

impl From<&Transport> for SanBoot {
    /// What [`write`]'s words for `t` read back as.
    fn from(t: &Transport) -> SanBoot {
        match t {
            Transport::Disk => SanBoot::Disk,
            Transport::Iscsi(i) => SanBoot::Iscsi(IscsiBoot::from(i)),
        }
    }
}

/// What the command line tells the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootArgs {
    pub cluster: Uuid,
    pub san: SanBoot,
    /// `rd.driver.pre=`: modules to load with the initramfs's list, for
    /// either transport (an HBA's driver, say).
    pub pre_modules: Vec<String>,
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

/// The words the installer writes for a cluster and its transport, in this
/// order; [`parse`] reads them back to the same values.
pub fn write(cluster: Uuid, transport: &Transport) -> Vec<String> {
    let mut words = vec![word("cluster", cluster)];
    match transport {
        Transport::Disk => words.push(word("san", "disk")),
        Transport::Iscsi(i) if i.from_firmware() => {
            // The iBFT names target, address and interface per blade; a
            // target on the line too would be refused by the parser.
            words.push(word("san", "iscsi"));
            words.push(FIRMWARE_WORD.to_owned());
            if !i.sifm.is_empty() {
                words.push(word("sifm", i.sifm.join(",")));
            }
        }
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

fn bad(key: &str, value: &str, reason: impl Into<String>) -> CmdlineError {
    CmdlineError::Bad {
        key: format!("{PREFIX}{key}"),
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
/// `/proc/cmdline`), and an iSCSI root in any spelling of
/// [`super::iscsi`].
pub fn parse(line: &str) -> Result<BootArgs, CmdlineError> {
    let mut cluster = None;
    let mut san = None;
    let mut san_wait = None;
    let mut scan = Scan::default();
    for w in words(line) {
        let Some(rest) = w.strip_prefix(PREFIX) else {
            scan.word(&w)?;
            continue;
        };
        let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
        match key {
            "cluster" => cluster = Some(value.to_owned()),
            "san" => san = Some(value.to_owned()),
            SAN_WAIT => san_wait = Some(value.to_owned()),
            k if VLX_KEYS.contains(&k) => scan.vlx(k, value)?,
            k => {
                return Err(CmdlineError::Unknown {
                    key: k.to_owned(),
                    known: KEYS.join(", "),
                });
            }
        }
    }
    let cluster = cluster.ok_or(CmdlineError::NoCluster)?;
    let cluster = Uuid::parse_str(&cluster).map_err(|e| bad("cluster", &cluster, e.to_string()))?;
    let iscsi_word = scan.vlx.clone().or_else(|| scan.standard.clone());
    let pre_modules = std::mem::take(&mut scan.pre_modules);
    let san = match (san.as_deref(), iscsi_word) {
        (Some("disk"), Some(w)) => return Err(CmdlineError::NotForDisk(w)),
        (Some("disk"), None) => SanBoot::Disk,
        (Some("iscsi"), _) => SanBoot::Iscsi(scan.finish()?),
        (None, Some(_)) if scan.standard.is_some() => SanBoot::Iscsi(scan.finish()?),
        (None, _) => return Err(CmdlineError::NoTransport),
        (Some(other), _) => return Err(bad("san", other, "use disk or iscsi")),
    };
    let san_wait = match san_wait {
        None => DEFAULT_SAN_WAIT,
        Some(v) => parse_san_wait(&v).map_err(|reason| bad(SAN_WAIT, &v, reason))?,
    };
    Ok(BootArgs {
        cluster,
        san,
        pre_modules,
        san_wait,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

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
                    san: SanBoot::from(&want),
                    pre_modules: Vec::new(),
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
                "needs the target's address: vlx.storage_ip=",
            ),
            (
                format!("vlx.cluster={U} vlx.san=iscsi vlx.storage_ip=1.2.3.4 vlx.ivid=x"),
                "needs the storage interface: vlx.sif=",
            ),
            (
                format!("vlx.cluster={U} vlx.san=iscsi vlx.storage_ip=1.2.3.4 vlx.sif=eth0"),
                "needs the target's name: vlx.ivid=",
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
        let firmware = iscsi(|i| {
            i.sifip = SIFIP_IBFT.into();
            i.sifm = vec!["virtio_net".into()];
        });
        for t in [Transport::Disk, iscsi(|_| {}), full, firmware.clone()] {
            let line = format!("quiet {} console=ttyS0", write(uuid(), &t).join(" "));
            let back = parse(&line).unwrap();
            assert_eq!(back.san, SanBoot::from(&t), "{line}");
            assert_eq!(back.cluster, uuid());
        }
        assert_eq!(
            write(uuid(), &Transport::Disk),
            [format!("vlx.cluster={U}"), "vlx.san=disk".into()]
        );
        // From the firmware: no target, address or interface on the line.
        assert_eq!(
            write(uuid(), &firmware),
            [
                format!("vlx.cluster={U}"),
                "vlx.san=iscsi".into(),
                "rd.iscsi.firmware=1".into(),
                "vlx.sifm=virtio_net".into()
            ]
        );
    }
}
