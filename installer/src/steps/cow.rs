//! The snapshot-store step: every node's store gets a zeroed header, so
//! that its first boot starts a new store over the origin. `reset-node`
//! does the same for one node.

use cluster::locate;

use super::ctx::{ApplyError, Ctx};

/// Bytes zeroed at the start of each snapshot store. dm-snapshot keeps its
/// header in chunk 0 and starts a new store when the header's magic is zero
/// (drivers/md/dm-snap-persistent.c, `read_header`); 64 KiB covers chunk
/// sizes up to 128 sectors.
pub const COW_HEADER_BYTES: u64 = 64 << 10;
/// dm-snapshot's on-disk magic, "SnAp" as a little-endian u32.
const SNAP_MAGIC: &[u8; 4] = b"SnAp";

/// Zeroes the header of every store `writes` names (all of an install's;
/// only the new nodes' in a change, so that no running node's store is
/// touched).
pub fn write(ctx: &Ctx<'_>, writes: &dyn Fn(&str) -> bool) -> Result<String, ApplyError> {
    let plan = ctx.plan();
    let mut count = 0;
    for n in plan.nodes.iter().filter(|n| writes(n.name.as_str())) {
        count += 1;
        let v = ctx.locate(&locate::cow(n.name.as_str()))?;
        ctx.target
            .zero(v.offset.get(), COW_HEADER_BYTES.min(v.size.get()))?;
        // Two slots: no record left from an earlier install either, so
        // that the node's first boot records the slot it starts on.
        if let Some(r) = ctx.find(&locate::record(n.name.as_str())) {
            ctx.target.zero(r.offset.get(), r.size.get())?;
        }
    }
    ctx.target.sync()?;
    Ok(format!("{count} snapshot stores reset"))
}

pub fn verify(ctx: &Ctx<'_>) -> Result<Option<String>, ApplyError> {
    for n in &ctx.plan().nodes {
        let v = ctx.locate(&locate::cow(n.name.as_str()))?;
        let head = ctx.target.read_at(v.offset.get(), 512)?;
        if !(head.iter().all(|b| *b == 0) || head.starts_with(SNAP_MAGIC)) {
            return Ok(Some(format!(
                "{} holds neither a fresh nor a snapshot store header",
                v.label
            )));
        }
    }
    Ok(None)
}
