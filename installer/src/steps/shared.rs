//! The shared-volume step: ext4 with multiple-mount protection, as it
//! follows the VIP from node to node.

use cluster::Role;

use super::ctx::{ApplyError, Ctx};
use crate::fs::{self, Ext4};

/// The name the shared volume's file system is labelled with and its UUID
/// derived from.
const NAME: &str = "vlx-shared";
/// Bytes read to find the ext4 superblock (at 1024, 1 KiB long).
const SUPERBLOCK_END: usize = 2048;

pub fn write(ctx: &Ctx<'_>) -> Result<String, ApplyError> {
    let Some(v) = ctx.find(&Role::Shared) else {
        return Ok("no shared volume in the plan".into());
    };
    fs::mke2fs(
        ctx.target.path(),
        &Ext4 {
            label: NAME,
            uuid: crate::device::fs_uuid(ctx.plan(), NAME),
            offset: v.offset,
            size: v.size,
            contents: None,
            epoch: ctx.inputs.epoch(),
            mmp: true,
        },
    )?;
    Ok(format!("ext4 of {}", v.size))
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
