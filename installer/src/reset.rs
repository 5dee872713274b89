//! `vlx-install reset-node`: the seed's reset to factory state. Zeroing a
//! node's snapshot store header makes its next boot start a new store over
//! the golden origin: every change the node made is gone.

use std::path::Path;

use cluster::{Locate, locate};

use crate::device;
use crate::installed::{Installed, InstalledError};
use crate::steps::cow::COW_HEADER_BYTES;
use crate::target::{Target, TargetError};

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error(transparent)]
    Installed(#[from] InstalledError),
    #[error(transparent)]
    Refused(#[from] device::Refusal),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("cluster {cluster} has no node {name}; its nodes are {known}")]
    UnknownNode {
        cluster: String,
        name: String,
        known: String,
    },
}

/// Resets node `name` of the cluster on `san`. The node must be off: its
/// kernel holds the store open while it runs, and nothing on this machine
/// can see that.
pub fn reset_node(san: &Path, name: &str) -> Result<String, ResetError> {
    let inst = Installed::open(san)?;
    let plan = &inst.plan;
    let node = plan.node(name).ok_or_else(|| ResetError::UnknownNode {
        cluster: plan.cluster.name.clone(),
        name: name.to_owned(),
        known: plan
            .nodes
            .iter()
            .map(|n| n.name.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })?;
    let store = inst
        .volumes()
        .find(&locate::cow(name))
        .ok_or_else(|| ResetError::UnknownNode {
            cluster: plan.cluster.name.clone(),
            name: format!("{name} (no snapshot store in the plan)"),
            known: String::new(),
        })?;
    let checked = device::check_installed(inst.facts.clone(), plan)?;
    let target = Target::open(checked)?;
    target.zero(store.offset.get(), COW_HEADER_BYTES.min(store.size.get()))?;
    target.sync()?;
    Ok(format!(
        "{} ({}) is reset: its next boot starts from the golden image",
        node.name, store.label
    ))
}
