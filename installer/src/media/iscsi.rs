//! The installer environment onto an iSCSI LUN (`vlx.target=iscsi://...`):
//! bring up the storage NIC (`vlx.sif`, `vlx.sifip`, `vlx.sifnm`,
//! `vlx.sifm`), start `iscsid`, and log in with the installer's own
//! [`crate::iscsi::login`], whose [`crate::iscsi::Session`] logs out when
//! the install ends, fails or is interrupted.
//!
//! Choices:
//! - The NIC is named by interface name or by MAC: the environment has no
//!   udev, so names are the kernel's (`eth0`, `eth1` in probe order) and
//!   a MAC is the stable way to name one.
//! - The NIC's address is fixed (`vlx.sifip=ADDR vlx.sifnm=MASK`) or taken
//!   by DHCP with busybox `udhcpc` (one lease, not renewed: an install is
//!   shorter than any lease worth giving).
//! - The initiator name is derived from the NIC's MAC
//!   ([`initiator_name`]), so two blades installing at once (on two
//!   targets) never share one.
//! - CHAP comes from the payload's [`contracts::media::CHAP_FILE`] (the
//!   `vlx-install --chap` format), never from the command line.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use contracts::cmdline::iscsi::Address;
use contracts::cmdline::media::{Nic, StorageNic};

/// Where the kernel lists NICs.
pub const SYS_NET: &str = "/sys/class/net";
/// How long a NIC may take to show after its driver is loaded.
const NIC_WAIT: Duration = Duration::from_secs(15);
/// How long `iscsid` may take to answer `iscsiadm`.
const ISCSID_WAIT: Duration = Duration::from_secs(15);
/// `iscsiadm`'s exit code for "no records/sessions found": it reached
/// `iscsid`.
const NO_OBJS_FOUND: i32 = 21;
/// The DHCP client's script: busybox `udhcpc` runs it with the lease in
/// its environment (`ip`, `mask` as a prefix length, `router`).
const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    ;;
esac
"#;

/// The NICs of `sys_net` (`/sys/class/net`): (name, MAC), loopback left
/// out, sorted by name.
pub fn nics(sys_net: &Path) -> Vec<(String, String)> {
    let Ok(rd) = std::fs::read_dir(sys_net) else {
        return Vec::new();
    };
    let mut v: Vec<(String, String)> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let mac = std::fs::read_to_string(e.path().join("address")).ok()?;
            let mac = mac.trim().to_ascii_lowercase();
            (name != "lo").then_some((name, mac))
        })
        .collect();
    v.sort();
    v
}

/// The interface `nic` names among `have` (from [`nics`]); `None` when
/// none is (yet) there.
pub fn find_nic(have: &[(String, String)], nic: &Nic) -> Option<String> {
    have.iter()
        .find(|(name, mac)| match nic {
            Nic::Name(n) => name == n,
            Nic::Mac(m) => mac == m,
        })
        .map(|(name, _)| name.clone())
}

/// What the environment's initiator names start with: the name the
/// media's `/etc/iscsi/initiatorname.iscsi` carries before the NIC is
/// known (`imagebuilder::media::env::INITIATOR_NAME`).
pub const INITIATOR_BASE: &str = "iqn.2007-01.org.vlx:installer";

/// The environment's initiator name for the NIC with `mac`.
pub fn initiator_name(mac: &str) -> String {
    format!(
        "{INITIATOR_BASE}-{}",
        mac.replace(':', "").to_ascii_lowercase()
    )
}

/// The busybox `ip` runs that give `iface` a fixed address.
pub fn address_commands(
    iface: &str,
    addr: std::net::Ipv4Addr,
    netmask: std::net::Ipv4Addr,
) -> Vec<Vec<String>> {
    let prefix = u32::from(netmask).leading_ones();
    [
        vec!["link", "set", "lo", "up"],
        vec!["link", "set", iface, "up"],
        vec!["addr", "flush", "dev", iface],
    ]
    .into_iter()
    .map(|a| a.into_iter().map(String::from).collect())
    .chain(std::iter::once(vec![
        "addr".into(),
        "add".into(),
        format!("{addr}/{prefix}"),
        "dev".into(),
        iface.into(),
    ]))
    .collect()
}

/// Why the storage NIC or `iscsid` did not come up.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(
        "vlx.sif={nic}: no such NIC after {secs} s (the NICs: {have}); vlx.sifm= loads its driver"
    )]
    NoNic { nic: Nic, secs: u64, have: String },
    #[error("vlx.sifm: {0}")]
    Module(String),
    #[error("vlx.sif={nic} ({iface}): {detail}")]
    Address {
        nic: Nic,
        iface: String,
        detail: String,
    },
    #[error("iscsid: {0}")]
    Iscsid(String),
}

impl NetError {
    /// 2 for a NIC or module the command line names and the blade lacks
    /// (bad input), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            NetError::NoNic { .. } | NetError::Module(_) => 2,
            _ => 1,
        }
    }
}

fn run(cmd: &str, args: &[String]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {cmd}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{cmd} {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

/// Brings the storage NIC up with its address, after loading
/// `storage.modules` with `load`. Returns the interface's name and MAC.
pub fn bring_up(
    storage: &StorageNic,
    load: &dyn Fn(&[String]) -> Result<(), String>,
) -> Result<(String, String), NetError> {
    if !storage.modules.is_empty() {
        load(&storage.modules).map_err(NetError::Module)?;
    }
    let start = Instant::now();
    let (iface, mac) = loop {
        let have = nics(Path::new(SYS_NET));
        if let Some(i) = find_nic(&have, &storage.nic) {
            let mac = have
                .iter()
                .find(|(n, _)| *n == i)
                .map(|(_, m)| m.clone())
                .unwrap_or_default();
            break (i, mac);
        }
        if start.elapsed() > NIC_WAIT {
            return Err(NetError::NoNic {
                nic: storage.nic.clone(),
                secs: NIC_WAIT.as_secs(),
                have: if have.is_empty() {
                    "none".into()
                } else {
                    have.iter()
                        .map(|(n, m)| format!("{n} {m}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let err = |detail: String| NetError::Address {
        nic: storage.nic.clone(),
        iface: iface.clone(),
        detail,
    };
    match &storage.address {
        Address::Static { addr, netmask, .. } => {
            let netmask = netmask.unwrap_or(std::net::Ipv4Addr::new(255, 255, 255, 0));
            for c in address_commands(&iface, *addr, netmask) {
                run("ip", &c).map_err(err)?;
            }
        }
        Address::Dhcp | Address::Firmware => {
            for c in &address_commands(
                &iface,
                std::net::Ipv4Addr::UNSPECIFIED,
                std::net::Ipv4Addr::UNSPECIFIED,
            )[..2]
            {
                run("ip", c).map_err(err)?;
            }
            let script = Path::new("/run/vlx/udhcpc.script");
            write_file(script, UDHCPC_SCRIPT, 0o755).map_err(err)?;
            let args: Vec<String> = ["-i", &iface, "-n", "-q", "-f", "-t", "10", "-s"]
                .into_iter()
                .map(String::from)
                .chain(std::iter::once(script.display().to_string()))
                .collect();
            run("udhcpc", &args).map_err(|e| err(format!("no DHCP lease: {e}")))?;
        }
    }
    Ok((iface, mac))
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// `iscsid`, started by the environment; stopped when dropped.
#[derive(Debug)]
pub struct Iscsid {
    child: Child,
}

impl Drop for Iscsid {
    fn drop(&mut self) {
        // Sessions are logged out before (the session guard is dropped
        // first); a daemon left running would only hold the console.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes the initiator name of the NIC with `mac` and starts `iscsid` in
/// the foreground as a child; returns once `iscsiadm` reaches it.
pub fn start_iscsid(mac: &str) -> Result<Iscsid, NetError> {
    let e = NetError::Iscsid;
    for d in ["/run/lock/iscsi", "/var/lib/iscsi", "/etc/iscsi/nodes"] {
        std::fs::create_dir_all(d).map_err(|x| e(format!("{d}: {x}")))?;
    }
    write_file(
        Path::new("/etc/iscsi/initiatorname.iscsi"),
        &format!("InitiatorName={}\n", initiator_name(mac)),
        0o600,
    )
    .map_err(e)?;
    let child = Command::new("iscsid")
        .arg("-f")
        .stdin(Stdio::null())
        .spawn()
        .map_err(|x| e(format!("cannot run iscsid: {x}")))?;
    let mut d = Iscsid { child };
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = d.child.try_wait() {
            return Err(e(format!("exited at its start ({status})")));
        }
        let out = Command::new("iscsiadm")
            .args(["-m", "session"])
            .stdin(Stdio::null())
            .output()
            .map_err(|x| e(format!("cannot run iscsiadm: {x}")))?;
        if out.status.success() || out.status.code() == Some(NO_OBJS_FOUND) {
            return Ok(d);
        }
        if start.elapsed() > ISCSID_WAIT {
            return Err(e(format!(
                "iscsiadm cannot reach it after {} s: {}",
                ISCSID_WAIT.as_secs(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The payload's CHAP file, when the media carry one.
pub fn chap_file(root: &Path, m: &super::payload::MediaManifest) -> Option<PathBuf> {
    m.files
        .iter()
        .any(|f| f.path == contracts::media::CHAP_FILE)
        .then(|| root.join(contracts::media::CHAP_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_nic_by_name_or_mac() {
        let t = tempfile::tempdir().unwrap();
        for (n, mac) in [
            ("lo", "00:00:00:00:00:00"),
            ("eth0", "52:54:00:00:00:01"),
            ("eth1", "52:54:00:AA:00:01"),
        ] {
            std::fs::create_dir_all(t.path().join(n)).unwrap();
            std::fs::write(t.path().join(n).join("address"), format!("{mac}\n")).unwrap();
        }
        let have = nics(t.path());
        assert_eq!(
            have,
            [
                ("eth0".to_owned(), "52:54:00:00:00:01".to_owned()),
                ("eth1".to_owned(), "52:54:00:aa:00:01".to_owned())
            ]
        );
        assert_eq!(
            find_nic(&have, &Nic::Name("eth1".into())),
            Some("eth1".into())
        );
        assert_eq!(
            find_nic(&have, &Nic::Mac("52:54:00:aa:00:01".into())),
            Some("eth1".into())
        );
        assert_eq!(find_nic(&have, &Nic::Name("eth7".into())), None);
        assert_eq!(find_nic(&have, &Nic::Name("lo".into())), None);
    }

    #[test]
    fn a_fixed_address_and_the_initiator_name() {
        let runs: Vec<String> = address_commands(
            "eth1",
            "10.10.0.1".parse().unwrap(),
            "255.255.255.0".parse().unwrap(),
        )
        .iter()
        .map(|c| c.join(" "))
        .collect();
        assert_eq!(
            runs,
            [
                "link set lo up",
                "link set eth1 up",
                "addr flush dev eth1",
                "addr add 10.10.0.1/24 dev eth1"
            ]
        );
        assert_eq!(
            initiator_name("52:54:00:AA:00:01"),
            "iqn.2007-01.org.vlx:installer-525400aa0001"
        );
    }

    #[test]
    fn unknown_nics_are_bad_input_naming_the_argument() {
        let e = NetError::NoNic {
            nic: Nic::Name("eth7".into()),
            secs: 15,
            have: "eth0 52:54:00:00:00:01".into(),
        };
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string().starts_with("vlx.sif=eth7: no such NIC"),
            "{e}"
        );
    }
}
