//! The installer environment's `vlx.*` kernel arguments, as install media
//! write them ([`write`], from `vlx-image media`) or an administrator edits
//! them at the boot loader; the installer environment reads them
//! ([`parse`]).
//!
//! | argument | meaning |
//! |---|---|
//! | `vlx.media=<sha256>` | the payload is the one whose `vlx-media.json` has this sha256 (required) |
//! | `vlx.profile=<name>` | the cluster profile to install, by name |
//! | `vlx.target=<disk>` | the SAN: `/dev/NAME`, `NAME`, `serial:SERIAL`, `wwn:WWN`, `by-id:ID`, or an iSCSI LUN `iscsi://PORTAL[:PORT]/IQN[/LUN]` ([`super::san_url`], as `vlx-install --san` takes it) |
//! | `vlx.sif=<name\|MAC>` | iSCSI target: the storage NIC, by interface name (`eth1`) or MAC address (required) |
//! | `vlx.sifip=<addr\|dhcp>` | iSCSI target: its IPv4 address, or `dhcp` (required) |
//! | `vlx.sifnm=<netmask>` | iSCSI target: its netmask (required with an address) |
//! | `vlx.sifm=<mod,...>` | iSCSI target: modules the NIC needs, loaded before it is brought up |
//! | `vlx.unattended=1` | ask nothing: needs `vlx.profile` (unless the media carry one) and `vlx.target` |
//! | `vlx.wipe=1` | overwrite a target that holds something else |
//!
//! The storage NIC's keys are the seed's, as the blades' line spells them
//! ([`super::node`]); the environment takes no `ip=` or `rd.iscsi.*`, so
//! that there is one spelling. They are errors without an iSCSI target.
//! CHAP is never on the line: the environment reads it from the payload
//! (`contracts::media::CHAP_FILE`).
//!
//! Other `vlx.` arguments are errors (a typo must not turn an unattended
//! install into a guided one that waits forever); the rest of the line is
//! the kernel's.

use std::fmt;
use std::net::Ipv4Addr;

use super::iscsi::{Address, check_iface, parse_modules};
use super::san_url::{IscsiUrl, SCHEME};
use super::{PREFIX, ours, word};

/// What the kernel command line asks of the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaArgs {
    pub media: String,
    pub profile: Option<String>,
    pub target: Option<Target>,
    /// The storage NIC: present exactly when the target is iSCSI.
    pub storage: Option<StorageNic>,
    pub unattended: bool,
    pub wipe: bool,
}

/// The SAN `vlx.target=` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A disk the blade sees, in any form `vlx-install --san` takes for a
    /// local disk (`/dev/NAME`, `NAME`, `serial:`, `wwn:`, `by-id:`).
    Disk(String),
    /// An iSCSI LUN, logged in to through [`StorageNic`].
    Iscsi(IscsiUrl),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Disk(d) => f.write_str(d),
            Target::Iscsi(u) => write!(f, "{u}"),
        }
    }
}

/// The NIC the environment logs in to an iSCSI target through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageNic {
    pub nic: Nic,
    /// [`Address::Dhcp`] or [`Address::Static`] with its netmask; never
    /// [`Address::Firmware`].
    pub address: Address,
    /// Modules the NIC needs, loaded before it is brought up.
    pub modules: Vec<String>,
}

/// A NIC by interface name or by MAC address (lower case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Nic {
    Name(String),
    Mac(String),
}

impl fmt::Display for Nic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Nic::Name(n) | Nic::Mac(n) => f.write_str(n),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmdlineError {
    #[error(
        "the kernel command line has no vlx.media=<sha256>: boot the install media's own entry"
    )]
    NoMedia,
    #[error("vlx.media={0}: not a sha256 (64 hex digits)")]
    BadMedia(String),
    #[error("{key}={value}: 0 or 1")]
    BadFlag { key: String, value: String },
    #[error("{key}={value}: {reason}")]
    Bad {
        key: String,
        value: String,
        reason: String,
    },
    #[error("vlx.target={0} is an iSCSI LUN: the kernel command line needs {1} too")]
    Missing(String, &'static str),
    #[error("{0} is for an iSCSI target (vlx.target=iscsi://...), and there is none")]
    NotIscsi(String),
    #[error(
        "{0}: not an argument of the installer environment (vlx.media, vlx.profile, vlx.target, \
         vlx.sif, vlx.sifip, vlx.sifnm, vlx.sifm, vlx.unattended, vlx.wipe)"
    )]
    Unknown(String),
    #[error("{0}= is empty")]
    Empty(String),
}

/// The words a boot entry carries for `args`, `vlx.media=` first; the
/// flags only when set. [`parse`] reads them back to the same value.
pub fn write(args: &MediaArgs) -> Vec<String> {
    let mut w = vec![word("media", &args.media)];
    if args.unattended {
        w.push(word("unattended", 1));
    }
    if let Some(p) = &args.profile {
        w.push(word("profile", p));
    }
    if let Some(t) = &args.target {
        w.push(word("target", t));
    }
    if let Some(s) = &args.storage {
        w.push(word("sif", &s.nic));
        match &s.address {
            Address::Static { addr, netmask, .. } => {
                w.push(word("sifip", addr));
                if let Some(nm) = netmask {
                    w.push(word("sifnm", nm));
                }
            }
            Address::Dhcp | Address::Firmware => w.push(word("sifip", "dhcp")),
        }
        if !s.modules.is_empty() {
            w.push(word("sifm", s.modules.join(",")));
        }
    }
    if args.wipe {
        w.push(word("wipe", 1));
    }
    w
}

/// Reads a `vlx.target=` value: an `iscsi://` URL, else a disk. The error
/// is the reason alone.
pub fn parse_target(v: &str) -> Result<Target, String> {
    if v.starts_with(SCHEME.trim_end_matches("//")) {
        return v.parse().map(Target::Iscsi);
    }
    Ok(Target::Disk(v.to_owned()))
}

/// Reads a `vlx.sif=` value: a MAC address (six hex pairs with `:`), else
/// an interface name.
pub fn parse_nic(v: &str) -> Result<Nic, String> {
    let pairs: Vec<&str> = v.split(':').collect();
    if pairs.len() == 6
        && pairs
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Ok(Nic::Mac(v.to_ascii_lowercase()));
    }
    check_iface(v).map_err(|r| format!("{r} nor a MAC address"))?;
    Ok(Nic::Name(v.to_owned()))
}

/// Parses `/proc/cmdline`; a key given twice takes its last value.
pub fn parse(line: &str) -> Result<MediaArgs, CmdlineError> {
    let mut a = MediaArgs::default();
    let mut media = None;
    let (mut sif, mut sifip, mut sifnm, mut sifm) = (None, None, None, None);
    let mut storage_word = None;
    for (key, value) in ours(line) {
        let full = format!("{PREFIX}{key}");
        let flag = |v: &str| match v {
            "1" | "" => Ok(true),
            "0" => Ok(false),
            _ => Err(CmdlineError::BadFlag {
                key: full.clone(),
                value: v.to_owned(),
            }),
        };
        let text = |v: &str| {
            if v.is_empty() {
                Err(CmdlineError::Empty(full.clone()))
            } else {
                Ok(v.to_owned())
            }
        };
        let bad = |reason: String| CmdlineError::Bad {
            key: full.clone(),
            value: value.clone(),
            reason,
        };
        if matches!(key.as_str(), "sif" | "sifip" | "sifnm" | "sifm") {
            storage_word.get_or_insert_with(|| full.clone());
        }
        match key.as_str() {
            "media" => media = Some(value),
            "profile" => a.profile = Some(text(&value)?),
            "target" => a.target = Some(parse_target(&text(&value)?).map_err(bad)?),
            "sif" => sif = Some(parse_nic(&text(&value)?).map_err(bad)?),
            "sifip" => {
                sifip = Some(match text(&value)?.as_str() {
                    "dhcp" => None,
                    v => Some(
                        v.parse::<Ipv4Addr>()
                            .map_err(|_| bad("not an IPv4 address (or dhcp)".into()))?,
                    ),
                })
            }
            "sifnm" => {
                let nm = text(&value)?
                    .parse::<Ipv4Addr>()
                    .map_err(|_| bad("not an IPv4 netmask".into()))?;
                if u32::from(nm).leading_ones() != u32::from(nm).count_ones() {
                    return Err(bad("not a netmask (its ones must lead)".into()));
                }
                sifnm = Some(nm);
            }
            "sifm" => sifm = Some(parse_modules(&text(&value)?).map_err(bad)?),
            "unattended" => a.unattended = flag(&value)?,
            "wipe" => a.wipe = flag(&value)?,
            _ => return Err(CmdlineError::Unknown(full)),
        }
    }
    let media = media.ok_or(CmdlineError::NoMedia)?;
    if media.len() != 64 || !media.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CmdlineError::BadMedia(media));
    }
    a.media = media.to_ascii_lowercase();
    match &a.target {
        Some(Target::Iscsi(url)) => {
            let missing = |what| CmdlineError::Missing(url.to_string(), what);
            let nic = sif.ok_or_else(|| missing("vlx.sif=<NIC name or MAC>"))?;
            let address = match sifip.ok_or_else(|| missing("vlx.sifip=<address or dhcp>"))? {
                None if sifnm.is_some() => {
                    return Err(CmdlineError::Bad {
                        key: format!("{PREFIX}sifnm"),
                        value: sifnm.map(|n| n.to_string()).unwrap_or_default(),
                        reason: "a netmask is for a fixed address, and vlx.sifip=dhcp".into(),
                    });
                }
                None => Address::Dhcp,
                Some(addr) => Address::Static {
                    addr,
                    netmask: Some(sifnm.ok_or_else(|| missing("vlx.sifnm=<netmask>"))?),
                    gateway: None,
                },
            };
            a.storage = Some(StorageNic {
                nic,
                address,
                modules: sifm.unwrap_or_default(),
            });
        }
        _ => {
            if let Some(w) = storage_word {
                return Err(CmdlineError::NotIscsi(w));
            }
        }
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "7eb47bfda9775cb92283a31c25fbd6054649e9ccf95fa89e8fc93bca138d2f24";

    #[test]
    fn reads_what_media_write() {
        let a = parse(&format!(
            "BOOT_IMAGE=/vlx/install/vmlinuz vlx.media={SHA} console=ttyS0,115200 vlx.unattended=1 vlx.profile=demo vlx.target=/dev/vdb"
        ))
        .unwrap();
        assert_eq!(
            a,
            MediaArgs {
                media: SHA.into(),
                profile: Some("demo".into()),
                target: Some(Target::Disk("/dev/vdb".into())),
                storage: None,
                unattended: true,
                wipe: false,
            }
        );
        let a = parse(&format!("vlx.media={SHA} vlx.wipe vlx.unattended=0")).unwrap();
        assert!(a.wipe && !a.unattended);
    }

    #[test]
    fn reads_back_what_it_writes() {
        let all = MediaArgs {
            media: SHA.into(),
            profile: Some("demo".into()),
            target: Some(Target::Disk("serial:SAN0".into())),
            storage: None,
            unattended: true,
            wipe: true,
        };
        let guided = MediaArgs {
            media: SHA.into(),
            ..MediaArgs::default()
        };
        let iscsi = MediaArgs {
            media: SHA.into(),
            profile: Some("eurotech".into()),
            target: Some(Target::Iscsi(
                "iscsi://10.10.0.250:3260/iqn.2007-01.it.unipi.di:virtualinux.san0/1"
                    .parse()
                    .unwrap(),
            )),
            storage: Some(StorageNic {
                nic: Nic::Mac("52:54:00:aa:00:01".into()),
                address: Address::Static {
                    addr: Ipv4Addr::new(10, 10, 0, 1),
                    netmask: Some(Ipv4Addr::new(255, 255, 255, 0)),
                    gateway: None,
                },
                modules: vec!["virtio_net".into()],
            }),
            unattended: true,
            wipe: false,
        };
        let dhcp = MediaArgs {
            storage: Some(StorageNic {
                nic: Nic::Name("ib0".into()),
                address: Address::Dhcp,
                modules: Vec::new(),
            }),
            ..iscsi.clone()
        };
        for a in [all, guided, iscsi, dhcp] {
            let line = format!("console=ttyS0 {} quiet", write(&a).join(" "));
            assert_eq!(parse(&line), Ok(a), "{line}");
        }
    }

    #[test]
    fn errors_name_the_argument() {
        assert_eq!(parse("quiet"), Err(CmdlineError::NoMedia));
        assert_eq!(
            parse("vlx.media=abc"),
            Err(CmdlineError::BadMedia("abc".into()))
        );
        assert_eq!(
            parse(&format!("vlx.media={SHA} vlx.unatended=1")),
            Err(CmdlineError::Unknown("vlx.unatended".into()))
        );
        assert!(matches!(
            parse(&format!("vlx.media={SHA} vlx.unattended=yes")),
            Err(CmdlineError::BadFlag { .. })
        ));
        assert_eq!(
            parse(&format!("vlx.media={SHA} vlx.target=")),
            Err(CmdlineError::Empty("vlx.target".into()))
        );
    }

    #[test]
    fn an_iscsi_target_with_its_storage_nic() {
        let a = parse(&format!(
            "vlx.media={SHA} vlx.target=iscsi://10.10.0.250/iqn.2007-01.x:san0 vlx.sif=52:54:00:AA:00:01 \
             vlx.sifip=10.10.0.1 vlx.sifnm=255.255.255.0 vlx.sifm=virtio_net,e1000e"
        ))
        .unwrap();
        let Some(Target::Iscsi(url)) = &a.target else {
            panic!("{:?}", a.target)
        };
        assert_eq!(
            url.to_string(),
            "iscsi://10.10.0.250:3260/iqn.2007-01.x:san0"
        );
        let s = a.storage.unwrap();
        assert_eq!(s.nic, Nic::Mac("52:54:00:aa:00:01".into()));
        assert_eq!(s.modules, ["virtio_net", "e1000e"]);
        assert_eq!(
            s.address,
            Address::Static {
                addr: Ipv4Addr::new(10, 10, 0, 1),
                netmask: Some(Ipv4Addr::new(255, 255, 255, 0)),
                gateway: None
            }
        );
        let a = parse(&format!(
            "vlx.media={SHA} vlx.target=iscsi://10.10.0.250/iqn.x vlx.sif=eth1 vlx.sifip=dhcp"
        ))
        .unwrap();
        assert_eq!(a.storage.unwrap().address, Address::Dhcp);
    }

    #[test]
    fn iscsi_errors_name_the_argument() {
        let t = "vlx.target=iscsi://10.10.0.250/iqn.x";
        for (rest, want) in [
            (
                "vlx.target=iscsi://san.example/iqn.x".to_owned(),
                "vlx.target=iscsi://san.example/iqn.x: iscsi://san.example/iqn.x: portal san.example is not an IP address",
            ),
            (
                "vlx.target=iscsi://10.0.0.1".to_owned(),
                "vlx.target=iscsi://10.0.0.1: iscsi://10.0.0.1: no target name",
            ),
            (
                format!("{t} vlx.sifip=dhcp"),
                "needs vlx.sif=<NIC name or MAC>",
            ),
            (
                format!("{t} vlx.sif=eth1"),
                "needs vlx.sifip=<address or dhcp>",
            ),
            (
                format!("{t} vlx.sif=eth1 vlx.sifip=10.10.0.1"),
                "needs vlx.sifnm=<netmask>",
            ),
            (
                format!("{t} vlx.sif=eth1 vlx.sifip=10.10.0.300 vlx.sifnm=255.255.255.0"),
                "vlx.sifip=10.10.0.300: not an IPv4 address",
            ),
            (
                format!("{t} vlx.sif=eth1 vlx.sifip=10.10.0.1 vlx.sifnm=255.0.255.0"),
                "vlx.sifnm=255.0.255.0: not a netmask",
            ),
            (
                format!("{t} vlx.sif=eth1 vlx.sifip=dhcp vlx.sifnm=255.255.255.0"),
                "vlx.sifnm=255.255.255.0: a netmask is for a fixed address",
            ),
            (
                format!("{t} vlx.sif=a/b vlx.sifip=dhcp"),
                "vlx.sif=a/b: a/b is not an interface name nor a MAC address",
            ),
            (
                format!("{t} vlx.sif=eth1 vlx.sifip=dhcp vlx.sifm=a,,b"),
                "vlx.sifm=a,,b",
            ),
            (
                "vlx.target=/dev/vdb vlx.sif=eth1".to_owned(),
                "vlx.sif is for an iSCSI target",
            ),
            (
                "vlx.sifip=dhcp".to_owned(),
                "vlx.sifip is for an iSCSI target",
            ),
        ] {
            let line = format!("vlx.media={SHA} {rest}");
            let err = parse(&line).expect_err(&line).to_string();
            assert!(err.contains(want), "{line}: {err}");
        }
    }
}
