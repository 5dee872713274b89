//! The firmware's iSCSI Boot Firmware Table (iBFT) as the kernel's
//! `iscsi_ibft` module shows it under `/sys/firmware/ibft/`: the initiator
//! name, the boot NICs (`ethernetN/`) and the targets (`targetN/`), which a
//! boot ROM (an iSCSI HBA, or iPXE's `sanboot`) fills from the settings it
//! stores.
//!
//! The agent reads the table to bring up the right NIC and to say on the
//! console what it logs in to; the login itself is `iscsistart -b`, which
//! reads the table again, CHAP secrets included. The secrets
//! (`chap-secret`, `rev-chap-secret`) are never read here, so they never
//! pass through the agent's memory, arguments or console.

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use cluster::MacAddr;

/// Where the kernel shows the table.
pub const SYSFS: &str = "/sys/firmware/ibft";

/// The module that shows it.
pub const MODULE: &str = "iscsi_ibft";

/// One boot NIC of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub index: u32,
    pub mac: MacAddr,
    /// `None` when the firmware took its address by DHCP.
    pub fixed: Option<Fixed>,
}

/// A fixed IPv4 configuration of a boot NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixed {
    pub addr: Ipv4Addr,
    pub netmask: Option<Ipv4Addr>,
    pub gateway: Option<Ipv4Addr>,
}

/// CHAP as the table says it is set, without its secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chap {
    None,
    OneWay,
    Mutual,
}

/// One target of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub index: u32,
    pub addr: IpAddr,
    pub port: u16,
    pub name: String,
    /// As the kernel prints it: the eight LUN bytes in hex.
    pub lun: String,
    pub chap: Chap,
    /// The NIC (`ethernetN`) the target is reached through.
    pub nic: u32,
}

/// The table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ibft {
    pub initiator: String,
    pub nics: Vec<Nic>,
    pub targets: Vec<Target>,
}

#[derive(Debug, thiserror::Error)]
pub enum IbftError {
    #[error(
        "{SYSFS} does not exist: the firmware published no iBFT (boot from an iSCSI boot ROM, \
         e.g. iPXE sanboot, or drop rd.iscsi.firmware=1), or the initramfs lacks {MODULE}"
    )]
    Absent,
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {value:?} is not {what}")]
    Bad {
        path: PathBuf,
        value: String,
        what: &'static str,
    },
    #[error("the iBFT in {0} names no target")]
    NoTarget(PathBuf),
}

/// An address the table leaves unset reads as all zeros.
fn unset(a: &IpAddr) -> bool {
    a.is_unspecified()
}

/// The table's IP addresses: IPv4 or IPv6 text, as the kernel prints them.
fn ip(path: &Path, v: &str) -> Result<IpAddr, IbftError> {
    v.parse().map_err(|_| IbftError::Bad {
        path: path.to_owned(),
        value: v.to_owned(),
        what: "an IP address",
    })
}

fn v4(path: &Path, v: &str) -> Result<Option<Ipv4Addr>, IbftError> {
    match ip(path, v)? {
        a if unset(&a) => Ok(None),
        IpAddr::V4(a) => Ok(Some(a)),
        IpAddr::V6(_) => Err(IbftError::Bad {
            path: path.to_owned(),
            value: v.to_owned(),
            what: "an IPv4 address (the storage interface takes IPv4)",
        }),
    }
}

/// Reads `dir/name`, trimmed; `None` when the kernel did not make the file
/// (it shows only the fields the firmware set).
fn field(dir: &Path, name: &str) -> Result<Option<String>, IbftError> {
    let path = dir.join(name);
    match fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s.trim().to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(IbftError::Read { path, source }),
    }
}

fn need(dir: &Path, name: &str) -> Result<String, IbftError> {
    field(dir, name)?.ok_or_else(|| IbftError::Read {
        path: dir.join(name),
        source: io::Error::new(io::ErrorKind::NotFound, "the firmware left it out"),
    })
}

fn number<T: std::str::FromStr>(
    dir: &Path,
    name: &str,
    what: &'static str,
) -> Result<T, IbftError> {
    let v = need(dir, name)?;
    v.parse().map_err(|_| IbftError::Bad {
        path: dir.join(name),
        value: v,
        what,
    })
}

/// The `origin` of an address that DHCP gave (the kernel prints the
/// table's IP prefix origin: 3 is DHCP).
const ORIGIN_DHCP: &str = "3";

fn nic(dir: &Path) -> Result<Nic, IbftError> {
    let mac_text = need(dir, "mac")?;
    let mac = mac_text.parse::<MacAddr>().map_err(|_| IbftError::Bad {
        path: dir.join("mac"),
        value: mac_text.clone(),
        what: "a MAC address",
    })?;
    let index = number(dir, "index", "an index")?;
    let dhcp = field(dir, "origin")?.as_deref() == Some(ORIGIN_DHCP);
    let addr = match field(dir, "ip-addr")? {
        Some(a) => v4(&dir.join("ip-addr"), &a)?,
        None => None,
    };
    let fixed = match (dhcp, addr) {
        (false, Some(addr)) => Some(Fixed {
            addr,
            netmask: match field(dir, "subnet-mask")? {
                Some(m) => v4(&dir.join("subnet-mask"), &m)?,
                None => None,
            },
            gateway: match field(dir, "gateway")? {
                Some(g) => v4(&dir.join("gateway"), &g)?,
                None => None,
            },
        }),
        _ => None,
    };
    Ok(Nic { index, mac, fixed })
}

fn target(dir: &Path) -> Result<Target, IbftError> {
    let addr_text = need(dir, "ip-addr")?;
    let chap = match field(dir, "chap-type")?.as_deref() {
        None | Some("0") => Chap::None,
        Some("1") => Chap::OneWay,
        Some("2") => Chap::Mutual,
        Some(other) => {
            return Err(IbftError::Bad {
                path: dir.join("chap-type"),
                value: other.to_owned(),
                what: "a CHAP type (0 none, 1 one-way, 2 mutual)",
            });
        }
    };
    Ok(Target {
        index: number(dir, "index", "an index")?,
        addr: ip(&dir.join("ip-addr"), &addr_text)?,
        port: number(dir, "port", "a port")?,
        name: need(dir, "target-name")?,
        lun: field(dir, "lun")?.unwrap_or_default(),
        chap,
        nic: number(dir, "nic-assoc", "a NIC index")?,
    })
}

/// Reads the table under `root` (normally [`SYSFS`]), NICs and targets in
/// index order.
pub fn read(root: &Path) -> Result<Ibft, IbftError> {
    if !root.is_dir() {
        return Err(IbftError::Absent);
    }
    let initiator = need(&root.join("initiator"), "initiator-name")?;
    let mut names: Vec<String> = fs::read_dir(root)
        .map_err(|source| IbftError::Read {
            path: root.to_owned(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    let mut nics = Vec::new();
    let mut targets = Vec::new();
    for n in &names {
        if n.starts_with("ethernet") {
            nics.push(nic(&root.join(n))?);
        } else if n.starts_with("target") {
            targets.push(target(&root.join(n))?);
        }
    }
    if targets.is_empty() {
        return Err(IbftError::NoTarget(root.to_owned()));
    }
    nics.sort_by_key(|n| n.index);
    targets.sort_by_key(|t| t.index);
    Ok(Ibft {
        initiator,
        nics,
        targets,
    })
}

impl Ibft {
    /// The NICs the other targets are reached through, besides the boot
    /// NIC: a second storage NIC to another portal of the target (iPXE
    /// `sanboot` with several URIs describes each path it opened).
    pub fn other_nics(&self) -> Vec<&Nic> {
        let boot = self.boot_nic().map(|n| n.index);
        let mut v: Vec<&Nic> = self
            .targets
            .iter()
            .filter_map(|t| self.nics.iter().find(|n| n.index == t.nic))
            .filter(|n| Some(n.index) != boot)
            .collect();
        v.dedup_by_key(|n| n.index);
        v
    }

    /// The NIC the first target is reached through.
    pub fn boot_nic(&self) -> Option<&Nic> {
        let t = self.targets.first()?;
        self.nics
            .iter()
            .find(|n| n.index == t.nic)
            .or(self.nics.first())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table as `iscsi_ibft` shows it for iPXE's sanboot with mutual
    /// CHAP and a fixed address.
    fn table(root: &Path, origin: &str) {
        let w = |p: &str, v: &str| {
            let path = root.join(p);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, format!("{v}\n")).unwrap();
        };
        w("initiator/initiator-name", "iqn.2010-04.org.ipxe:blade1");
        w("initiator/index", "0");
        w("ethernet0/index", "0");
        w("ethernet0/mac", "52:54:00:77:00:0a");
        w("ethernet0/origin", origin);
        w("ethernet0/ip-addr", "10.10.0.7");
        w("ethernet0/subnet-mask", "255.255.255.0");
        w("ethernet0/gateway", "0.0.0.0");
        w("target0/index", "0");
        w("target0/ip-addr", "10.10.0.250");
        w("target0/port", "3260");
        w("target0/lun", "0000000000000000");
        w(
            "target0/target-name",
            "iqn.2007-01.it.unipi.di:virtualinux.san0",
        );
        w("target0/nic-assoc", "0");
        w("target0/chap-type", "2");
        w("target0/chap-name", "blade");
        w("target0/chap-secret", "never-read-here");
    }

    #[test]
    fn reads_what_a_boot_rom_publishes() {
        let t = tempfile::tempdir().unwrap();
        table(t.path(), "1");
        let ibft = read(t.path()).unwrap();
        assert_eq!(ibft.initiator, "iqn.2010-04.org.ipxe:blade1");
        let nic = ibft.boot_nic().unwrap();
        assert_eq!(nic.mac.to_string(), "52:54:00:77:00:0a");
        assert_eq!(
            nic.fixed,
            Some(Fixed {
                addr: Ipv4Addr::new(10, 10, 0, 7),
                netmask: Some(Ipv4Addr::new(255, 255, 255, 0)),
                gateway: None,
            })
        );
        let tg = &ibft.targets[0];
        assert_eq!(tg.chap, Chap::Mutual);
        assert_eq!(tg.port, 3260);
        assert_eq!(tg.name, "iqn.2007-01.it.unipi.di:virtualinux.san0");
        assert!(!format!("{ibft:?}").contains("never-read-here"));
    }

    #[test]
    fn a_second_path_has_its_own_nic_and_target() {
        let t = tempfile::tempdir().unwrap();
        table(t.path(), "1");
        let ibft = read(t.path()).unwrap();
        assert!(ibft.other_nics().is_empty());
        let w = |p: &str, v: &str| {
            let path = t.path().join(p);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, format!("{v}\n")).unwrap();
        };
        w("ethernet1/index", "1");
        w("ethernet1/mac", "52:54:5b:77:00:0a");
        w("ethernet1/origin", "1");
        w("ethernet1/ip-addr", "10.10.1.7");
        w("ethernet1/subnet-mask", "255.255.255.0");
        w("target1/index", "1");
        w("target1/ip-addr", "10.10.1.250");
        w("target1/port", "3260");
        w("target1/lun", "0000000000000000");
        w(
            "target1/target-name",
            "iqn.2007-01.it.unipi.di:virtualinux.san0",
        );
        w("target1/nic-assoc", "1");
        let ibft = read(t.path()).unwrap();
        assert_eq!(ibft.targets.len(), 2);
        assert_eq!(ibft.boot_nic().unwrap().index, 0);
        let other = ibft.other_nics();
        assert_eq!(other.len(), 1);
        assert_eq!(other[0].mac.to_string(), "52:54:5b:77:00:0a");
        assert_eq!(
            other[0].fixed.as_ref().map(|f| f.addr),
            Some(Ipv4Addr::new(10, 10, 1, 7))
        );
    }

    #[test]
    fn dhcp_origin_means_no_fixed_address() {
        let t = tempfile::tempdir().unwrap();
        table(t.path(), ORIGIN_DHCP);
        assert_eq!(read(t.path()).unwrap().nics[0].fixed, None);
    }

    #[test]
    fn a_missing_or_odd_table_is_named() {
        let t = tempfile::tempdir().unwrap();
        let err = read(&t.path().join("ibft")).unwrap_err().to_string();
        assert!(err.contains("published no iBFT"), "{err}");
        table(t.path(), "1");
        fs::write(t.path().join("target0/chap-type"), "7\n").unwrap();
        let err = read(t.path()).unwrap_err().to_string();
        assert!(
            err.contains("target0/chap-type") && err.contains("CHAP type"),
            "{err}"
        );
        fs::remove_dir_all(t.path().join("target0")).unwrap();
        let err = read(t.path()).unwrap_err().to_string();
        assert!(err.contains("names no target"), "{err}");
    }
}
