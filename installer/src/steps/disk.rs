//! The GPT step: the partition table the plan encodes, both copies.

use cluster::Role;

use super::ctx::{ApplyError, Ctx};

/// Bytes zeroed at the start of the ESP partition when the partition table
/// is written: the FAT boot sector and its backup (sector 6) and FSInfo.
const ESP_HEAD_BYTES: u64 = 1 << 20;
/// LBA 0 carries boot code in its first 440 bytes (written by the boot
/// step), which the partition table leaves alone.
const MBR_CODE_BYTES: usize = 440;

/// Writes both copies of the partition table. On an install (`fresh`) the
/// head of the ESP is zeroed too; a change of an installed cluster keeps
/// the ESP its blades boot from until the boot step replaces it.
pub fn write(ctx: &Ctx<'_>, fresh: bool) -> Result<String, ApplyError> {
    let plan = ctx.plan();
    for w in &cluster::gpt::encode(&plan.disk) {
        ctx.target.write_at(w.offset.get(), &w.data)?;
    }
    if fresh {
        // An ESP of an earlier install in the same place must not boot
        // this one half-done: its boot sectors go now, the new ESP last.
        let esp = ctx.locate(&Role::Esp)?;
        ctx.target
            .zero(esp.offset.get(), ESP_HEAD_BYTES.min(esp.size.get()))?;
    }
    ctx.target.sync()?;
    Ok(format!("{} partitions", plan.disk.partitions.len()))
}

pub fn verify(ctx: &Ctx<'_>) -> Result<Option<String>, ApplyError> {
    for w in cluster::gpt::encode(&ctx.plan().disk) {
        let got = ctx.target.read_at(w.offset.get(), w.data.len())?;
        let skip = if w.offset.get() == 0 {
            MBR_CODE_BYTES
        } else {
            0
        };
        if got.get(skip..) != w.data.get(skip..) {
            return Ok(Some(format!(
                "the partition table at byte {} differs from the plan",
                w.offset.get()
            )));
        }
    }
    Ok(None)
}
