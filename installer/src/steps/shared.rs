//! The shared-volume step: ext4 that follows the VIP from node to node,
//! and the lease that fences it.
//!
//! The file system ends [`LEASE_BYTES`] before the partition does. The
//! first 4 KiB of that last MiB is the volume's lease: its holder renews
//! it every second and the node that takes the volume over waits until it
//! stops changing (`overlays/node/usr/lib/vlx/shared-lease`, which says
//! how). It replaces ext4's multiple-mount protection, whose takeover
//! waits 22 s at the least. The installer writes the lease zeroed: never
//! held.

use cluster::{Bytes, Role};

use super::ctx::{ApplyError, Ctx};
use crate::fs::{self, Ext4};

/// The name the shared volume's file system is labelled with and its UUID
/// derived from.
const NAME: &str = "vlx-shared";
/// Bytes read to find the ext4 superblock (at 1024, 1 KiB long).
const SUPERBLOCK_END: usize = 2048;
/// The end of the partition the file system leaves to the lease.
pub const LEASE_BYTES: Bytes = Bytes::mib(1);
/// The lease's record: the first block of [`LEASE_BYTES`].
pub const LEASE_RECORD: usize = 4096;

pub fn write(ctx: &Ctx<'_>) -> Result<String, ApplyError> {
    let Some(v) = ctx.find(&Role::Shared) else {
        return Ok("no shared volume in the plan".into());
    };
    let size = match v.size.checked_sub(LEASE_BYTES) {
        Some(s) if s >= LEASE_BYTES => s,
        _ => {
            return Err(ApplyError::Refused(format!(
                "vlx-shared is {}: too small for a file system and its {LEASE_BYTES} lease",
                v.size
            )));
        }
    };
    fs::mke2fs(
        ctx.target.path(),
        &Ext4 {
            label: NAME,
            uuid: crate::device::fs_uuid(ctx.plan(), NAME),
            offset: v.offset,
            size,
            contents: None,
            epoch: ctx.inputs.epoch(),
        },
    )?;
    ctx.target
        .write_at(v.offset.get() + size.get(), &[0; LEASE_RECORD])?;
    Ok(format!("ext4 of {size} and its lease"))
}

pub fn verify(ctx: &Ctx<'_>) -> Result<Option<String>, ApplyError> {
    let Some(v) = ctx.find(&Role::Shared) else {
        return Ok(None);
    };
    let head = ctx.target.read_at(v.offset.get(), SUPERBLOCK_END)?;
    let want = crate::device::fs_uuid(ctx.plan(), NAME);
    Ok((fs::ext4_uuid(&head) != Some(want))
        .then(|| "vlx-shared holds no ext4 file system of this cluster".into()))
}
