//! What the content step lays on the meta volume besides the plan: the PXE
//! boot tree and every node's rendered configuration.

use std::path::Path;

use crate::apply::{ApplyError, Inputs};
use crate::image;
use crate::stage::Staging;

/// Folder of the PXE tree on the meta volume (served over TFTP and HTTP).
pub const TFTP: &str = "tftp";

/// Stages the content into `stage`.
pub fn stage(stage: &Staging, inputs: &Inputs) -> Result<(), ApplyError> {
    let tftp = Path::new(TFTP);
    stage.dir(tftp, 0o755, 0, 0)?;
    stage.copy(
        &tftp.join(image::KERNEL),
        &inputs.image.path(image::KERNEL),
        0o644,
    )?;
    stage.copy(
        &tftp.join(image::INITRAMFS),
        &inputs.image.path(image::INITRAMFS),
        0o644,
    )?;
    stage.dir(Path::new("nodes"), 0o755, 0, 0)?;
    Ok(())
}
