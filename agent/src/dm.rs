//! The node's root as a device-mapper table: a persistent snapshot of
//! `vlx-origin` with the node's own `vlx-cow-<node>` as exception store.
//! In the pool layout the store (and the swap) is an extent of
//! `vlx-pool`: a `linear` table maps it first, under a fixed name
//! ([`cluster::locate::COW_DM_NAME`]), and the snapshot takes that device.
//!
//! Where each volume lives comes from the plan, by role, through the
//! cluster crate's locator (the one the installer wrote the disk with);
//! the disk's own GPT must agree, or the meta volume describes another disk
//! and nothing is assembled.

use std::fmt;

use cluster::slots::Slot;
use cluster::{Locate, Located, NodePlan, Plan, Role, locate};

use crate::san::{SanDisk, partition_device};

/// Name of the device-mapper device that holds the node's root.
pub const ROOT_DM_NAME: &str = "vlx-root";

/// Snapshot chunk: 8 sectors of 512 bytes, 4 KiB, the chunk size LVM uses
/// by default. It must be a multiple of the logical block size of both
/// devices, so 4 KiB serves 512- and 4096-byte-sector SANs alike. The
/// kernel keeps the chunk size in the store's header and, for an existing
/// store, uses that one (dm-snap-persistent.c, `read_header`).
pub const CHUNK: DmSectors = DmSectors(8);

/// A count of 512-byte sectors: the unit of every device-mapper table,
/// whatever the devices' logical sector size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DmSectors(pub u64);

impl fmt::Display for DmSectors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One `snapshot` target line over a whole origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotTable {
    pub length: DmSectors,
    /// Device paths, e.g. `/dev/vda3`.
    pub origin: String,
    pub cow: String,
    pub chunk: DmSectors,
}

impl fmt::Display for SnapshotTable {
    /// The line `dmsetup create --table` takes (`P`: persistent store).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "0 {} snapshot {} {} P {}",
            self.length, self.origin, self.cow, self.chunk
        )
    }
}

/// One `linear` target line: `length` sectors of `device` from `offset`,
/// mapped as `/dev/mapper/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinearTable {
    pub name: String,
    pub length: DmSectors,
    /// The partition holding the extent, e.g. `/dev/vda4`.
    pub device: String,
    /// Start of the extent inside `device`.
    pub offset: DmSectors,
}

impl LinearTable {
    /// The device node the mapping appears as.
    pub fn path(&self) -> String {
        format!("/dev/mapper/{}", self.name)
    }
}

impl fmt::Display for LinearTable {
    /// The line `dmsetup create --table` takes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "0 {} linear {} {}",
            self.length, self.device, self.offset
        )
    }
}

/// A volume as the node uses it: the partition itself (GPT layout), or a
/// linear mapping of its extent still to be created (pool layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The path to open once the mapping (if any) exists.
    pub path: String,
    pub linear: Option<LinearTable>,
}

/// The volume of `role` as a device: its partition, or a linear table
/// named `dm_name` over its extent of the pool.
pub fn device(
    plan: &Plan,
    san: &SanDisk,
    role: &Role,
    dm_name: &str,
) -> Result<Device, LayoutError> {
    let (partition, v) = volume(plan, san, role)?;
    if v.is_whole_partition() {
        return Ok(Device {
            path: partition,
            linear: None,
        });
    }
    let linear = LinearTable {
        name: dm_name.to_owned(),
        length: DmSectors(v.size.get() / 512),
        device: partition,
        offset: DmSectors(v.within(plan.disk.sector_size).get() / 512),
    };
    Ok(Device {
        path: linear.path(),
        linear: Some(linear),
    })
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("plan.json has no {0}")]
    NotPlanned(String),
    #[error("the SAN /dev/{disk} has no partition {label}")]
    NotOnDisk { disk: String, label: String },
    #[error(
        "the SAN /dev/{disk} has {disk_sector}-byte sectors, but plan.json was made for {plan_sector}"
    )]
    SectorSize {
        disk: String,
        disk_sector: u64,
        plan_sector: u64,
    },
    #[error(
        "partition {label} on /dev/{disk} is number {number}, LBAs {first}-{last}, but plan.json says number {plan_number}, LBAs {plan_first}-{plan_last}"
    )]
    Disagree {
        disk: String,
        label: String,
        number: u32,
        first: u64,
        last: u64,
        plan_number: u32,
        plan_first: u64,
        plan_last: u64,
    },
}

/// The planned volume of `role`, checked against the disk's GPT; returns
/// the device path of its partition. The GPT layout gives every volume a
/// partition of its own; a volume inside the pool needs a linear table
/// first ([`device`]).
pub fn volume(plan: &Plan, san: &SanDisk, role: &Role) -> Result<(String, Located), LayoutError> {
    if san.sector != plan.disk.sector_size {
        return Err(LayoutError::SectorSize {
            disk: san.disk.clone(),
            disk_sector: san.sector.bytes(),
            plan_sector: plan.disk.sector_size.bytes(),
        });
    }
    let v = plan
        .volumes()
        .locate(role)
        .map_err(|e| LayoutError::NotPlanned(e.0))?;
    let p = &v.partition;
    let e = san
        .partition(&p.label)
        .ok_or_else(|| LayoutError::NotOnDisk {
            disk: san.disk.clone(),
            label: p.label.clone(),
        })?;
    if (e.number, e.first_lba, e.last_lba) != (p.number, p.first_lba.0, p.last_lba.0) {
        return Err(LayoutError::Disagree {
            disk: san.disk.clone(),
            label: p.label.clone(),
            number: e.number,
            first: e.first_lba,
            last: e.last_lba,
            plan_number: p.number,
            plan_first: p.first_lba.0,
            plan_last: p.last_lba.0,
        });
    }
    Ok((format!("/dev/{}", partition_device(&san.disk, p.number)), v))
}

/// The snapshot table of `node`'s root over the origin of a one-slot
/// layout (slot A).
pub fn snapshot(plan: &Plan, san: &SanDisk, node: &NodePlan) -> Result<SnapshotTable, LayoutError> {
    root(plan, san, node, Slot::A).map(|(_, t)| t)
}

/// The tables of `node`'s root over origin `slot`, in the order they are
/// created: the store's linear mapping (pool layout, and every store of a
/// two-slot layout, which ends in the node's record), then the snapshot.
pub fn root(
    plan: &Plan,
    san: &SanDisk,
    node: &NodePlan,
    slot: Slot,
) -> Result<(Option<LinearTable>, SnapshotTable), LayoutError> {
    let (origin, o) = volume(plan, san, &slot.role())?;
    let cow = device(
        plan,
        san,
        &locate::cow(node.name.as_str()),
        locate::COW_DM_NAME,
    )?;
    let table = SnapshotTable {
        length: DmSectors(o.size.get() / 512),
        origin,
        cow: cow.path,
        chunk: CHUNK,
    };
    Ok((cow.linear, table))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::plan;
    use cluster::SectorSize;
    use cluster::gpt::Entry;

    fn san(plan: &Plan, disk: &str) -> SanDisk {
        SanDisk {
            disk: disk.into(),
            sector: plan.disk.sector_size,
            entries: plan.disk.partitions.iter().map(Entry::from).collect(),
        }
    }

    #[test]
    fn tables_count_512_byte_sectors_at_both_sector_sizes() {
        // 64 MiB of origin is 131072 sectors of 512 bytes, whatever the
        // disk's own sector size.
        let cases = [
            (
                512,
                "vda",
                "n1",
                "0 131072 snapshot /dev/vda3 /dev/vda4 P 8",
            ),
            (
                512,
                "vda",
                "n3",
                "0 131072 snapshot /dev/vda3 /dev/vda8 P 8",
            ),
            (
                4096,
                "nvme0n1",
                "n2",
                "0 131072 snapshot /dev/nvme0n1p3 /dev/nvme0n1p6 P 8",
            ),
        ];
        for (sector, disk, node, want) in cases {
            let plan = plan(sector);
            let n = plan.node(node).unwrap();
            let t = snapshot(&plan, &san(&plan, disk), n).unwrap();
            assert_eq!(t.to_string(), want);
            let o = plan.volumes().locate(&Role::Origin).unwrap().partition;
            let lbas = o.last_lba.0 + 1 - o.first_lba.0;
            assert_eq!(t.length.0 * 512, lbas * u64::from(sector));
        }
    }

    #[test]
    fn a_pool_extent_is_mapped_linear_before_the_snapshot() {
        // n1: store 0-16 MiB, swap 16-24 MiB; n2: store from 24 MiB
        // (49152 sectors of 512 bytes), 16 MiB long, whatever the disk's
        // own sector size.
        let cases = [
            (512, "vda", "/dev/vda4"),
            (4096, "nvme0n1", "/dev/nvme0n1p4"),
        ];
        for (sector, disk, pool) in cases {
            let plan = crate::testing::plan_in(sector, "pool");
            let n = plan.node("n2").unwrap();
            let (linear, table) = root(&plan, &san(&plan, disk), n, Slot::A).unwrap();
            let linear = linear.expect("a pool store needs a linear table");
            assert_eq!(linear.to_string(), format!("0 32768 linear {pool} 49152"));
            assert_eq!(linear.path(), "/dev/mapper/vlx-cow");
            assert_eq!(
                table.to_string(),
                format!(
                    "0 131072 snapshot /dev/{disk}{}3 /dev/mapper/vlx-cow P 8",
                    if disk == "vda" { "" } else { "p" }
                )
            );
            let swap = device(&plan, &san(&plan, disk), &locate::swap("n2"), "vlx-swap").unwrap();
            assert_eq!(
                swap.linear.map(|l| l.to_string()),
                Some(format!("0 16384 linear {pool} 81920"))
            );
            assert_eq!(swap.path, "/dev/mapper/vlx-swap");
        }
        // The GPT layout needs no linear table.
        let plan = plan(512);
        let (linear, _) =
            root(&plan, &san(&plan, "vda"), plan.node("n2").unwrap(), Slot::A).unwrap();
        assert_eq!(linear, None);
    }

    #[test]
    fn refuses_a_pool_partition_that_disagrees_with_the_plan() {
        let plan = crate::testing::plan_in(512, "pool");
        let mut moved = san(&plan, "sda");
        moved.entries[3].last_lba -= 2048;
        let err = snapshot(&plan, &moved, plan.node("n1").unwrap()).unwrap_err();
        assert!(
            matches!(&err, LayoutError::Disagree { label, .. } if label == "vlx-pool"),
            "{err}"
        );
    }

    #[test]
    fn refuses_a_disk_that_disagrees_with_the_plan() {
        let plan = plan(512);
        let n = plan.node("n2").unwrap();

        let mut moved = san(&plan, "sda");
        moved.entries[5].first_lba += 2048;
        let err = snapshot(&plan, &moved, n).unwrap_err();
        assert!(
            matches!(&err, LayoutError::Disagree { label, .. } if label == "vlx-cow-n2"),
            "{err}"
        );

        let mut missing = san(&plan, "sda");
        missing.entries.retain(|e| e.name != "vlx-origin");
        let err = snapshot(&plan, &missing, n).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the SAN /dev/sda has no partition vlx-origin"
        );

        let mut other = san(&plan, "sda");
        other.sector = SectorSize::B4096;
        let err = snapshot(&plan, &other, n).unwrap_err();
        assert!(matches!(err, LayoutError::SectorSize { .. }), "{err}");

        let err = volume(&plan, &san(&plan, "sda"), &locate::cow("ghost")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "plan.json has no snapshot store of node ghost"
        );
    }
}
