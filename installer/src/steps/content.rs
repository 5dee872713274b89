//! What the content step lays on the meta volume besides the plan: the PXE
//! boot tree and every node's rendered configuration.

use std::path::Path;

use super::ctx::ApplyError;
use crate::image;
use crate::prepare::Inputs;
use crate::stage::Staging;

/// Folder of the PXE tree on the meta volume (served over TFTP and HTTP).
pub const TFTP: &str = "tftp";

/// Stages the content into `stage`.
pub fn stage(stage: &Staging, inputs: &Inputs) -> Result<(), ApplyError> {
    stage_pxe(stage, inputs)?;
    stage_nodes(stage, inputs)
}

/// Stages the PXE tree of the image being installed.
pub fn stage_pxe(stage: &Staging, inputs: &Inputs) -> Result<(), ApplyError> {
    let spec = bootfs::pxe::PxeSpec::for_plan(
        &inputs.plan,
        inputs.image.path(image::KERNEL),
        vec![inputs.image.path(image::INITRAMFS)],
        bootfs::Epoch(inputs.epoch()),
    );
    bootfs::pxe::plan(&spec)
        .and_then(|t| t.write(&stage.path().join(TFTP)))
        .map_err(|e| ApplyError::Step {
            step: crate::journal::Step::Content,
            message: format!("building the PXE tree: {e}"),
        })?;
    Ok(())
}

/// Stages every node's rendered configuration.
pub fn stage_nodes(stage: &Staging, inputs: &Inputs) -> Result<(), ApplyError> {
    stage.dir(Path::new("nodes"), 0o755, 0, 0)?;
    let render_err = |e: crate::render::RenderError| ApplyError::Step {
        step: crate::journal::Step::Content,
        message: e.to_string(),
    };
    let overlays =
        crate::render::NodeOverlays::load(&inputs.plan, &inputs.profile_dir).map_err(render_err)?;
    let mut overlays = overlays.for_plan(&inputs.plan).map_err(render_err)?;
    let keys = all_host_keys(&inputs.plan.nodes).map_err(render_err)?;
    for (node, keys) in inputs.plan.nodes.iter().zip(keys) {
        let mut files = overlays.render(node).map_err(render_err)?;
        crate::render::merge(&mut files, keys).map_err(render_err)?;
        let root = Path::new("nodes").join(node.name.as_str()).join("root");
        stage.dir(&root, 0o755, 0, 0)?;
        crate::render::write_tree(&files, &stage.path().join(&root)).map_err(render_err)?;
    }
    Ok(())
}

/// Every node's SSH host keys, in plan order. `ssh-keygen` runs once per
/// node and is most of the step's time at a thousand nodes, so as many run
/// at once as there are cores.
fn all_host_keys(
    nodes: &[cluster::NodePlan],
) -> Result<Vec<Vec<templating::Entry>>, crate::render::RenderError> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = nodes.len().div_ceil(workers).max(1);
    std::thread::scope(|s| {
        let running: Vec<_> = nodes
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(crate::render::host_keys)
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(nodes.len());
        for r in running {
            match r.join() {
                Ok(keys) => out.extend(keys?),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok(out)
    })
}
