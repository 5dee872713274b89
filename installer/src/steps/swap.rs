//! The swap step: a swap header on every node's swap volume, with a UUID
//! derived from the cluster and the node's name as its label.

use cluster::{Bytes, locate};

use super::ctx::{ApplyError, Ctx};
use crate::fs;

/// Where mkswap keeps the UUID and the label in the first page
/// (util-linux `struct swap_header_v1_2`).
const SWAP_UUID: std::ops::Range<usize> = 1036..1052;
const SWAP_LABEL: std::ops::Range<usize> = 1052..1068;

/// Writes the swap header of every node `writes` names (all of an
/// install's; only the new nodes' in a change).
pub fn write(ctx: &Ctx<'_>, writes: &dyn Fn(&str) -> bool) -> Result<String, ApplyError> {
    let plan = ctx.plan();
    let mut count = 0;
    let mut template: Option<(Bytes, Vec<u8>)> = None;
    for n in plan.nodes.iter().filter(|n| writes(n.name.as_str())) {
        let Some(v) = ctx.find(&locate::swap(n.name.as_str())) else {
            continue;
        };
        // mkswap runs once per size; each node's header then gets its
        // own UUID and label at mkswap's offsets.
        let mut head = match &template {
            Some((size, h)) if *size == v.size => h.clone(),
            _ => {
                let h = fs::swap_header(v.size, "template", uuid::Uuid::nil())?;
                template = Some((v.size, h.clone()));
                h
            }
        };
        head[SWAP_UUID].copy_from_slice(crate::device::fs_uuid(plan, &v.label).as_bytes());
        let name = n.name.as_str().as_bytes();
        let field = &mut head[SWAP_LABEL];
        field.fill(0);
        let len = name.len().min(field.len());
        field[..len].copy_from_slice(&name[..len]);
        ctx.target.write_at(v.offset.get(), &head)?;
        count += 1;
    }
    ctx.target.sync()?;
    Ok(format!("{count} swap areas"))
}

pub fn verify(ctx: &Ctx<'_>) -> Result<Option<String>, ApplyError> {
    let plan = ctx.plan();
    let page = fs::page_size();
    for n in &plan.nodes {
        let Some(v) = ctx.find(&locate::swap(n.name.as_str())) else {
            continue;
        };
        let label = &v.label;
        let head = ctx.target.read_at(v.offset.get(), page)?;
        let uuid = crate::device::fs_uuid(plan, label);
        if !fs::is_swap(&head) || head.get(SWAP_UUID) != Some(&uuid.as_bytes()[..]) {
            return Ok(Some(format!(
                "{label} holds no swap header of this cluster"
            )));
        }
    }
    Ok(None)
}
