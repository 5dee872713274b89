//! `iscsi://PORTAL[:PORT]/IQN[/LUN]`: an iSCSI LUN as `vlx-install --san`
//! and the installer environment's `vlx.target=` name it. One parser for
//! both, so the flag and the kernel argument cannot drift.
//!
//! The portal is an IP address (IPv6 in brackets), as on the blades'
//! command line (the initramfs resolves no names); the port is 3260
//! without one; the LUN is decimal, as `iscsiadm` and `/dev/disk/by-path`
//! write it, and absent when the target offers exactly one disk LUN.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use super::iscsi::{DEFAULT_ISCSI_PORT, Portal};

/// `iscsi://PORTAL[:PORT]/IQN[/LUN]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IscsiUrl {
    pub portal: Portal,
    pub target: String,
    pub lun: Option<u32>,
}

pub const SCHEME: &str = "iscsi://";

impl fmt::Display for IscsiUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.portal, self.target)?;
        if let Some(l) = self.lun {
            write!(f, "/{l}")?;
        }
        Ok(())
    }
}

impl FromStr for IscsiUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<IscsiUrl, String> {
        let form = "write iscsi://PORTAL[:PORT]/IQN[/LUN]";
        let rest = s
            .strip_prefix(SCHEME)
            .ok_or_else(|| format!("{s}: {form}"))?;
        let (portal, path) = rest
            .split_once('/')
            .ok_or_else(|| format!("{s}: no target name: {form}"))?;
        let (addr, port) = if let Some(v6) = portal.strip_prefix('[') {
            let (a, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{s}: an IPv6 portal needs its closing ]"))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| format!("{s}: {form}"))?),
            };
            (a, port)
        } else {
            match portal.split_once(':') {
                Some((a, p)) => (a, Some(p)),
                None => (portal, None),
            }
        };
        let addr = addr
            .parse::<IpAddr>()
            .map_err(|_| format!("{s}: portal {addr} is not an IP address (IPv6 in brackets)"))?;
        let port = match port {
            None => DEFAULT_ISCSI_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(format!("{s}: {p} is not a port (1 to 65535)")),
            },
        };
        let (target, lun) = match path.rsplit_once('/') {
            Some((t, l)) => (
                t,
                Some(
                    l.parse::<u32>()
                        .map_err(|_| format!("{s}: LUN {l} is not a decimal number"))?,
                ),
            ),
            None => (path, None),
        };
        if target.is_empty() || target.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(format!("{s}: no target name: {form}"));
        }
        Ok(IscsiUrl {
            portal: Portal { addr, port },
            target: target.to_owned(),
            lun,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_the_forms() {
        for (text, port, lun) in [
            ("iscsi://10.0.0.1/iqn.2026-01.org.vlx.test:san", 3260, None),
            (
                "iscsi://10.0.0.1:3261/iqn.2026-01.org.vlx.test:san/1",
                3261,
                Some(1),
            ),
            (
                "iscsi://[fd00::1]/iqn.2026-01.org.vlx.test:san/0",
                3260,
                Some(0),
            ),
        ] {
            let u: IscsiUrl = text.parse().unwrap();
            assert_eq!(u.target, "iqn.2026-01.org.vlx.test:san", "{text}");
            assert_eq!((u.portal.port, u.lun), (port, lun), "{text}");
            assert_eq!(u.to_string().parse::<IscsiUrl>(), Ok(u));
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        for (text, want) in [
            (
                "iscsi://san.example/iqn.x",
                "portal san.example is not an IP address",
            ),
            ("iscsi://10.0.0.1", "no target name"),
            ("iscsi://10.0.0.1/", "no target name"),
            ("iscsi://10.0.0.1:0/iqn.x", "0 is not a port"),
            (
                "iscsi://10.0.0.1/iqn.x/one",
                "LUN one is not a decimal number",
            ),
            ("iscsi://[fd00::1/iqn.x", "closing ]"),
            ("iscsi:10.0.0.1/iqn.x", "write iscsi://"),
        ] {
            let err = text.parse::<IscsiUrl>().expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
