//! The node's root as a device-mapper table: a persistent snapshot of
//! `vlx-origin` with the node's own `vlx-cow-<node>` as exception store.
//!
//! Where each volume lives comes from the plan, by role, through the
//! cluster crate's locator (the one the installer wrote the disk with);
//! the disk's own GPT must agree, or the meta volume describes another disk
//! and nothing is assembled.

use std::fmt;

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
/// partition of its own; a volume inside a shared partition (a pool) would
/// need a linear table first.
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

/// The snapshot table of `node`'s root.
pub fn snapshot(plan: &Plan, san: &SanDisk, node: &NodePlan) -> Result<SnapshotTable, LayoutError> {
    let (origin, o) = volume(plan, san, &Role::Origin)?;
    let (cow, _) = volume(plan, san, &locate::cow(node.name.as_str()))?;
    Ok(SnapshotTable {
        length: DmSectors(o.size.get() / 512),
        origin,
        cow,
        chunk: CHUNK,
    })
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
