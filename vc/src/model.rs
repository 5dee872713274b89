//! The virtual-cluster model: names, ids, policies, a VC's specification
//! and the blades it may be placed on. Plain values; nothing here does I/O.

use std::fmt;
use std::str::FromStr;

use cluster::name::check_label;
use cluster::{Bytes, MacAddr, NodeName};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Longest VC name: it is one DNS label (`vm1.<vc>.<domain>`) and part of
/// etcd keys and file names on the shared volume; 32 keeps those short.
pub const MAX_VC_NAME: usize = 32;

/// Most VMs in one VC. A VM's MAC carries its index in 16 bits, and the
/// VC's placement is one etcd value (about 70 bytes a VM) that must stay
/// well under etcd's 1.5 MiB request limit.
pub const MAX_VMS: u32 = 4096;

/// Largest VC id: a VM's MAC carries the id in 24 bits.
pub const MAX_VC_ID: u32 = 0x00ff_ffff;

/// First octet of every VM MAC: locally administered (bit 1) and unicast
/// (bit 0 clear), and different from QEMU's default `52:54:00` prefix so a
/// VM NIC that kept QEMU's default is easy to tell apart.
pub const VM_MAC_PREFIX: u8 = 0x06;

/// A VC's name: one DNS label in lower case.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VcName(String);

impl VcName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{name}` is not a valid VC name: {reason}")]
pub struct VcNameError {
    name: String,
    reason: String,
}

impl FromStr for VcName {
    type Err = VcNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        check_label(s, MAX_VC_NAME).map_err(|reason| VcNameError {
            name: s.to_owned(),
            reason,
        })?;
        Ok(VcName(s.to_owned()))
    }
}

impl TryFrom<String> for VcName {
    type Error = VcNameError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<VcName> for String {
    fn from(n: VcName) -> String {
        n.0
    }
}

impl fmt::Display for VcName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A VC's numeric identity (24 bits, never 0): the middle of its VMs' MACs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct VcId(u32);

impl VcId {
    /// `None` for 0 or anything wider than 24 bits.
    pub fn new(id: u32) -> Option<VcId> {
        (1..=MAX_VC_ID).contains(&id).then_some(VcId(id))
    }

    /// The id a VC gets when its profile names none: the first 24 bits of
    /// SHA-256 over its name, so the same name gives the same MACs on any
    /// machine. Two names may collide; creation refuses the second (the
    /// profile's `id` then picks another).
    pub fn from_name(name: &VcName) -> VcId {
        let d = Sha256::digest(format!("vlx-vc:{name}").as_bytes());
        let id = u32::from_be_bytes([0, d[0], d[1], d[2]]);
        VcId(id.max(1))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for VcId {
    type Error = String;

    fn try_from(n: u32) -> Result<Self, Self::Error> {
        VcId::new(n).ok_or_else(|| format!("VC id {n} is not in 1..={MAX_VC_ID}"))
    }
}

impl From<VcId> for u32 {
    fn from(id: VcId) -> u32 {
        id.0
    }
}

impl fmt::Display for VcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06x}", self.0)
    }
}

/// A VM's index in its VC, from 1. Its name is `vm<index>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VmIndex(pub u32);

impl VmIndex {
    pub fn name(self) -> String {
        format!("vm{}", self.0)
    }
}

impl fmt::Display for VmIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vm{}", self.0)
    }
}

impl FromStr for VmIndex {
    type Err = String;

    /// Accepts `vm3` or `3`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix("vm").unwrap_or(s);
        match digits.parse::<u32>() {
            Ok(n) if n >= 1 => Ok(VmIndex(n)),
            _ => Err(format!("`{s}` is not a VM (write vm1, vm2, … or 1, 2, …)")),
        }
    }
}

/// The VM's MAC: `06:II:II:II:NN:NN` with the VC id `I` and VM index `N`.
/// Locally administered and unicast; distinct for distinct (id, index).
pub fn vm_mac(id: VcId, vm: VmIndex) -> MacAddr {
    let i = id.get().to_be_bytes();
    let n = (vm.0 & 0xffff) as u16;
    let n = n.to_be_bytes();
    MacAddr([VM_MAC_PREFIX, i[1], i[2], i[3], n[0], n[1]])
}

/// How VMs are laid over blades (the seed's two policies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Fill a blade with as many VMs as it allows before the next.
    Block,
    /// Round-robin over the blades.
    Cyclic,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Block => "block",
            Policy::Cyclic => "cyclic",
        }
    }
}

impl FromStr for Policy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "block" => Ok(Policy::Block),
            "cyclic" => Ok(Policy::Cyclic),
            _ => Err(format!(
                "`{s}` is not a placement policy (use block or cyclic)"
            )),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether vCPUs must fit free cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// One vCPU per free core, and memory.
    Strict,
    /// vCPUs may overcommit cores; memory must still fit.
    Free,
}

impl Fit {
    pub fn as_str(self) -> &'static str {
        match self {
            Fit::Strict => "strict",
            Fit::Free => "free",
        }
    }
}

impl FromStr for Fit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "strict" => Ok(Fit::Strict),
            "free" => Ok(Fit::Free),
            _ => Err(format!("`{s}` is not a mode (use strict or free)")),
        }
    }
}

impl fmt::Display for Fit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to the VMs of a blade that is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Restart {
    /// They are marked lost and stay so until an administrator acts.
    Manual,
    /// They are placed again on the survivors by the VC's policy.
    Auto,
}

impl FromStr for Restart {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "manual" => Ok(Restart::Manual),
            "auto" => Ok(Restart::Auto),
            _ => Err(format!("`{s}` is not a restart rule (use manual or auto)")),
        }
    }
}

/// Everything that defines a VC, from its profile or from flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VcSpec {
    pub name: VcName,
    pub id: VcId,
    /// The guest image's name (a base image on the shared volume).
    pub guest: String,
    pub vms: u32,
    pub vcpus: u32,
    pub memory: Bytes,
    pub placement: Policy,
    pub mode: Fit,
    pub restart: Restart,
}

impl VcSpec {
    /// The VMs' indices, in order.
    pub fn indices(&self) -> impl Iterator<Item = VmIndex> + use<> {
        (1..=self.vms).map(VmIndex)
    }
}

/// A blade's capacity for VMs (whole, or what is left of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blade {
    pub name: NodeName,
    pub cores: u32,
    pub memory: Bytes,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_is_local_unicast_and_carries_id_and_index() {
        let id = VcId::new(0x12_3456).unwrap();
        let m = vm_mac(id, VmIndex(0x0102));
        assert_eq!(m.to_string(), "06:12:34:56:01:02");
        assert!(!m.is_multicast());
        assert_eq!(m.0[0] & 2, 2, "locally administered bit");
    }

    #[test]
    fn id_from_name_is_stable_and_nonzero() {
        let n: VcName = "demo".parse().unwrap();
        assert_eq!(VcId::from_name(&n), VcId::from_name(&n));
        assert!(VcId::from_name(&n).get() >= 1);
        assert!(VcId::new(0).is_none());
        assert!(VcId::new(MAX_VC_ID + 1).is_none());
    }

    #[test]
    fn vm_index_parses_both_forms() {
        assert_eq!("vm3".parse::<VmIndex>(), Ok(VmIndex(3)));
        assert_eq!("3".parse::<VmIndex>(), Ok(VmIndex(3)));
        assert!("vm0".parse::<VmIndex>().is_err());
        assert!("x".parse::<VmIndex>().is_err());
    }
}
