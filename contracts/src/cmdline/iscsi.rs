//! An iSCSI root in the spellings administrators already use, besides the
//! seed's `vlx.*` names: dracut's `rd.iscsi.*` and `netroot=iscsi:`, the
//! RFC 4173 root path `root=iscsi:`, Debian initramfs-tools' `iscsi_*`,
//! `ip=`, `rd.driver.pre=`, and the firmware's table (iBFT) with
//! `rd.iscsi.firmware=1`. Every spelling fills the same fields
//! ([`IscsiBoot`]); the words are read in order and the last word that sets
//! a field wins, as the kernel does for its own parameters, so a word typed
//! at a boot prompt wins over the stored line whatever its spelling.
//!
//! | field | `vlx.*` | dracut | Debian initramfs-tools | RFC 4173 root path |
//! |---|---|---|---|---|
//! | target address | `vlx.storage_ip` | `rd.iscsi.target.ip` | `iscsi_target_ip` | server |
//! | target port (3260) | `vlx.storage_port` | `rd.iscsi.target.port` | `iscsi_target_port` | port |
//! | target name | `vlx.ivid` | `rd.iscsi.target.name` | `iscsi_target_name` | targetname |
//! | portal group (1) | | `rd.iscsi.target.group` | `iscsi_target_group` | |
//! | LUN (0) | | | | LUN |
//! | initiator name | | `rd.iscsi.initiator` | `iscsi_initiator` | |
//! | from the firmware (iBFT) | | `rd.iscsi.firmware`, `rd.iscsi.ibft`, `iscsi_firmware` | `iscsi_auto` | |
//! | storage interface | `vlx.sif` | `ip=` | `ip=` | |
//! | its address | `vlx.sifip`, `vlx.sifnm` | `ip=` | `ip=` | |
//! | its modules | `vlx.sifm` | `rd.driver.pre=` (any transport) | | |
//! | CHAP | refused | `rd.iscsi.username`, `.password`, `.in.*`: refused | `iscsi_username`, `_password`, `_in_*`: refused | `user:password@`: refused |
//!
//! Secrets never go on the command line: `/proc/cmdline` is readable by
//! every user of the node and the boot tree that carries the line is
//! served to the whole network. CHAP comes from the firmware's iBFT
//! (`rd.iscsi.firmware=1`), which the boot ROM fills from its own store.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use super::error::CHAP_REFUSED;
use super::error::CmdlineError;

/// The seed's iSCSI boot parameters, passed on the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Iscsi {
    pub storage_ip: Ipv4Addr,
    pub storage_port: u16,
    /// Storage interface, e.g. `eth0` or `ib0`.
    pub sif: String,
    /// `dhcp`, one fixed address (a single-blade setup), or [`SIFIP_IBFT`]:
    /// each blade's boot ROM stores its own address and the target and
    /// publishes them in the iBFT (the cold start from the target).
    pub sifip: String,
    pub sifnm: Option<Ipv4Addr>,
    /// Modules the storage interface needs, loaded before it is brought up.
    pub sifm: Vec<String>,
    /// Target name (IQN).
    pub ivid: String,
}

/// `sifip` of a cluster whose blades boot from their boot ROM's stored
/// settings (iPXE `sanboot`, an HBA): the line then says
/// `rd.iscsi.firmware=1` and names no target, address or interface, which
/// the iBFT gives per blade.
pub const SIFIP_IBFT: &str = "ibft";

/// The word that takes the target, the address and CHAP from the iBFT.
pub const FIRMWARE_WORD: &str = "rd.iscsi.firmware=1";

impl Iscsi {
    /// Whether the blades take address, target and CHAP from the iBFT.
    pub fn from_firmware(&self) -> bool {
        self.sifip == SIFIP_IBFT
    }
}

/// The iSCSI port without `vlx.storage_port=` (IANA's).
pub const DEFAULT_ISCSI_PORT: u16 = 3260;

/// The portal group tag without `rd.iscsi.target.group=`: what target
/// implementations (tgt, LIO) give the first portal group.
pub const DEFAULT_TPGT: u16 = 1;

/// What the command line asks of an iSCSI boot, whatever its spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IscsiBoot {
    /// How the storage interface gets its address.
    pub net: Net,
    /// Modules the storage interface needs (`vlx.sifm`), loaded before it
    /// is brought up.
    pub nic_modules: Vec<String>,
    pub login: Login,
}

/// The storage interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Net {
    /// Its name; without one the node uses the only interface it has, or
    /// the one whose MAC the iBFT names.
    pub iface: Option<String>,
    pub address: Address,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Dhcp,
    Static {
        addr: Ipv4Addr,
        netmask: Option<Ipv4Addr>,
        gateway: Option<Ipv4Addr>,
    },
    /// From the iBFT's NIC section.
    Firmware,
}

/// Whom to log in to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// Every target of the firmware's iBFT, with its CHAP (`iscsistart -b`).
    Firmware,
    Target(Target),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub portal: Portal,
    /// The target name (IQN).
    pub name: String,
    pub lun: u16,
    pub tpgt: u16,
    /// The initiator name given on the line; without it the node derives
    /// one from the cluster and the storage interface's MAC.
    pub initiator: Option<String>,
}

/// An iSCSI portal: address and TCP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Portal {
    pub addr: IpAddr,
    pub port: u16,
}

impl fmt::Display for Portal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.port),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.port),
        }
    }
}

impl From<&Iscsi> for IscsiBoot {
    /// The seed's parameters as the profile holds them: what the `vlx.*`
    /// words the installer writes read back as.
    fn from(i: &Iscsi) -> IscsiBoot {
        if i.from_firmware() {
            return IscsiBoot {
                net: Net {
                    iface: None,
                    address: Address::Firmware,
                },
                nic_modules: i.sifm.clone(),
                login: Login::Firmware,
            };
        }
        let address = match i.sifip.parse::<Ipv4Addr>() {
            Ok(addr) => Address::Static {
                addr,
                netmask: i.sifnm,
                gateway: None,
            },
            Err(_) => Address::Dhcp,
        };
        IscsiBoot {
            net: Net {
                iface: Some(i.sif.clone()),
                address,
            },
            nic_modules: i.sifm.clone(),
            login: Login::Target(Target {
                portal: Portal {
                    addr: IpAddr::V4(i.storage_ip),
                    port: i.storage_port,
                },
                name: i.ivid.clone(),
                lun: 0,
                tpgt: DEFAULT_TPGT,
                initiator: None,
            }),
        }
    }
}

/// An RFC 4173 root path:
/// `iscsi:<server>:<protocol>:<port>:<LUN>:<targetname>`. The server is an
/// IPv4 address or an IPv6 address in brackets (the initramfs has no name
/// resolver); the protocol is empty or 6 (TCP); an empty port is 3260, an
/// empty LUN 0. The LUN is hexadecimal, as the RFC says (dracut and Debian
/// read it as decimal: the two agree on 0 to 9); vlx takes up to four hex
/// digits, the single-level LUNs targets hand out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootPath {
    pub server: IpAddr,
    pub port: Option<u16>,
    pub lun: u16,
    pub target: String,
}

/// What a root path starts with.
pub const ROOT_PATH_PREFIX: &str = "iscsi:";

impl fmt::Display for RootPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let server = match self.server {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("[{a}]"),
        };
        let port = self.port.map(|p| p.to_string()).unwrap_or_default();
        write!(
            f,
            "{ROOT_PATH_PREFIX}{server}::{port}:{:x}:{}",
            self.lun, self.target
        )
    }
}

impl FromStr for RootPath {
    type Err = String;

    /// The error is the reason alone; the caller names the word.
    fn from_str(s: &str) -> Result<RootPath, String> {
        let rest = s
            .strip_prefix(ROOT_PATH_PREFIX)
            .ok_or_else(|| format!("a root path starts with {ROOT_PATH_PREFIX}"))?;
        if rest.contains('@') {
            return Err(CHAP_REFUSED.into());
        }
        let (server, rest) = if let Some(v6) = rest.strip_prefix('[') {
            let (addr, after) = v6
                .split_once(']')
                .ok_or("an IPv6 server needs its closing ]")?;
            let after = after
                .strip_prefix(':')
                .ok_or("write iscsi:[IPv6]:protocol:port:LUN:target")?;
            let addr = addr
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| format!("[{addr}] is not an IPv6 address"))?;
            (IpAddr::V6(addr), after)
        } else {
            let (addr, after) = rest
                .split_once(':')
                .ok_or("write iscsi:server:protocol:port:LUN:target")?;
            if addr.is_empty() {
                return Err("the server is empty (discovery is not supported)".into());
            }
            let addr = addr.parse::<Ipv4Addr>().map_err(|_| {
                format!("server {addr} is not an IP address (the initramfs resolves no names)")
            })?;
            (IpAddr::V4(addr), after)
        };
        let mut fields = rest.splitn(4, ':');
        let (Some(protocol), Some(port), Some(lun), Some(target)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err("write iscsi:server:protocol:port:LUN:target".into());
        };
        if !protocol.is_empty() && protocol != "6" {
            return Err(format!(
                "protocol {protocol} is not TCP (6, or leave it empty)"
            ));
        }
        let port = match port {
            "" => None,
            p => Some(parse_port(p)?),
        };
        let lun = parse_lun(lun)?;
        check_name("target name", target)?;
        Ok(RootPath {
            server,
            port,
            lun,
            target: target.to_owned(),
        })
    }
}

/// Keys (before `=`) that would carry a CHAP user or secret.
pub const SECRET_KEYS: &[&str] = &[
    "rd.iscsi.username",
    "rd.iscsi.password",
    "rd.iscsi.in.username",
    "rd.iscsi.in.password",
    "iscsi_username",
    "iscsi_password",
    "iscsi_in_username",
    "iscsi_in_password",
];

/// Whether a command-line word would carry a CHAP credential (a key of
/// [`SECRET_KEYS`], or a root path with `user:password@`).
pub fn is_secret(word: &str) -> bool {
    let (key, value) = word.split_once('=').unwrap_or((word, ""));
    SECRET_KEYS.contains(&key)
        || (matches!(key, "root" | "netroot")
            && value.starts_with(ROOT_PATH_PREFIX)
            && value.contains('@'))
}

fn parse_port(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{p} is not a port (1 to 65535)")),
    }
}

fn parse_lun(l: &str) -> Result<u16, String> {
    if l.is_empty() {
        return Ok(0);
    }
    let digits: String = l.chars().filter(|c| *c != '-').collect();
    if digits.is_empty() || digits.len() > 4 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "LUN {l} is not up to four hexadecimal digits (RFC 4173; 0 when empty)"
        ));
    }
    u16::from_str_radix(&digits, 16).map_err(|e| format!("LUN {l}: {e}"))
}

fn check_name(what: &str, v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("the {what} has spaces or control characters"));
    }
    Ok(())
}

pub(crate) fn check_iface(v: &str) -> Result<(), String> {
    // IFNAMSIZ is 16 with the terminating NUL.
    if v.is_empty() || v.len() > 15 || v.contains(['/', ':']) || v.chars().any(char::is_whitespace)
    {
        return Err(format!("{v} is not an interface name"));
    }
    Ok(())
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "" | "1" | "yes" | "on" | "true" => Ok(true),
        "0" | "no" | "off" | "false" => Ok(false),
        _ => Err("write 1 or 0".into()),
    }
}

pub(crate) fn parse_modules(v: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = v.split(',').map(str::to_owned).collect();
    if names
        .iter()
        .any(|n| n.is_empty() || n.contains('/') || n.chars().any(char::is_whitespace))
    {
        return Err("write module names separated by commas".into());
    }
    Ok(names)
}

/// How an interface gets its address, as far as one word says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Method {
    Dhcp,
    Static(Ipv4Addr),
    Firmware,
}

/// What `ip=` says: the kernel's and dracut's forms
/// `ip=dhcp|on|any|ibft`, `ip=<iface>:dhcp|on|any|ibft` and
/// `ip=<client>:<peer>:<gateway>:<netmask>:<hostname>:<iface>:<autoconf>[:...]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct IpWord {
    iface: Option<String>,
    method: Option<Method>,
    netmask: Option<Ipv4Addr>,
    gateway: Option<Ipv4Addr>,
}

fn autoconf(v: &str) -> Result<Option<Method>, String> {
    match v {
        "dhcp" | "on" | "any" => Ok(Some(Method::Dhcp)),
        "ibft" => Ok(Some(Method::Firmware)),
        "" | "none" | "off" => Ok(None),
        "dhcp6" | "auto6" | "either6" => {
            Err("the storage interface takes IPv4 (dhcp or a fixed address)".into())
        }
        other => Err(format!(
            "{other} is not a way to configure it (dhcp, on, any, ibft, none, off)"
        )),
    }
}

fn parse_ip(v: &str) -> Result<IpWord, String> {
    if v.contains('[') {
        return Err("the storage interface takes IPv4 (dhcp or a fixed address)".into());
    }
    let f: Vec<&str> = v.split(':').collect();
    let opt_v4 = |what: &str, s: &str| -> Result<Option<Ipv4Addr>, String> {
        if s.is_empty() {
            return Ok(None);
        }
        s.parse()
            .map(Some)
            .map_err(|_| format!("{what} {s} is not an IPv4 address"))
    };
    match f.as_slice() {
        [how] => {
            let method = autoconf(how)?;
            if method.is_none() {
                return Err("ip= without an address leaves the storage interface down".into());
            }
            Ok(IpWord {
                method,
                ..IpWord::default()
            })
        }
        [iface, how] => {
            check_iface(iface)?;
            let method = autoconf(how)?;
            if method.is_none() {
                return Err("ip= without an address leaves the storage interface down".into());
            }
            Ok(IpWord {
                iface: Some((*iface).to_owned()),
                method,
                ..IpWord::default()
            })
        }
        [client, _peer, gateway, netmask, rest @ ..] => {
            let iface = match rest.get(1) {
                None | Some(&"") => None,
                Some(i) => {
                    check_iface(i)?;
                    Some((*i).to_owned())
                }
            };
            let how = autoconf(rest.get(2).copied().unwrap_or(""))?;
            let client = opt_v4("client address", client)?;
            let method = match (how, client) {
                (Some(m), _) => m,
                (None, Some(a)) => Method::Static(a),
                (None, None) => {
                    return Err("ip= without an address leaves the storage interface down".into());
                }
            };
            Ok(IpWord {
                iface,
                method: Some(method),
                netmask: opt_v4("netmask", netmask)?,
                gateway: opt_v4("gateway", gateway)?,
            })
        }
        _ => Err("write ip=dhcp, ip=IFACE:dhcp or \
             ip=CLIENT:PEER:GATEWAY:NETMASK:HOSTNAME:IFACE:none"
            .into()),
    }
}

/// The iSCSI fields as the words set them, last word winning.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// The first word that asks for iSCSI in a standard spelling (not
    /// `vlx.*`, `ip=` or `rd.driver.pre=`), to name it when the line also
    /// says `vlx.san=disk`.
    pub standard: Option<String>,
    /// Whether any `vlx.*` iSCSI key was given.
    pub vlx: Option<String>,
    firmware: Option<(bool, String)>,
    addr: Option<(IpAddr, String)>,
    port: Option<(u16, String)>,
    name: Option<(String, String)>,
    lun: Option<u16>,
    tpgt: Option<u16>,
    initiator: Option<String>,
    iface: Option<String>,
    method: Option<Method>,
    netmask: Option<Ipv4Addr>,
    gateway: Option<Ipv4Addr>,
    nic_modules: Vec<String>,
    /// `rd.driver.pre=`: every word adds, as in dracut.
    pub pre_modules: Vec<String>,
}

fn bad(key: &str, value: &str, reason: impl Into<String>) -> CmdlineError {
    CmdlineError::Bad {
        key: key.to_owned(),
        value: value.to_owned(),
        reason: reason.into(),
    }
}

/// The keys of the `vlx.` spelling that are about iSCSI (without the prefix).
pub(crate) const VLX_KEYS: &[&str] = &[
    "storage_ip",
    "storage_port",
    "sif",
    "sifip",
    "sifnm",
    "sifm",
    "ivid",
];

/// The `rd.iscsi.` and `iscsi_` keys vlx reads (secrets apart).
pub const STANDARD_KEYS: &[&str] = &[
    "rd.iscsi.target.ip",
    "rd.iscsi.target.port",
    "rd.iscsi.target.name",
    "rd.iscsi.target.group",
    "rd.iscsi.initiator",
    "rd.iscsi.firmware",
    "rd.iscsi.ibft",
    "iscsi_firmware",
    "iscsi_target_ip",
    "iscsi_target_port",
    "iscsi_target_name",
    "iscsi_target_group",
    "iscsi_initiator",
    "iscsi_auto",
];

/// Whether a key (before `=`) is in a standard iSCSI namespace: dracut's
/// `rd.iscsi.`, or Debian's `iscsi_` (a dotted key such as
/// `iscsi_tcp.max_lun` is a module's parameter, not ours).
fn standard_namespace(key: &str) -> bool {
    key.starts_with("rd.iscsi.") || (key.starts_with("iscsi_") && !key.contains('.'))
}

impl Scan {
    /// Takes one word of the line; words of no spelling of ours are
    /// skipped. `vlx.` keys come here without their prefix, through
    /// [`Scan::vlx`].
    pub(crate) fn word(&mut self, word: &str) -> Result<(), CmdlineError> {
        let (key, value) = word.split_once('=').unwrap_or((word, ""));
        if is_secret(word) {
            return Err(CmdlineError::Secret(key.to_owned()));
        }
        let root_path = matches!(key, "root" | "netroot") && value.starts_with(ROOT_PATH_PREFIX);
        if key == "ip" {
            let ip = parse_ip(value).map_err(|r| bad(key, value, r))?;
            if ip.iface.is_some() {
                self.iface = ip.iface;
            }
            self.method = ip.method;
            self.netmask = ip.netmask;
            self.gateway = ip.gateway;
            return Ok(());
        }
        if key == "rd.driver.pre" {
            let m = parse_modules(value).map_err(|r| bad(key, value, r))?;
            self.pre_modules.extend(m);
            return Ok(());
        }
        if !root_path && !standard_namespace(key) {
            return Ok(());
        }
        if !root_path && !STANDARD_KEYS.contains(&key) {
            return Err(CmdlineError::UnknownIscsi {
                key: key.to_owned(),
                known: STANDARD_KEYS.join(", "),
            });
        }
        self.standard.get_or_insert_with(|| word.to_owned());
        let b = |r: String| bad(key, value, r);
        match key {
            "root" | "netroot" => {
                let p: RootPath = value.parse().map_err(b)?;
                self.addr = Some((p.server, word.to_owned()));
                self.port = Some((p.port.unwrap_or(DEFAULT_ISCSI_PORT), word.to_owned()));
                self.lun = Some(p.lun);
                self.name = Some((p.target, word.to_owned()));
            }
            "rd.iscsi.target.ip" | "iscsi_target_ip" => {
                let a = value
                    .parse::<IpAddr>()
                    .map_err(|_| b("not an IP address".into()))?;
                self.addr = Some((a, word.to_owned()));
            }
            "rd.iscsi.target.port" | "iscsi_target_port" => {
                self.port = Some((parse_port(value).map_err(b)?, word.to_owned()));
            }
            "rd.iscsi.target.name" | "iscsi_target_name" => {
                check_name("target name", value).map_err(b)?;
                self.name = Some((value.to_owned(), word.to_owned()));
            }
            "rd.iscsi.target.group" | "iscsi_target_group" => {
                let g = value
                    .parse::<u16>()
                    .map_err(|_| b("not a portal group tag (0 to 65535)".into()))?;
                self.tpgt = Some(g);
            }
            "rd.iscsi.initiator" | "iscsi_initiator" => {
                check_name("initiator name", value).map_err(b)?;
                self.initiator = Some(value.to_owned());
            }
            // The flags: "iscsi_auto" and "iscsi_firmware" bare, the rd.
            // ones as booleans (bare is true, as dracut's getargbool).
            _ => {
                let on = parse_bool(value).map_err(b)?;
                self.firmware = Some((on, word.to_owned()));
            }
        }
        Ok(())
    }

    /// Takes one `vlx.` iSCSI key (without the prefix) of [`VLX_KEYS`].
    pub(crate) fn vlx(&mut self, key: &str, value: &str) -> Result<(), CmdlineError> {
        let full = format!("{}{key}", super::PREFIX);
        let word = format!("{full}={value}");
        self.vlx.get_or_insert_with(|| full.clone());
        let b = |r: &str| bad(&full, value, r);
        match key {
            "storage_ip" => {
                let a = value
                    .parse::<IpAddr>()
                    .map_err(|_| b("not an IP address"))?;
                self.addr = Some((a, word));
            }
            "storage_port" => {
                self.port = Some((parse_port(value).map_err(|r| b(&r))?, word));
            }
            "sif" => {
                check_iface(value).map_err(|r| b(&r))?;
                self.iface = Some(value.to_owned());
            }
            "sifip" => {
                self.method = Some(match value {
                    "dhcp" => Method::Dhcp,
                    v => Method::Static(v.parse().map_err(|_| b("not an IPv4 address (or dhcp)"))?),
                });
            }
            "sifnm" => {
                self.netmask = Some(value.parse().map_err(|_| b("not an IPv4 address"))?);
            }
            "sifm" => self.nic_modules = parse_modules(value).map_err(|r| b(&r))?,
            "ivid" => {
                check_name("iSCSI target name", value).map_err(|r| b(&r))?;
                self.name = Some((value.to_owned(), word));
            }
            _ => {
                return Err(CmdlineError::Unknown {
                    key: key.to_owned(),
                    known: VLX_KEYS.join(", "),
                });
            }
        }
        Ok(())
    }

    /// The iSCSI boot the words describe, or what is missing.
    pub(crate) fn finish(self) -> Result<IscsiBoot, CmdlineError> {
        let firmware = self.firmware.as_ref().is_some_and(|(on, _)| *on);
        let login = if firmware {
            // The firmware's table names the target; a target given on the
            // line too would leave it unclear which one the node uses.
            let given = (self.addr.as_ref().map(|a| &a.1))
                .or(self.name.as_ref().map(|n| &n.1))
                .or(self.port.as_ref().map(|p| &p.1));
            if let Some(w) = given {
                return Err(CmdlineError::FirmwareAndTarget(w.clone()));
            }
            Login::Firmware
        } else {
            let (addr, _) = self.addr.ok_or(CmdlineError::Missing(
                "the target's address: vlx.storage_ip=, rd.iscsi.target.ip=, \
                 iscsi_target_ip= or root=iscsi:",
            ))?;
            let (name, _) = self.name.ok_or(CmdlineError::Missing(
                "the target's name: vlx.ivid=, rd.iscsi.target.name=, \
                 iscsi_target_name= or root=iscsi:",
            ))?;
            Login::Target(Target {
                portal: Portal {
                    addr,
                    port: self.port.map_or(DEFAULT_ISCSI_PORT, |p| p.0),
                },
                name,
                lun: self.lun.unwrap_or(0),
                tpgt: self.tpgt.unwrap_or(DEFAULT_TPGT),
                initiator: self.initiator,
            })
        };
        let address = match (self.method, &self.iface) {
            (Some(Method::Dhcp), _) | (None, Some(_)) => Address::Dhcp,
            (Some(Method::Static(addr)), _) => Address::Static {
                addr,
                netmask: self.netmask,
                gateway: self.gateway,
            },
            (Some(Method::Firmware), _) => Address::Firmware,
            (None, None) if firmware => Address::Firmware,
            (None, None) => {
                return Err(CmdlineError::Missing(
                    "the storage interface: vlx.sif= (and vlx.sifip=) or ip=",
                ));
            }
        };
        Ok(IscsiBoot {
            net: Net {
                iface: self.iface,
                address,
            },
            nic_modules: self.nic_modules,
            login,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_paths_read_as_rfc_4173_says() {
        let v4 = |a: [u8; 4]| IpAddr::V4(Ipv4Addr::from(a));
        let cases: Vec<(&str, RootPath)> = vec![
            (
                "iscsi:10.10.0.250::::iqn.2007-01.it.unipi.di:virtualinux.san0",
                RootPath {
                    server: v4([10, 10, 0, 250]),
                    port: None,
                    lun: 0,
                    target: "iqn.2007-01.it.unipi.di:virtualinux.san0".into(),
                },
            ),
            (
                "iscsi:10.10.0.250:6:3261:1a:iqn.2001-04.com.example:t",
                RootPath {
                    server: v4([10, 10, 0, 250]),
                    port: Some(3261),
                    lun: 0x1a,
                    target: "iqn.2001-04.com.example:t".into(),
                },
            ),
            (
                "iscsi:[2001:db8::7]::3260:0-1:iqn.2001-04.com.example:t",
                RootPath {
                    server: "2001:db8::7".parse().unwrap(),
                    port: Some(3260),
                    lun: 1,
                    target: "iqn.2001-04.com.example:t".into(),
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<RootPath>().as_ref(), Ok(&want), "{text}");
            assert_eq!(want.to_string().parse::<RootPath>(), Ok(want), "{text}");
        }
    }

    #[test]
    fn root_paths_refused_say_why() {
        let cases = [
            ("iscsi::::0:iqn.x", "server is empty"),
            ("iscsi:san.example::::iqn.x", "resolves no names"),
            ("iscsi:10.0.0.1:17:::iqn.x", "not TCP"),
            ("iscsi:10.0.0.1::0::iqn.x", "0 is not a port"),
            ("iscsi:10.0.0.1:::12345:iqn.x", "four hexadecimal"),
            ("iscsi:10.0.0.1:::g:iqn.x", "four hexadecimal"),
            ("iscsi:10.0.0.1::::", "target name is empty"),
            ("iscsi:10.0.0.1:6", "write iscsi:"),
            ("iscsi:[2001:db8::7::::iqn.x", "closing ]"),
            ("iscsi:[zz]::::iqn.x", "not an IPv6"),
            ("iscsi:u:secret@10.0.0.1::::iqn.x", "CHAP"),
            ("nfs:10.0.0.1:/x", "starts with iscsi:"),
        ];
        for (text, want) in cases {
            let err = text.parse::<RootPath>().expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn ip_words_in_their_forms() {
        let v4 = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let cases: Vec<(&str, IpWord)> = vec![
            (
                "dhcp",
                IpWord {
                    method: Some(Method::Dhcp),
                    ..IpWord::default()
                },
            ),
            (
                "eth1:dhcp",
                IpWord {
                    iface: Some("eth1".into()),
                    method: Some(Method::Dhcp),
                    ..IpWord::default()
                },
            ),
            (
                "ibft",
                IpWord {
                    method: Some(Method::Firmware),
                    ..IpWord::default()
                },
            ),
            (
                "10.10.0.7::10.10.0.1:255.255.255.0:blade7:eth1:none",
                IpWord {
                    iface: Some("eth1".into()),
                    method: Some(Method::Static(v4("10.10.0.7"))),
                    netmask: Some(v4("255.255.255.0")),
                    gateway: Some(v4("10.10.0.1")),
                },
            ),
            (
                "10.10.0.7:::255.255.0.0",
                IpWord {
                    method: Some(Method::Static(v4("10.10.0.7"))),
                    netmask: Some(v4("255.255.0.0")),
                    ..IpWord::default()
                },
            ),
            (
                ":::::eth0:dhcp",
                IpWord {
                    iface: Some("eth0".into()),
                    method: Some(Method::Dhcp),
                    ..IpWord::default()
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse_ip(text), Ok(want), "{text}");
        }
        for (text, want) in [
            ("off", "leaves the storage interface down"),
            ("eth0:none", "leaves the storage interface down"),
            ("dhcp6", "IPv4"),
            ("[2001:db8::1]::::::none", "IPv4"),
            ("eth0/x:dhcp", "not an interface name"),
            ("a:b:c", "write ip="),
            ("10.1:::", "not an IPv4 address"),
            ("eth0:pxe", "pxe is not a way"),
        ] {
            let err = parse_ip(text).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn secrets_are_known_in_every_spelling() {
        for w in [
            "rd.iscsi.username=u",
            "rd.iscsi.password=p",
            "rd.iscsi.in.username=u",
            "rd.iscsi.in.password=p",
            "iscsi_username=u",
            "iscsi_password=p",
            "iscsi_in_username=u",
            "iscsi_in_password=p",
            "root=iscsi:u:p@10.0.0.1::::iqn.x",
            "netroot=iscsi:u:p:iu:ip@10.0.0.1::::iqn.x",
        ] {
            assert!(is_secret(w), "{w}");
        }
        for w in ["root=/dev/sda1", "rd.iscsi.initiator=iqn.x", "quiet"] {
            assert!(!is_secret(w), "{w}");
        }
    }
}
