//! The iSCSI transport: bring up the storage interface, log in to the
//! target, and let the SAN appear as a SCSI disk.
//!
//! The command line says how, in any spelling `contracts::cmdline::iscsi`
//! reads (the seed's `vlx.*`, dracut, Debian, RFC 4173, iBFT): load the
//! storage NIC's modules (with `iscsi_tcp` and `sd_mod`), bring up the
//! interface (busybox `udhcpc` for DHCP, `ifconfig` for a fixed address,
//! or what the iBFT says), then `iscsistart` (open-iscsi) to the target,
//! or `iscsistart -b` to every target of the iBFT. After the login the disk
//! is found by its GPT like any other.
//!
//! CHAP is the firmware's: with `rd.iscsi.firmware=1` the boot ROM (an
//! iSCSI HBA, or iPXE's `sanboot` with the credentials it stores) publishes
//! them in the iBFT and `iscsistart -b` reads them there. The command line
//! never carries them (the parser refuses them) and this agent never reads
//! them ([`crate::ibft`]).
//!
//! Tested: the arguments below by unit tests, whole boots against a real
//! target (tgt in a network namespace, `agent/tests/rig_boot.rs`) with a
//! fixed address and with DHCP, and boots from the iBFT that iPXE's
//! `sanboot` publishes, with the target restarted and the path cut under
//! the running blades (the iSCSI rehearsal, `qemu-tests`), whose target
//! asks for mutual CHAP that iPXE publishes in the iBFT (and refuses a
//! blade whose stored secret is wrong). Several portals: with the
//! firmware's table, every NIC of the iBFT that a target is reached
//! through comes up with its address, `iscsistart -b` logs in to each
//! target, and the disks that are one LUN become one multipath map
//! ([`crate::multipath`]); the iSCSI rehearsal boots over two portals and
//! cuts one. Not tested: InfiniBand (IPoIB) storage interfaces, several
//! portals named on the command line (it names one target). The image
//! builder must put `iscsistart` with its libraries and the iSCSI modules into the
//! initramfs for this path (and `iscsi_ibft` for the firmware's table:
//! the host profile's `initramfs.modules`).
//!
//! After the switch the session lives on in the kernel; the node's own
//! open-iscsi must take it over (`iscsid` adopts sessions it finds) and its
//! network setup must leave the storage interface as it is.

use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use cluster::MacAddr;
use contracts::cmdline::iscsi::{Address, IscsiBoot, Login, Target};
use uuid::Uuid;

use crate::console::say;
use crate::failure::Failure;
use crate::ibft::{self, Chap, Ibft};
use crate::tools::{command, run};

/// Kernel modules every iSCSI boot needs: the initiator over TCP, and the
/// SCSI disk driver that makes the LUN a block device (no udev loads it in
/// the initramfs).
pub const MODULES: &[&str] = &["iscsi_tcp", "sd_mod"];

/// How long the storage interface may take to appear after its driver
/// loads (InfiniBand ports train for several seconds).
const LINK_WAIT: Duration = Duration::from_secs(30);

/// udhcpc retries: 10 discovers, 3 s apart.
const DHCP_TRIES: &str = "10";
const DHCP_TIMEOUT: &str = "3";

/// The initiator name of a blade: cluster uuid and the storage interface's
/// MAC, so that a target can list the cluster's blades in its access list.
pub fn initiator_name(cluster: Uuid, mac: MacAddr) -> String {
    contracts::names::iscsi::initiator_name(cluster, mac.0)
}

/// The modules an iSCSI boot loads besides the initramfs's list: the
/// storage NIC's, [`MODULES`], and the iBFT's when the firmware has a say.
pub fn modules(b: &IscsiBoot) -> Vec<String> {
    let mut m = b.nic_modules.clone();
    m.extend(MODULES.iter().map(|s| (*s).to_owned()));
    if uses_firmware(b) {
        m.push(ibft::MODULE.to_owned());
    }
    m
}

/// Whether the boot reads the firmware's table.
pub fn uses_firmware(b: &IscsiBoot) -> bool {
    b.login == Login::Firmware || b.net.address == Address::Firmware
}

/// The `iscsistart` arguments for one login to a target named on the
/// command line.
pub fn iscsistart_args(t: &Target, initiator: &str) -> Vec<String> {
    vec![
        "-i".into(),
        initiator.into(),
        "-t".into(),
        t.name.clone(),
        "-g".into(),
        t.tpgt.to_string(),
        "-a".into(),
        t.portal.addr.to_string(),
        "-p".into(),
        t.portal.port.to_string(),
    ]
}

/// `iscsistart -b`: log in to every target of the iBFT, with its CHAP.
pub const FIRMWARE_LOGIN: &[&str] = &["-b"];

/// A fixed IPv4 configuration of the storage interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixed {
    pub addr: Ipv4Addr,
    pub netmask: Option<Ipv4Addr>,
    pub gateway: Option<Ipv4Addr>,
}

/// The `ifconfig` arguments for a fixed address; without a netmask the
/// address's class gives the mask, as ifconfig does.
pub fn ifconfig_args(iface: &str, f: &Fixed) -> Vec<String> {
    let mut a = vec![iface.to_owned(), f.addr.to_string()];
    if let Some(nm) = f.netmask {
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

/// The network interfaces but `lo`, by name.
fn interfaces() -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir("/sys/class/net")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .filter(|n| n != "lo")
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Which interface carries the storage traffic: the one the command line
/// names, the iBFT's boot NIC (by MAC), or the only one there is; waits
/// up to [`LINK_WAIT`] for it to appear.
fn storage_iface(b: &IscsiBoot, table: Option<&Ibft>) -> Result<String, Failure> {
    let start = Instant::now();
    loop {
        let found = match (&b.net.iface, table.and_then(Ibft::boot_nic)) {
            (Some(name), _) => Path::new("/sys/class/net")
                .join(name)
                .exists()
                .then(|| name.clone()),
            (None, Some(nic)) => interfaces()
                .into_iter()
                .find(|n| read_mac(n) == Some(nic.mac)),
            (None, None) => match interfaces().as_slice() {
                [one] => Some(one.clone()),
                [] => None,
                many => {
                    return Err(Failure::Network {
                        sif: "(not named)".into(),
                        detail: format!(
                            "this blade has several interfaces ({}): name the storage \
                             interface with vlx.sif= or ip=IFACE:...",
                            many.join(", ")
                        ),
                    });
                }
            },
        };
        if let Some(f) = found {
            return Ok(f);
        }
        if start.elapsed() > LINK_WAIT {
            let what = match (&b.net.iface, table.and_then(Ibft::boot_nic)) {
                (Some(n), _) => format!("storage interface {n}"),
                (None, Some(nic)) => format!("the iBFT's boot NIC (MAC {})", nic.mac),
                (None, None) => "a network interface".into(),
            };
            return Err(Failure::Timeout {
                what,
                waited: LINK_WAIT,
            });
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// How the storage interface gets its address, the iBFT's answer
/// resolved.
fn address(b: &IscsiBoot, table: Option<&Ibft>) -> Result<Option<Fixed>, Failure> {
    Ok(match &b.net.address {
        Address::Dhcp => None,
        Address::Static {
            addr,
            netmask,
            gateway,
        } => Some(Fixed {
            addr: *addr,
            netmask: *netmask,
            gateway: *gateway,
        }),
        Address::Firmware => {
            let nic = table
                .and_then(Ibft::boot_nic)
                .ok_or_else(|| Failure::Network {
                    sif: "(from the iBFT)".into(),
                    detail: "the iBFT has no boot NIC (ip=ibft)".into(),
                })?;
            nic.fixed.as_ref().map(|f| Fixed {
                addr: f.addr,
                netmask: f.netmask,
                gateway: f.gateway,
            })
        }
    })
}

/// The iSCSI sessions the kernel has.
fn sessions() -> usize {
    fs::read_dir("/sys/class/iscsi_session").map_or(0, |d| d.filter_map(Result::ok).count())
}

/// Brings up a second storage NIC of the iBFT (another path to the
/// target, [`crate::multipath`]) with the address the firmware gave it.
fn other_path_up(nic: &ibft::Nic) -> Result<(), Failure> {
    let what = format!("the iBFT's NIC {} (MAC {})", nic.index, nic.mac);
    let start = Instant::now();
    let sif = loop {
        if let Some(n) = interfaces()
            .into_iter()
            .find(|n| read_mac(n) == Some(nic.mac))
        {
            break n;
        }
        if start.elapsed() > LINK_WAIT {
            return Err(Failure::Timeout {
                what,
                waited: LINK_WAIT,
            });
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let Some(f) = &nic.fixed else {
        return Err(Failure::Network {
            sif,
            detail: format!(
                "{what} took its address by DHCP; only a fixed one is supported for a second path"
            ),
        });
    };
    run(command("ip").args(["link", "set", &sif, "up"]))?;
    let fixed = Fixed {
        addr: f.addr,
        netmask: f.netmask,
        gateway: None,
    };
    run(command("ifconfig").args(ifconfig_args(&sif, &fixed)))?;
    say(format!(
        "second storage interface {sif} is up with {} ({what})",
        f.addr
    ));
    Ok(())
}

/// Brings up the storage interface and logs in to the target. The modules
/// ([`modules`]) are loaded already.
pub fn connect(b: &IscsiBoot, cluster: Uuid) -> Result<(), Failure> {
    let table = if uses_firmware(b) {
        let t = ibft::read(Path::new(ibft::SYSFS)).map_err(|e| Failure::Network {
            sif: "(from the iBFT)".into(),
            detail: e.to_string(),
        })?;
        for tg in &t.targets {
            let chap = match tg.chap {
                Chap::None => "no CHAP",
                Chap::OneWay => "one-way CHAP",
                Chap::Mutual => "mutual CHAP",
            };
            say(format!(
                "the firmware's iBFT names {} at {}:{} ({chap}) for initiator {}",
                tg.name, tg.addr, tg.port, t.initiator
            ));
        }
        Some(t)
    } else {
        None
    };
    let sif = storage_iface(b, table.as_ref())?;
    let net = |detail: String| Failure::Network {
        sif: sif.clone(),
        detail,
    };
    run(command("ip").args(["link", "set", &sif, "up"]))?;
    let fixed = address(b, table.as_ref())?;
    let how = match (&b.net.address, &fixed) {
        (Address::Firmware, _) => "iBFT",
        (_, None) => "DHCP",
        (_, Some(_)) => "a fixed address",
    };
    match &fixed {
        None => {
            let script = Path::new("/run/vlx/udhcpc.sh");
            fs::write(script, UDHCPC_SCRIPT)
                .and_then(|()| fs::set_permissions(script, fs::Permissions::from_mode(0o755)))
                .map_err(|e| net(format!("writing {}: {e}", script.display())))?;
            run(command("udhcpc").args([
                "-i",
                &sif,
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
        }
        Some(f) => {
            run(command("ifconfig").args(ifconfig_args(&sif, f)))?;
            if let Some(gw) = f.gateway {
                run(command("route").args(["add", "default", "gw", &gw.to_string(), "dev", &sif]))?;
            }
        }
    }
    match crate::sys::ipv4_of(&sif) {
        Some((addr, mask)) => say(format!(
            "storage interface {sif} is up with {addr} netmask {mask} ({how})"
        )),
        None => return Err(net(format!("it has no IPv4 address after {how}"))),
    }
    if let Some(t) = &table
        && b.net.address == Address::Firmware
    {
        for nic in t.other_nics() {
            other_path_up(nic)?;
        }
    }
    match &b.login {
        Login::Firmware => {
            let paths = table.as_ref().map_or(0, |t| t.targets.len());
            match run(command("iscsistart").args(FIRMWARE_LOGIN)) {
                Ok(_) => say("logged in to the iBFT's targets (iscsistart -b)".to_owned()),
                // One path down must not keep a blade from its root:
                // iscsistart -b fails when one target's login fails, the
                // others' sessions up or not. (iPXE can also describe a
                // path whose login it had not finished, without the
                // initiator's CHAP, which iscsistart then refuses.)
                Err(e) if paths > 1 && sessions() > 0 => say(format!(
                    "warning: {e}; going on with the {} of {paths} paths that logged in",
                    sessions()
                )),
                Err(e) => return Err(e),
            }
        }
        Login::Target(t) => {
            let initiator = match &t.initiator {
                Some(i) => i.clone(),
                None => {
                    let mac = read_mac(&sif).ok_or_else(|| net("it has no Ethernet MAC".into()))?;
                    initiator_name(cluster, mac)
                }
            };
            run(command("iscsistart").args(iscsistart_args(t, &initiator)))?;
            say(format!(
                "logged in to {} at {} as {initiator}",
                t.name, t.portal
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> IscsiBoot {
        IscsiBoot::from(&cluster::profile::Iscsi {
            storage_ip: Ipv4Addr::new(10, 10, 0, 250),
            storage_port: 3260,
            sif: "eth1".into(),
            sifip: "10.10.0.7".into(),
            sifnm: Some(Ipv4Addr::new(255, 255, 0, 0)),
            sifm: vec![],
            ivid: "iqn.2007-01.it.unipi.di:virtualinux.san0".into(),
        })
    }

    #[test]
    fn logs_in_with_the_seeds_parameters() {
        let uuid = Uuid::parse_str("6f1c0a4e-3b8e-4d3a-9d2a-1f0e5c7b9a10").unwrap();
        let name = initiator_name(uuid, "52:54:00:77:00:0a".parse().unwrap());
        assert_eq!(
            name,
            "iqn.2007-01.org.vlx:6f1c0a4e3b8e4d3a9d2a1f0e5c7b9a10.52540077000a"
        );
        let Login::Target(t) = seed().login else {
            panic!("the seed names its target")
        };
        assert_eq!(
            iscsistart_args(&t, &name).join(" "),
            format!(
                "-i {name} -t iqn.2007-01.it.unipi.di:virtualinux.san0 -g 1 -a 10.10.0.250 -p 3260"
            )
        );
    }

    #[test]
    fn configures_a_fixed_address() {
        let b = seed();
        let f = address(&b, None).unwrap().unwrap();
        assert_eq!(
            ifconfig_args("eth1", &f).join(" "),
            "eth1 10.10.0.7 netmask 255.255.0.0 up"
        );
        let f = Fixed { netmask: None, ..f };
        assert_eq!(ifconfig_args("eth1", &f).join(" "), "eth1 10.10.0.7 up");
    }

    #[test]
    fn the_firmware_brings_its_module() {
        let b = seed();
        assert!(!uses_firmware(&b));
        assert_eq!(modules(&b), ["iscsi_tcp", "sd_mod"]);
        let args = contracts::cmdline::node::parse(
            "vlx.cluster=6f1c0a4e-3b8e-4d3a-9d2a-1f0e5c7b9a10 rd.iscsi.firmware=1 rd.driver.pre=bnx2",
        )
        .unwrap();
        let contracts::cmdline::node::SanBoot::Iscsi(fw) = args.san else {
            panic!("not iSCSI")
        };
        assert!(uses_firmware(&fw));
        assert_eq!(modules(&fw), ["iscsi_tcp", "sd_mod", "iscsi_ibft"]);
        assert_eq!(args.pre_modules, ["bnx2"]);
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
