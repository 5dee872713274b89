//! Names that one product makes up and another looks for: GPT partition
//! names on the SAN and on the install media, the files and folders of the
//! meta volume, the paths a node's root and an initramfs share. Spelled
//! here once; the readers and the writers both use these.

use std::path::PathBuf;

/// GPT partition names (PARTLABEL) on the SAN and on the install media.
pub mod label {
    /// The SAN's EFI system partition.
    pub const ESP: &str = "vlx-esp";
    /// The meta volume: the cluster table, rendered files, boot tree, journal.
    pub const META: &str = "vlx-meta";
    /// The golden root, never written after the install; with two origin
    /// slots (`storage.slots = 2`) it is slot A.
    pub const ORIGIN: &str = "vlx-origin";
    /// Origin slot B (`storage.slots = 2`): the slot an upgrade writes
    /// while the cluster runs on slot A, and the other way round.
    pub const ORIGIN_B: &str = "vlx-origin-b";
    /// The cluster-wide shared volume.
    pub const SHARED: &str = "vlx-shared";
    /// The pool layout's one partition, holding every node's store and
    /// swap as extents (the table is in the plan).
    pub const POOL: &str = "vlx-pool";
    /// Prefix of a node's snapshot store: [`cow`].
    pub const COW_PREFIX: &str = "vlx-cow-";
    /// Prefix of a node's swap: [`swap`].
    pub const SWAP_PREFIX: &str = "vlx-swap-";

    /// Node `node`'s persistent dm-snapshot exception store.
    pub fn cow(node: &str) -> String {
        format!("{COW_PREFIX}{node}")
    }

    /// Node `node`'s swap.
    pub fn swap(node: &str) -> String {
        format!("{SWAP_PREFIX}{node}")
    }

    /// The install media's EFI system partition.
    pub const MEDIA_ESP: &str = "vlx-media-esp";
    /// The install media's payload (ISO 9660).
    pub const PAYLOAD: &str = "vlx-payload";
}

/// Files and folders at the root of the meta volume (`vlx-meta`).
pub mod meta {
    use super::PathBuf;

    /// The cluster profile as installed.
    pub const CLUSTER: &str = "cluster.toml";
    /// The cluster table: `cluster::Plan` as JSON.
    pub const PLAN: &str = "plan.json";
    /// The image manifest that was installed.
    pub const MANIFEST: &str = crate::image::FILE;
    /// The install journal: steps done, for resuming after a crash.
    pub const JOURNAL: &str = "journal.json";
    /// The PXE boot tree, served over TFTP and HTTP.
    pub const TFTP: &str = "tftp";
    /// The per-node folders: [`node_root`].
    pub const NODES: &str = "nodes";
    /// With two origin slots: which slot the cluster boots, the previous
    /// one, and the image of each (`cluster::slots::SlotTable`).
    pub const SLOTS: &str = "slots.json";
    /// With two origin slots: `slots/<a|b>/` holds each filled slot's
    /// `manifest.json`, `vmlinuz` and `initramfs.img`, so that a rollback
    /// boots the previous slot's kernel without its image directory.
    pub const SLOT_DIRS: &str = "slots";

    /// The files rendered for node `node`, laid over its root at boot.
    pub fn node_root(node: &str) -> PathBuf {
        [NODES, node, "root"].iter().collect()
    }

    /// Where the node agent leaves the meta volume on a node's root (the
    /// rendered configurations name files under it).
    pub const ON_NODE: &str = "/vlx/meta";
}

/// Paths inside the initramfs that the image builder writes and the init
/// programs read.
pub mod initramfs {
    /// Module names, one a line, dependencies first: the order to load them.
    pub const MODULES_LOAD: &str = "/etc/vlx/modules.load";
}

/// What the blades' cluster services and the virtual clusters' agent
/// (`vlx-vcd`) agree on: the installer renders the cluster's dnsmasq with
/// these, `vc-net` names taps and writes files by them.
pub mod vc {
    /// The prefix of every VM's tap on its blade (`vx` + the MAC's 12 hex
    /// digits) and of nothing else a blade has: the cluster dnsmasq is kept
    /// off these (`except-interface=vx*`).
    pub const TAP_PREFIX: &str = "vx";
    /// Every VM's name and address, `/etc/hosts` style, kept by `vlx-vcd`
    /// from the VC state; the cluster dnsmasq reads it (`addn-hosts=`) and
    /// re-reads it on SIGHUP.
    pub const HOSTS: &str = "/etc/vlx/vc-hosts";
    /// The settings of the VC networks the installer renders from the
    /// cluster profile (its `[vc]` pool included) for `vlx-vc set-net` and
    /// `vlx-vcd`.
    pub const NET_SETTINGS: &str = "/etc/vlx/vc-net.toml";
}

/// iSCSI names both sides of a boot agree on.
pub mod iscsi {
    /// The initiator name of a blade: the cluster's uuid and the storage
    /// NIC's MAC (its six bytes), so that a target's access list can name
    /// the cluster's blades. The node agent logs in with it; a boot ROM's
    /// stored settings carry the same.
    pub fn initiator_name(cluster: uuid::Uuid, mac: [u8; 6]) -> String {
        let m: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        format!("iqn.2007-01.org.vlx:{}.{m}", cluster.simple())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_names() {
        assert_eq!(label::cow("n2"), "vlx-cow-n2");
        assert_eq!(label::swap("blade07"), "vlx-swap-blade07");
        assert_eq!(meta::node_root("n1"), PathBuf::from("nodes/n1/root"));
        assert_eq!(meta::MANIFEST, "manifest.json");
    }
}
