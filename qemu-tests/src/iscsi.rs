//! The iSCSI rehearsal's plan: the SAN is a target (tgt) on a storage
//! network of its own, and every blade cold-starts from it as a NIC boot
//! ROM does. Pure: the executor is [`crate::storage`].
//!
//! The storage network is the profile's extra network whose CIDR holds
//! `san.iscsi.storage_ip`; the target listens there, and each blade's
//! storage NIC has the node's address on that network (`extra_ips`). The
//! boot ROM is iPXE (`ipxe.lkrn`, handed to SeaBIOS by QEMU as a kernel)
//! with its stored settings as its command line: the fixed address on
//! the storage NIC, the initiator name and `sanboot` of the target's LUN.
//! `sanboot` publishes an iBFT with all of it and boots the LUN's MBR
//! (syslinux on the ESP), so no DHCP or TFTP server is needed anywhere;
//! the profile's `sifip = "ibft"` makes the command line on the ESP say
//! `rd.iscsi.firmware=1`, and the node agent logs in from the iBFT.
//!
//! CHAP: the target asks every initiator for mutual CHAP ([`RigChap`]).
//! Each blade's stored settings carry the blade's name and secret and the
//! target's (iPXE's `username`, `password`, `reverse-username`,
//! `reverse-password`), as an HBA keeps them in its NVRAM, set up once
//! per blade by an administrator; iPXE publishes them in the iBFT and
//! `iscsistart -b` logs in with them. They are never on the blades' kernel
//! command line nor in the SAN's boot tree. (In the rig the stored settings
//! are iPXE's command line on the host, as an HBA's NVRAM is on the blade.)

use std::net::Ipv4Addr;
use std::path::PathBuf;

use cluster::{MacAddr, Plan};
use serde::Serialize;

/// Debian's iPXE built to be loaded as a Linux kernel (package `ipxe`).
pub const IPXE_LKRN: &str = "/usr/lib/ipxe/ipxe.lkrn";

/// The LUN of the SAN on the target: tgt's LUN 0 is its controller.
pub const LUN: u16 = 1;

/// The storage network of an iSCSI rehearsal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IscsiRig {
    /// The storage network's `vde_switch` socket directory.
    pub switch: PathBuf,
    /// The target's portal, on the storage network.
    pub portal: Ipv4Addr,
    pub port: u16,
    pub prefix: u8,
    /// The target's name (IQN), from `san.iscsi.ivid`.
    pub target: String,
    pub lun: u16,
    /// The boot ROM every blade runs.
    pub rom: PathBuf,
    /// The CHAP the target asks for (none: any initiator may log in).
    pub chap: Option<RigChap>,
}

/// Mutual CHAP between the blades and the target: the blades' name and
/// secret (the target checks them), and the target's (the blades check
/// them). One pair for every blade, as tgt binds an account to a target.
/// The rig's own test values: a real cluster's live in its HBAs' NVRAM
/// and the target's configuration, nowhere in this repository's profiles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RigChap {
    pub username: String,
    pub password: String,
    pub reverse_username: String,
    pub reverse_password: String,
}

impl RigChap {
    /// The rehearsal's CHAP (secrets of 12 to 16 characters, the length
    /// RFC 3720 initiators such as Windows' insist on).
    pub fn rig() -> RigChap {
        RigChap {
            username: "vlx-blade".into(),
            password: "Rig-Blade-0413".into(),
            reverse_username: "vlx-san".into(),
            reverse_password: "Rig-Target-0731".into(),
        }
    }

    /// The same names with a wrong blade secret: what a blade whose
    /// NVRAM was set up wrong sends.
    pub fn wrong(&self) -> RigChap {
        RigChap {
            password: "Wrong-Secret-99".into(),
            ..self.clone()
        }
    }

    /// The installer's `--chap FILE` text (mutual: `_in` is the target's).
    pub fn installer_file(&self) -> String {
        format!(
            "username={}\npassword={}\nusername_in={}\npassword_in={}\n",
            self.username, self.password, self.reverse_username, self.reverse_password
        )
    }
}

/// Why an iSCSI rehearsal cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IscsiPlanError {
    #[error(
        "no extra network of the profile holds the iSCSI target {0}: the rig puts the target on \
         the storage network ([[network.extra]] whose cidr holds san.iscsi.storage_ip)"
    )]
    NoStorageNetwork(Ipv4Addr),
    #[error("node {node} has no address on the storage network {network} (extra_ips)")]
    NoStorageAddress { node: String, network: String },
    #[error(
        "the iSCSI rehearsal cold-starts blades from their boot ROM's iBFT: the profile needs \
         san.iscsi.sifip = \"ibft\", not {0:?}"
    )]
    NotFirmware(String),
}

/// The storage side of the rehearsal of `cluster`, or `None` for a SAN
/// that is a shared disk.
pub fn plan(cluster: &Plan, run: &std::path::Path) -> Result<Option<IscsiRig>, IscsiPlanError> {
    let cluster::profile::Transport::Iscsi(i) = &cluster.san.transport else {
        return Ok(None);
    };
    if !i.from_firmware() {
        return Err(IscsiPlanError::NotFirmware(i.sifip.clone()));
    }
    let net = storage_network(cluster, i.storage_ip)?;
    Ok(Some(IscsiRig {
        switch: run.join("storage"),
        portal: i.storage_ip,
        port: i.storage_port,
        prefix: net.cidr.prefix(),
        target: i.ivid.clone(),
        lun: LUN,
        rom: PathBuf::from(IPXE_LKRN),
        chap: Some(RigChap::rig()),
    }))
}

fn storage_network(
    cluster: &Plan,
    portal: Ipv4Addr,
) -> Result<&cluster::plan::ExtraNetPlan, IscsiPlanError> {
    cluster
        .network
        .extra
        .iter()
        .find(|n| n.cidr.contains(portal))
        .ok_or(IscsiPlanError::NoStorageNetwork(portal))
}

/// A blade's address on the storage network.
pub fn storage_address(
    cluster: &Plan,
    rig: &IscsiRig,
    node: &cluster::plan::NodePlan,
) -> Result<Ipv4Addr, IscsiPlanError> {
    let net = storage_network(cluster, rig.portal)?;
    node.extra_ips
        .iter()
        .find(|e| e.network == net.name)
        .map(|e| e.ip)
        .ok_or_else(|| IscsiPlanError::NoStorageAddress {
            node: node.name.to_string(),
            network: net.name.clone(),
        })
}

/// The second path to the target: a second storage network (its own
/// `vde_switch`) where the target answers on a second portal, and each
/// blade has a second storage NIC, as a SAN with two controllers or two
/// fabric ports and blades with two storage NICs have. The seed's profile
/// names one portal, so the rig derives the second network: the storage
/// network's next subnet of the same size, unless the plan uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecondPath {
    pub switch: PathBuf,
    pub portal: Ipv4Addr,
    pub prefix: u8,
}

impl SecondPath {
    /// The address on the second network of the host at `first` on the
    /// storage network (the same host part).
    pub fn address(&self, first: Ipv4Addr) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(first).wrapping_add(subnet_size(self.prefix)))
    }
}

fn subnet_size(prefix: u8) -> u32 {
    1u32.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

/// The second path of the rehearsal of `cluster` with `rig`, or `None`
/// when the next subnet is one of the plan's networks (or past the end of
/// the address space).
pub fn second_path(cluster: &Plan, rig: &IscsiRig) -> Option<SecondPath> {
    let size = subnet_size(rig.prefix);
    let portal = u32::from(rig.portal)
        .checked_add(size)
        .map(Ipv4Addr::from)?;
    let used = cluster.network.cidr.contains(portal)
        || cluster
            .network
            .extra
            .iter()
            .any(|n| n.cidr.contains(portal));
    (!used && size > 0).then(|| SecondPath {
        switch: rig.switch.with_file_name("storage2"),
        portal,
        prefix: rig.prefix,
    })
}

/// The MAC of a blade's second storage NIC: as [`storage_mac`], under
/// another locally administered prefix.
pub fn second_storage_mac(cluster_mac: MacAddr) -> MacAddr {
    let b = cluster_mac.0;
    MacAddr([0x52, 0x54, 0x5b, b[3], b[4], b[5]])
}

/// The MAC of a blade's storage NIC: the cluster NIC's last three bytes
/// under a locally administered prefix, so that no node's MAC in the
/// cluster table is a storage NIC's.
pub fn storage_mac(cluster_mac: MacAddr) -> MacAddr {
    let b = cluster_mac.0;
    MacAddr([0x52, 0x54, 0x5a, b[3], b[4], b[5]])
}

/// The initiator name a blade's boot ROM stores: the node agent's own
/// convention (`contracts::names::iscsi::initiator_name`): the cluster's
/// uuid and the storage NIC's MAC.
pub fn initiator_name(cluster: &Plan, mac: MacAddr) -> String {
    contracts::names::iscsi::initiator_name(cluster.cluster.uuid, mac.0)
}

/// The netmask of a prefix length.
fn netmask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0))
}

/// The settings a blade's boot ROM stores, as the iPXE script it runs:
/// the storage NIC (`net1`, after the cluster NIC) with a fixed address,
/// the initiator name, CHAP when the target asks for it, and `sanboot` of
/// the SAN's LUN. No DHCP: nothing on either network serves one at a cold
/// start. (The root path's LUN is hexadecimal, RFC 4173.)
///
/// With a second path (`second`: its network and the blade's address on
/// it), `net2` gets that address too and `sanboot` names both portals of
/// the one target: iPXE boots through whichever answers first and
/// describes every path it opened in the iBFT, one NIC and one target
/// each (its `sanboot` documentation, "Boot from a multipath iSCSI
/// target"); the node agent logs in to each and builds the multipath map.
pub fn sanboot_script(
    rig: &IscsiRig,
    addr: Ipv4Addr,
    initiator: &str,
    second: Option<(&SecondPath, Ipv4Addr)>,
) -> String {
    let chap = rig
        .chap
        .as_ref()
        .map(|c| {
            format!(
                "set username {} && set password {} && set reverse-username {} && \
                 set reverse-password {} && ",
                c.username, c.password, c.reverse_username, c.reverse_password
            )
        })
        .unwrap_or_default();
    let uri =
        |portal: Ipv4Addr| format!("iscsi:{portal}::{}:{:x}:{}", rig.port, rig.lun, rig.target);
    match second {
        None => format!(
            "set net1/ip {addr} && set net1/netmask {} && set initiator-iqn {initiator} && \
             {chap}ifopen net1 && sanboot {}",
            netmask(rig.prefix),
            uri(rig.portal)
        ),
        Some((p, addr2)) => format!(
            "set net1/ip {addr} && set net1/netmask {} && set net2/ip {addr2} && \
             set net2/netmask {} && set initiator-iqn {initiator} && \
             {chap}ifopen net1 && ifopen net2 && sanboot {} {}",
            netmask(rig.prefix),
            netmask(p.prefix),
            uri(rig.portal),
            uri(p.portal)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boot_rom_script_names_address_initiator_and_lun() {
        let rig = IscsiRig {
            switch: "/r/storage".into(),
            portal: Ipv4Addr::new(10, 10, 0, 250),
            port: 3260,
            prefix: 24,
            target: "iqn.2007-01.it.unipi.di:virtualinux.san0".into(),
            lun: 1,
            rom: IPXE_LKRN.into(),
            chap: None,
        };
        assert_eq!(
            sanboot_script(&rig, Ipv4Addr::new(10, 10, 0, 3), "iqn.x:y", None),
            "set net1/ip 10.10.0.3 && set net1/netmask 255.255.255.0 && set initiator-iqn iqn.x:y \
             && ifopen net1 && sanboot iscsi:10.10.0.250::3260:1:iqn.2007-01.it.unipi.di:virtualinux.san0"
        );
        let chap = IscsiRig {
            chap: Some(RigChap::rig()),
            ..rig.clone()
        };
        assert_eq!(
            sanboot_script(&chap, Ipv4Addr::new(10, 10, 0, 3), "iqn.x:y", None),
            "set net1/ip 10.10.0.3 && set net1/netmask 255.255.255.0 && set initiator-iqn iqn.x:y \
             && set username vlx-blade && set password Rig-Blade-0413 && set reverse-username \
             vlx-san && set reverse-password Rig-Target-0731 && ifopen net1 && sanboot \
             iscsi:10.10.0.250::3260:1:iqn.2007-01.it.unipi.di:virtualinux.san0"
        );
        assert_eq!(
            RigChap::rig().installer_file(),
            "username=vlx-blade\npassword=Rig-Blade-0413\nusername_in=vlx-san\n\
             password_in=Rig-Target-0731\n"
        );
        assert_ne!(RigChap::rig().wrong().password, RigChap::rig().password);
        assert_eq!(netmask(16), Ipv4Addr::new(255, 255, 0, 0));
        let second = SecondPath {
            switch: "/r/storage2".into(),
            portal: Ipv4Addr::new(10, 10, 1, 250),
            prefix: 24,
        };
        let a2 = second.address(Ipv4Addr::new(10, 10, 0, 3));
        assert_eq!(a2, Ipv4Addr::new(10, 10, 1, 3));
        assert_eq!(
            sanboot_script(
                &rig,
                Ipv4Addr::new(10, 10, 0, 3),
                "iqn.x:y",
                Some((&second, a2))
            ),
            "set net1/ip 10.10.0.3 && set net1/netmask 255.255.255.0 && set net2/ip 10.10.1.3 \
             && set net2/netmask 255.255.255.0 && set initiator-iqn iqn.x:y && ifopen net1 && \
             ifopen net2 && sanboot iscsi:10.10.0.250::3260:1:iqn.2007-01.it.unipi.di:virtualinux.san0 \
             iscsi:10.10.1.250::3260:1:iqn.2007-01.it.unipi.di:virtualinux.san0"
        );
        assert_eq!(
            second_storage_mac("00:30:48:7a:10:03".parse().unwrap()).to_string(),
            "52:54:5b:7a:10:03"
        );
        assert_eq!(
            storage_mac("00:30:48:7a:10:03".parse().unwrap()).to_string(),
            "52:54:5a:7a:10:03"
        );
    }
}
