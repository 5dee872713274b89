//! The iSCSI transport: bring up the storage interface, log in to the
//! target, and let the SAN appear as a SCSI disk.
//!
//! The steps are the seed's boot parameters in order: load `vlx.sifm`
//! modules (with `iscsi_tcp` and `sd_mod`), bring up `vlx.sif` with `vlx.sifip`
//! (`dhcp` through busybox `udhcpc`, or the fixed address with
//! `vlx.sifnm`), then `iscsistart` (open-iscsi) to `vlx.ivid` at
//! `vlx.storage_ip:vlx.storage_port`. After the login the disk is found by
//! its GPT like any other.
//!
//! Tested: the arguments below by unit tests, and whole boots against a
//! real target (tgt in a network namespace, `agent/tests/rig_boot.rs`) with
//! a fixed address and with DHCP. Not tested: InfiniBand (IPoIB) storage
//! interfaces, CHAP, several portals. The image builder must put
//! `iscsistart` with its libraries and the iSCSI modules into the initramfs
//! for this path.
//!
//! After the switch the session lives on in the kernel; the node's own
//! open-iscsi must take it over (`iscsid` adopts sessions it finds) and its
//! network setup must leave the storage interface as it is.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use cluster::MacAddr;
use cluster::profile::Iscsi;
use uuid::Uuid;

use crate::console::say;
use crate::failure::Failure;
use crate::tools::{command, run};

/// Kernel modules every iSCSI boot needs: the initiator over TCP, and the
/// SCSI disk driver that makes the LUN a block device (no udev loads it in
/// the initramfs).
pub const MODULES: &[&str] = &["iscsi_tcp", "sd_mod"];

/// Target portal group tag: 1, what target implementations (tgt, LIO) give
/// the first portal group.
pub const TPGT: u16 = 1;

/// How long the storage interface may take to appear after its driver
/// loads (InfiniBand ports train for several seconds).
const LINK_WAIT: Duration = Duration::from_secs(30);

/// udhcpc retries: 10 discovers, 3 s apart.
const DHCP_TRIES: &str = "10";
const DHCP_TIMEOUT: &str = "3";

/// The initiator name of a blade: cluster uuid and the storage interface's
/// MAC, so that a target can list the cluster's blades in its access list.
pub fn initiator_name(cluster: Uuid, mac: MacAddr) -> String {
    let m: String = mac.0.iter().map(|b| format!("{b:02x}")).collect();
    format!("iqn.2007-01.org.vlx:{}.{m}", cluster.simple())
}

/// The `iscsistart` arguments for one login.
pub fn iscsistart_args(i: &Iscsi, initiator: &str) -> Vec<String> {
    vec![
        "-i".into(),
        initiator.into(),
        "-t".into(),
        i.ivid.clone(),
        "-g".into(),
        TPGT.to_string(),
        "-a".into(),
        i.storage_ip.to_string(),
        "-p".into(),
        i.storage_port.to_string(),
    ]
}

/// The `ifconfig` arguments for a fixed address; without `vlx.sifnm` the
/// address's class gives the mask, as ifconfig does.
pub fn ifconfig_args(i: &Iscsi) -> Vec<String> {
    let mut a = vec![i.sif.clone(), i.sifip.clone()];
    if let Some(nm) = i.sifnm {
        a.extend(["netmask".into(), nm.to_string()]);
    }
    a.push("up".into());
    a
}

/// udhcpc's hook: it configures nothing by itself.
pub const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
# Written by vlx-node: applies udhcpc's lease to the storage interface.
case "$1" in
bound|renew)
	ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}" up
	if [ -n "$router" ]; then route add default gw "${router%% *}" dev "$interface"; fi
	;;
deconfig)
	ifconfig "$interface" 0.0.0.0 up
	;;
esac
exit 0
"#;

fn read_mac(sif: &str) -> Option<MacAddr> {
    let text = fs::read_to_string(format!("/sys/class/net/{sif}/address")).ok()?;
    crate::node::parse_mac(&text)
}

/// Brings up the storage interface and logs in to the target. The modules
/// (`vlx.sifm`, [`MODULES`]) are loaded already.
pub fn connect(i: &Iscsi, cluster: Uuid) -> Result<(), Failure> {
    let net = |detail: String| Failure::Network {
        sif: i.sif.clone(),
        detail,
    };
    let sys = Path::new("/sys/class/net").join(&i.sif);
    let start = Instant::now();
    while !sys.exists() {
        if start.elapsed() > LINK_WAIT {
            return Err(Failure::Timeout {
                what: format!("storage interface {}", i.sif),
                waited: LINK_WAIT,
            });
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    run(command("ip").args(["link", "set", &i.sif, "up"]))?;
    if i.sifip == "dhcp" {
        let script = Path::new("/run/vlx/udhcpc.sh");
        fs::write(script, UDHCPC_SCRIPT)
            .and_then(|()| fs::set_permissions(script, fs::Permissions::from_mode(0o755)))
            .map_err(|e| net(format!("writing {}: {e}", script.display())))?;
        run(command("udhcpc").args([
            "-i",
            &i.sif,
            "-f",
            "-q",
            "-n",
            "-t",
            DHCP_TRIES,
            "-T",
            DHCP_TIMEOUT,
            "-s",
            &script.to_string_lossy(),
        ]))
        .map_err(|e| net(format!("no DHCP lease: {e}")))?;
    } else {
        run(command("ifconfig").args(ifconfig_args(i)))?;
    }
    let how = if i.sifip == "dhcp" {
        "DHCP"
    } else {
        "vlx.sifip"
    };
    match crate::sys::ipv4_of(&i.sif) {
        Some((addr, mask)) => say(format!(
            "storage interface {} is up with {addr} netmask {mask} ({how})",
            i.sif
        )),
        None => return Err(net(format!("it has no IPv4 address after {how}"))),
    }
    let mac = read_mac(&i.sif).ok_or_else(|| net("it has no Ethernet MAC".into()))?;
    let initiator = initiator_name(cluster, mac);
    run(command("iscsistart").args(iscsistart_args(i, &initiator)))?;
    say(format!(
        "logged in to {} at {}:{} as {initiator}",
        i.ivid, i.storage_ip, i.storage_port
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn iscsi() -> Iscsi {
        Iscsi {
            storage_ip: Ipv4Addr::new(10, 10, 0, 250),
            storage_port: 3260,
            sif: "eth1".into(),
            sifip: "10.10.0.7".into(),
            sifnm: Some(Ipv4Addr::new(255, 255, 0, 0)),
            sifm: vec![],
            ivid: "iqn.2007-01.it.unipi.di:virtualinux.san0".into(),
        }
    }

    #[test]
    fn logs_in_with_the_seeds_parameters() {
        let uuid = Uuid::parse_str("6f1c0a4e-3b8e-4d3a-9d2a-1f0e5c7b9a10").unwrap();
        let name = initiator_name(uuid, "52:54:00:77:00:0a".parse().unwrap());
        assert_eq!(
            name,
            "iqn.2007-01.org.vlx:6f1c0a4e3b8e4d3a9d2a1f0e5c7b9a10.52540077000a"
        );
        assert_eq!(
            iscsistart_args(&iscsi(), &name).join(" "),
            format!(
                "-i {name} -t iqn.2007-01.it.unipi.di:virtualinux.san0 -g 1 -a 10.10.0.250 -p 3260"
            )
        );
    }

    #[test]
    fn configures_a_fixed_address() {
        assert_eq!(
            ifconfig_args(&iscsi()).join(" "),
            "eth1 10.10.0.7 netmask 255.255.0.0 up"
        );
        let mut i = iscsi();
        i.sifnm = None;
        assert_eq!(ifconfig_args(&i).join(" "), "eth1 10.10.0.7 up");
    }

    #[test]
    fn dhcp_hook_is_valid_shell() {
        // `sh -n` parses without running.
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("hook");
        fs::write(&p, UDHCPC_SCRIPT).unwrap();
        let st = std::process::Command::new("sh")
            .arg("-n")
            .arg(&p)
            .status()
            .unwrap();
        assert!(st.success());
    }
}
