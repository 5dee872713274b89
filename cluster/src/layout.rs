//! The SAN layout: which volume lives where, as a plain value.
//!
//! Partitions follow one another from the first MiB, each aligned to 1 MiB:
//! `vlx-esp`, `vlx-meta`, `vlx-origin`, then every node's `vlx-cow-<node>`
//! (and `vlx-swap-<node>`), and `vlx-shared` last so that "rest" can take
//! what is left. Partition GUIDs are UUIDv5 of the label under the cluster
//! uuid, so one profile always gives one disk.

use serde::{Deserialize, Serialize};
use uuid::{Uuid, uuid};

use crate::units::{Bytes, Lba, MIB, SectorSize};

/// Size of one GPT partition entry (UEFI 2.10, 5.3.3).
pub const ENTRY_SIZE: u64 = 128;
/// Entries a GPT reserves at least: 16 KiB, as the UEFI spec asks.
pub const MIN_ENTRIES: u64 = 128;

pub mod types {
    use uuid::{Uuid, uuid};
    pub const ESP: Uuid = uuid!("c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
    pub const LINUX_FS: Uuid = uuid!("0fc63daf-8483-4772-8e79-3d69d8477de4");
    pub const LINUX_SWAP: Uuid = uuid!("0657fd6d-a4ab-43c4-84e5-0933c84b4f4f");
    /// vlx's own type for dm-snapshot exception stores, so that no
    /// auto-mounter or installer of another system takes one for a file
    /// system.
    pub const VLX_COW: Uuid = uuid!("5240475a-3838-4ef8-850d-bcbf503f3471");
    /// vlx's own type for the pool of per-node extents (`layout = "pool"`).
    pub const VLX_POOL: Uuid = uuid!("d0349640-f1b9-4c59-acbf-380f6f1a4e8a");
}

/// GPT attribute bit 2: legacy BIOS bootable, which syslinux's `gptmbr.bin`
/// looks for (UEFI 2.10, table 5.8).
pub const ATTR_LEGACY_BIOS_BOOTABLE: u64 = 1 << 2;

/// What a volume is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Role {
    Esp,
    Meta,
    /// The origin; with two slots, slot A.
    Origin,
    /// Origin slot B (`storage.slots = 2`).
    #[serde(rename = "origin-b")]
    OriginB,
    Cow {
        node: String,
    },
    Swap {
        node: String,
    },
    Shared,
    /// The partition holding every node's store and swap as extents (the
    /// pool layout).
    Pool,
    /// Install media only: the partition holding the payload. No SAN has
    /// one.
    Payload,
    /// With two origin slots: the tail of node `node`'s store volume that
    /// holds its slot record ([`crate::slots::NodeRecord`]). Never a
    /// partition of its own: found through [`crate::Locate`].
    Record {
        node: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    /// 1-based partition number, as the kernel names it (`sda3`).
    pub number: u32,
    pub label: String,
    pub role: Role,
    pub type_guid: Uuid,
    pub guid: Uuid,
    pub first_lba: Lba,
    /// Inclusive, as in the GPT.
    pub last_lba: Lba,
    pub size: Bytes,
    pub attributes: u64,
}

impl Partition {
    /// Byte offset of the partition on the disk.
    pub fn offset(&self, sector: SectorSize) -> Bytes {
        sector.offset_of(self.first_lba)
    }
}

/// One volume inside the `vlx-pool` partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extent {
    /// The volume's name, as a partition of the GPT layout would be
    /// labelled (`vlx-cow-<node>`, `vlx-swap-<node>`).
    pub name: String,
    pub role: Role,
    /// Byte offset from the start of the pool partition; a multiple of
    /// [`PoolLayout::align`].
    pub start: Bytes,
    pub size: Bytes,
}

/// The pool layout's table: where every per-node volume lies inside the
/// `vlx-pool` partition. Only the installer writes it (in `plan.json`);
/// each node maps its own extents and no other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolLayout {
    /// Every extent starts and ends on this boundary, so that extents stay
    /// aligned to the SAN's sectors and to the snapshot chunk.
    pub align: Bytes,
    /// In the order of the nodes, each node's store before its swap.
    pub extents: Vec<Extent>,
}

impl PoolLayout {
    /// Places `volumes` (name, role, size) one after another from the
    /// pool's start; returns the table and the pool's size.
    pub fn place(volumes: impl IntoIterator<Item = (String, Role, Bytes)>) -> (PoolLayout, Bytes) {
        let mut cursor = 0u64;
        let extents = volumes
            .into_iter()
            .map(|(name, role, size)| {
                let len = size.get().next_multiple_of(POOL_ALIGN.get());
                let e = Extent {
                    name,
                    role,
                    start: Bytes(cursor),
                    size: Bytes(len),
                };
                cursor = cursor.saturating_add(len);
                e
            })
            .collect();
        (
            PoolLayout {
                align: POOL_ALIGN,
                extents,
            },
            Bytes(cursor),
        )
    }
}

/// Extent alignment in the pool: 1 MiB, as partitions are aligned.
pub const POOL_ALIGN: Bytes = Bytes(MIB);

/// The whole disk: GPT geometry and every partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskLayout {
    pub sector_size: SectorSize,
    pub size: Bytes,
    /// Count of logical sectors on the disk.
    pub lbas: u64,
    pub disk_guid: Uuid,
    /// Partition entries reserved in each GPT copy.
    pub entries: u32,
    pub first_usable: Lba,
    pub last_usable: Lba,
    pub partitions: Vec<Partition>,
    /// The extents of the `vlx-pool` partition, in the pool layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolLayout>,
}

impl DiskLayout {
    pub fn by_label(&self, label: &str) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.label == label)
    }

    pub fn by_role(&self, role: &Role) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.role == *role)
    }

    /// Whether the layout carries two origin slots (`storage.slots = 2`):
    /// then every node's store volume ends in its slot record.
    pub fn has_slots(&self) -> bool {
        self.by_role(&Role::OriginB).is_some()
    }

    /// Sectors one copy of the partition entry array takes.
    pub fn entry_lbas(&self) -> u64 {
        u64::from(self.entries) * ENTRY_SIZE / self.sector_size.bytes()
    }
}

/// A volume to place, in order.
#[derive(Debug, Clone)]
pub(crate) struct Want {
    pub label: String,
    pub role: Role,
    pub type_guid: Uuid,
    pub attributes: u64,
    /// `None`: take the rest of the disk (only the last volume).
    pub size: Option<Bytes>,
}

/// Why a layout does not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NoFit {
    pub need: Bytes,
    pub have: Bytes,
}

/// The namespace for GUIDs that do not depend on the cluster.
const VLX_NAMESPACE: Uuid = uuid!("21a30acb-880d-469c-90ad-59b79fac0457");

/// A GUID for `name` that is the same on every machine for one cluster.
pub fn derived_guid(cluster: Uuid, name: &str) -> Uuid {
    let ns = Uuid::new_v5(&VLX_NAMESPACE, cluster.as_bytes());
    Uuid::new_v5(&ns, name.as_bytes())
}

/// Places `wants` on a disk of `size` bytes. Pure and deterministic.
pub(crate) fn place(
    cluster: Uuid,
    sector: SectorSize,
    size: Bytes,
    wants: &[Want],
    min_last: Bytes,
) -> Result<DiskLayout, NoFit> {
    let s = sector.bytes();
    let lbas = size.get() / s;
    let per_sector = s / ENTRY_SIZE;
    let entries = (wants.len() as u64)
        .max(MIN_ENTRIES)
        .next_multiple_of(per_sector);
    let entry_lbas = entries * ENTRY_SIZE / s;
    // LBA 0 protective MBR, LBA 1 header, then the entries; the backup
    // entries and header take the same room at the end.
    let first_usable = 2 + entry_lbas;
    let need_fixed: u64 = wants
        .iter()
        .filter_map(|w| w.size)
        .map(|b| b.get().next_multiple_of(MIB))
        .sum();
    let min_need = Bytes(MIB + need_fixed + min_last.get() + MIB);
    if lbas < 2 * first_usable + 1 {
        return Err(NoFit {
            need: min_need,
            have: size,
        });
    }
    let last_usable = lbas - 1 - entry_lbas - 1;
    // End of the usable area, rounded down to a MiB.
    let end = ((last_usable + 1) * s) / MIB * MIB;

    let mut cursor = (first_usable * s).next_multiple_of(MIB);
    let mut partitions = Vec::with_capacity(wants.len());
    for (i, w) in wants.iter().enumerate() {
        let len = match w.size {
            Some(b) => b.get().next_multiple_of(MIB),
            None => end.saturating_sub(cursor),
        };
        let floor = if w.size.is_none() {
            min_last.get()
        } else {
            MIB
        };
        if cursor + len > end || len < floor {
            return Err(NoFit {
                need: min_need,
                have: size,
            });
        }
        partitions.push(Partition {
            number: i as u32 + 1,
            label: w.label.clone(),
            role: w.role.clone(),
            type_guid: w.type_guid,
            guid: derived_guid(cluster, &w.label),
            first_lba: Lba(cursor / s),
            last_lba: Lba((cursor + len) / s - 1),
            size: Bytes(len),
            attributes: w.attributes,
        });
        cursor += len;
    }
    Ok(DiskLayout {
        sector_size: sector,
        size,
        lbas,
        disk_guid: derived_guid(cluster, "disk"),
        entries: entries as u32,
        first_usable: Lba(first_usable),
        last_usable: Lba(last_usable),
        partitions,
        pool: None,
    })
}
