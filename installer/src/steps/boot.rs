//! The boot step: the ESP every blade boots from the SAN, and the MBR boot
//! code for BIOS, written last.

use std::path::Path;

use cluster::{Locate, Plan, Role};

use super::ctx::{ApplyError, Ctx};
use crate::image;
use crate::journal::Step;
use crate::prepare::Inputs;
use crate::stream;

fn step_err(e: impl std::fmt::Display) -> ApplyError {
    ApplyError::Step {
        step: Step::Boot,
        message: e.to_string(),
    }
}

fn esp_plan(inputs: &Inputs) -> Result<(bootfs::esp::EspSpec, bootfs::esp::EspPlan), ApplyError> {
    let spec = bootfs::esp::EspSpec::for_plan(
        &inputs.plan,
        inputs.image.path(image::KERNEL),
        vec![inputs.image.path(image::INITRAMFS)],
        bootfs::Epoch(inputs.epoch()),
    )
    .map_err(step_err)?;
    let plan = bootfs::esp::plan(&spec).map_err(step_err)?;
    Ok((spec, plan))
}

/// Bytes of the ESP that hold anything: the reserved area, both FATs and
/// the used clusters (allocated from cluster 2 up).
fn used_len(esp: &bootfs::esp::EspPlan) -> u64 {
    let g = &esp.fat.geometry;
    g.cluster_offset(2 + esp.fat.used_clusters())
}

fn esp_offset(plan: &Plan) -> Result<u64, ApplyError> {
    let v = plan.volumes().locate(&Role::Esp).map_err(step_err)?;
    Ok(v.offset.get())
}

/// Writes the ESP, then (for BIOS) the MBR boot code.
pub fn write(ctx: &Ctx<'_>) -> Result<String, ApplyError> {
    let (inputs, target) = (ctx.inputs, ctx.target);
    let (spec, esp) = esp_plan(inputs)?;
    let offset = esp_offset(&inputs.plan)?;
    esp.write(target.path(), cluster::Bytes(offset))
        .map_err(step_err)?;
    let mut what = vec!["ESP with systemd-boot"];
    if inputs.plan.boot.firmware.bios() {
        let code = bootfs::esp::mbr_boot_code(&spec.assets).map_err(step_err)?;
        bootfs::esp::write_mbr_boot_code(target.path(), &code).map_err(step_err)?;
        what.push("syslinux and gptmbr.bin for BIOS");
    }
    Ok(format!(
        "{} ({} of FAT32 in use)",
        what.join(", "),
        cluster::Bytes(used_len(&esp))
    ))
}

/// `None` when the target's ESP (and MBR code) are what this install writes:
/// the ESP is built again in a scratch file and the bytes in use compared.
pub fn verify(ctx: &Ctx<'_>) -> Result<Option<String>, ApplyError> {
    let (inputs, target) = (ctx.inputs, ctx.target);
    let (spec, esp) = esp_plan(inputs)?;
    if inputs.plan.boot.firmware.bios() {
        let code = bootfs::esp::mbr_boot_code(&spec.assets).map_err(step_err)?;
        if target.read_at(0, code.len())? != code {
            return Ok(Some(
                "the MBR boot code is not syslinux's gptmbr.bin".into(),
            ));
        }
    }
    let scratch = tempfile::Builder::new()
        .prefix("vlx-esp-")
        .tempfile()
        .map_err(|e| step_err(format!("scratch file for the ESP: {e}")))?;
    scratch
        .as_file()
        .set_len(spec.size.get())
        .map_err(|e| step_err(format!("sizing {}: {e}", scratch.path().display())))?;
    esp.write(scratch.path(), cluster::Bytes(0))
        .map_err(step_err)?;
    let len = used_len(&esp);
    let want = hash(scratch.path(), len)?;
    let got = stream::hash_range(target, esp_offset(&inputs.plan)?, len)?;
    Ok((got != want).then(|| "the ESP differs from the one this install writes".into()))
}

fn hash(path: &Path, len: u64) -> Result<String, ApplyError> {
    let f = std::fs::File::open(path).map_err(|e| step_err(format!("{}: {e}", path.display())))?;
    Ok(stream::hash_file_range(&f, path, 0, len)?)
}
