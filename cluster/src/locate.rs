//! Volumes by role: where node X's snapshot store or swap, the origin, the
//! meta volume, the shared volume or the ESP lives on the SAN.
//!
//! Every consumer (the installer's steps, `reset-node`, `status`, `verify`
//! and the node agent) asks a [`Locate`] by [`Role`] and gets a [`Located`]
//! byte range and the partition that holds it; nobody looks a partition up
//! by its label. [`GptVolumes`] is one GPT partition per volume;
//! [`PoolVolumes`] puts every node's store and swap as extents inside the
//! one `vlx-pool` partition (the table is the plan's [`PoolLayout`]);
//! [`Volumes`] is whichever of the two a plan uses. A LUN of another
//! transport would be one more implementation of the same trait.
//!
//! One volume is found before any plan is known: the meta volume holds the
//! plan, so a reader of an installed SAN finds it by the disk's own
//! partition table ([`meta_entry`]).

use crate::gpt::Entry;
use crate::layout::{DiskLayout, Partition, PoolLayout, Role};
use crate::units::Bytes;

/// Bytes from a file system's start that hold its ext4 superblock's magic
/// and UUID (the superblock starts at byte 1024; the UUID ends at 0x78).
pub const EXT4_HEAD: usize = 1024 + 0x78;

/// The UUID of the ext4 file system whose first bytes are `head` (at least
/// [`EXT4_HEAD`] of them); `None` without an ext4 superblock there. The
/// meta volume's UUID is its generation (`docs/contracts.md`): the
/// installer, the node agent and the rig read it with this.
pub fn ext4_uuid(head: &[u8]) -> Option<uuid::Uuid> {
    let sb = head.get(1024..EXT4_HEAD)?;
    if sb[0x38..0x3A] != [0x53, 0xEF] {
        return None;
    }
    uuid::Uuid::from_slice(&sb[0x68..0x78]).ok()
}

/// The partition label of the meta volume, the one volume found from the
/// disk's own table rather than from a plan.
pub const META_LABEL: &str = contracts::names::label::META;

/// The device-mapper name under which a node maps its own snapshot store
/// when it is an extent of the pool (a `linear` table over `vlx-pool`).
pub const COW_DM_NAME: &str = "vlx-cow";
/// The same for the node's swap extent; rendered configs name
/// `/dev/mapper/vlx-swap` in the pool layout.
pub const SWAP_DM_NAME: &str = "vlx-swap";

/// Where a volume is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The volume's own name: its partition label in the GPT layout, its
    /// extent name in the pool (`vlx-cow-n2` either way).
    pub label: String,
    /// The partition that holds the volume: in the GPT layout the volume
    /// is the whole partition; in the pool it holds many volumes.
    pub partition: Partition,
    /// Byte offset of the volume on the disk.
    pub offset: Bytes,
    /// Length of the volume in bytes.
    pub size: Bytes,
}

impl Located {
    /// Whether the volume fills its partition, so that the partition's
    /// device node can stand for it (the GPT layout).
    pub fn is_whole_partition(&self) -> bool {
        self.size == self.partition.size
    }

    /// Byte offset of the volume inside its partition.
    pub fn within(&self, sector: crate::units::SectorSize) -> Bytes {
        Bytes(self.offset.get() - self.partition.offset(sector).get())
    }
}

/// The plan has no volume of this role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the plan has no {0}")]
pub struct NotPlanned(pub String);

/// Answers where a volume of a role lives.
pub trait Locate {
    /// The volume of `role`, if the layout has one (swap and the shared
    /// volume are optional).
    fn find(&self, role: &Role) -> Option<Located>;

    /// The volume of `role`, which the layout must have.
    fn locate(&self, role: &Role) -> Result<Located, NotPlanned> {
        self.find(role).ok_or_else(|| NotPlanned(describe(role)))
    }
}

/// Names a role for messages: `vlx-origin`, `the snapshot store of n2`.
pub fn describe(role: &Role) -> String {
    match role {
        Role::Esp => "ESP (vlx-esp)".into(),
        Role::Meta => format!("meta volume ({META_LABEL})"),
        Role::Origin => "origin (vlx-origin)".into(),
        Role::OriginB => "origin slot b (vlx-origin-b)".into(),
        Role::Record { node } => format!("slot record of node {node}"),
        Role::Shared => "shared volume (vlx-shared)".into(),
        Role::Cow { node } => format!("snapshot store of node {node}"),
        Role::Swap { node } => format!("swap of node {node}"),
        Role::Pool => "pool (vlx-pool)".into(),
        Role::Payload => "payload partition".into(),
    }
}

/// The role of node `node`'s snapshot store.
pub fn cow(node: &str) -> Role {
    Role::Cow {
        node: node.to_owned(),
    }
}

/// The role of node `node`'s slot record (two-slot layouts).
pub fn record(node: &str) -> Role {
    Role::Record {
        node: node.to_owned(),
    }
}

/// In a two-slot layout every store volume ends in its node's slot record
/// ([`crate::slots::RECORD_SIZE`]): the store is what comes before it, and
/// the record is the tail. `store` finds the whole store volume.
fn with_record(
    disk: &DiskLayout,
    role: &Role,
    store: impl Fn(&Role) -> Option<Located>,
) -> Option<Located> {
    let tail = crate::slots::RECORD_SIZE.get();
    match role {
        Role::Cow { .. } if disk.has_slots() => {
            let mut v = store(role)?;
            v.size = Bytes(v.size.get().checked_sub(tail)?);
            Some(v)
        }
        Role::Record { node } if disk.has_slots() => {
            let mut v = store(&cow(node))?;
            let size = v.size.get().checked_sub(tail)?;
            v.offset = Bytes(v.offset.get() + size);
            v.size = Bytes(tail);
            v.label = format!("{} (slot record)", v.label);
            Some(v)
        }
        Role::Record { .. } => None,
        _ => store(role),
    }
}

/// The role of node `node`'s swap.
pub fn swap(node: &str) -> Role {
    Role::Swap {
        node: node.to_owned(),
    }
}

/// The GPT layout: one partition per volume.
#[derive(Debug, Clone, Copy)]
pub struct GptVolumes<'a> {
    disk: &'a DiskLayout,
}

impl<'a> GptVolumes<'a> {
    pub fn new(disk: &'a DiskLayout) -> GptVolumes<'a> {
        GptVolumes { disk }
    }
}

impl Locate for GptVolumes<'_> {
    fn find(&self, role: &Role) -> Option<Located> {
        with_record(self.disk, role, |role| {
            let p = self.disk.partitions.iter().find(|p| p.role == *role)?;
            Some(Located {
                label: p.label.clone(),
                offset: p.offset(self.disk.sector_size),
                size: p.size,
                partition: p.clone(),
            })
        })
    }
}

/// The pool layout: every node's store and swap is an extent of the
/// `vlx-pool` partition; the other volumes are partitions as in
/// [`GptVolumes`].
#[derive(Debug, Clone, Copy)]
pub struct PoolVolumes<'a> {
    disk: &'a DiskLayout,
    pool: &'a PoolLayout,
}

impl<'a> PoolVolumes<'a> {
    pub fn new(disk: &'a DiskLayout, pool: &'a PoolLayout) -> PoolVolumes<'a> {
        PoolVolumes { disk, pool }
    }
}

impl Locate for PoolVolumes<'_> {
    fn find(&self, role: &Role) -> Option<Located> {
        if !matches!(
            role,
            Role::Cow { .. } | Role::Swap { .. } | Role::Record { .. }
        ) {
            return GptVolumes::new(self.disk).find(role);
        }
        with_record(self.disk, role, |role| {
            let e = self.pool.extents.iter().find(|e| e.role == *role)?;
            let p = self.disk.by_role(&Role::Pool)?;
            let start = p.offset(self.disk.sector_size);
            Some(Located {
                label: e.name.clone(),
                offset: Bytes(start.get() + e.start.get()),
                size: e.size,
                partition: p.clone(),
            })
        })
    }
}

/// The locator of a plan's layout: [`GptVolumes`] or [`PoolVolumes`].
#[derive(Debug, Clone, Copy)]
pub enum Volumes<'a> {
    Gpt(GptVolumes<'a>),
    Pool(PoolVolumes<'a>),
}

impl<'a> Volumes<'a> {
    /// The locator of `disk`: the pool's when it has a pool table.
    pub fn of(disk: &'a DiskLayout) -> Volumes<'a> {
        match &disk.pool {
            Some(pool) => Volumes::Pool(PoolVolumes::new(disk, pool)),
            None => Volumes::Gpt(GptVolumes::new(disk)),
        }
    }
}

impl Locate for Volumes<'_> {
    fn find(&self, role: &Role) -> Option<Located> {
        match self {
            Volumes::Gpt(v) => v.find(role),
            Volumes::Pool(v) => v.find(role),
        }
    }
}

/// The meta volume's entry in a disk's own partition table.
pub fn meta_entry(entries: &[Entry]) -> Option<&Entry> {
    entries.iter().find(|e| e.name == META_LABEL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SanFacts, Source, Trusting};

    const PROFILE: &str = "[cluster]\nname = \"t\"\nuuid = \"6f1c0a4e-3b8e-4d3a-9d2a-1f0e5c7b9a10\"\ndomain = \"t.test\"\n\
        [network]\ncidr = \"10.0.0.0/24\"\nvips = [\"10.0.0.250\"]\n\
        [[nodes]]\nname = \"n[1-2]\"\nmac = \"52:54:00:00:00:01\"\nip = \"10.0.0.1\"\n\
        [san]\nsize = \"8GiB\"\n[storage]\nswap = \"8MiB\"\n[image]\nhost = \"h.toml\"\n";

    #[test]
    fn every_volume_of_the_plan_is_found_by_its_role() {
        let source = Source::new("t.toml", PROFILE);
        let (_, plan) =
            crate::load(&source, &Trusting, SanFacts::default()).unwrap_or_else(|d| panic!("{d}"));
        let v = GptVolumes::new(&plan.disk);
        for p in &plan.disk.partitions {
            let got = v.locate(&p.role).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(got.partition, *p);
            assert_eq!(got.offset, p.offset(plan.disk.sector_size));
            assert!(got.is_whole_partition());
        }
        let n = &plan.nodes[0];
        assert_eq!(
            v.locate(&cow(n.name.as_str())).map(|l| l.partition.label),
            Ok(n.cow.clone())
        );
        assert_eq!(
            v.find(&record(n.name.as_str())),
            None,
            "one slot: no record"
        );
        let err = v.locate(&cow("nobody")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the plan has no snapshot store of node nobody"
        );
    }

    #[test]
    fn with_two_slots_each_store_ends_in_its_node_record() {
        let text = PROFILE.replace("swap = \"8MiB\"", "swap = \"8MiB\"\nslots = 2");
        for layout in ["gpt", "pool"] {
            let text = text.replace("[san]\n", &format!("[san]\nlayout = \"{layout}\"\n"));
            let source = Source::new("t.toml", &text);
            let (_, plan) = crate::load(&source, &Trusting, SanFacts::default())
                .unwrap_or_else(|d| panic!("{d}"));
            assert!(plan.disk.has_slots());
            let a = plan.disk.by_role(&Role::Origin).unwrap();
            let b = plan.disk.by_role(&Role::OriginB).unwrap();
            assert_eq!(
                (a.label.as_str(), b.label.as_str()),
                ("vlx-origin", "vlx-origin-b")
            );
            assert_eq!(a.size, b.size);
            let v = plan.volumes();
            for n in ["n1", "n2"] {
                let store = v.locate(&cow(n)).unwrap();
                let rec = v.locate(&record(n)).unwrap();
                assert_eq!(rec.size, crate::slots::RECORD_SIZE);
                assert_eq!(
                    rec.offset.get(),
                    store.offset.get() + store.size.get(),
                    "{layout}"
                );
                assert!(!store.is_whole_partition(), "mapped linear past the record");
                // The record is the tail of the store's partition or extent.
                let whole = match &plan.disk.pool {
                    Some(pool) => pool.extents.iter().find(|e| e.role == cow(n)).unwrap().size,
                    None => store.partition.size,
                };
                assert_eq!(store.size.get() + rec.size.get(), whole.get());
            }
        }
    }
}
