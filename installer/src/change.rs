//! What a change of an installed cluster shows before it is made
//! (`vlx-install plan --san PATH --diff`): the plan's difference
//! ([`cluster::diff`]) and, for every node that stays, which of its
//! rendered files change (its DHCP, DNS, hosts, VRRP and chrony tables).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cluster::Plan;
use cluster::diff::PlanDiff;
use serde::Serialize;

use crate::render::{NodeOverlays, RenderError};

/// The files of one kept node that the change renders differently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigChange {
    pub node: String,
    /// Paths relative to the node's root, in order.
    pub files: Vec<String>,
}

/// A change as `plan --diff` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shown {
    #[serde(flatten)]
    pub plan: PlanDiff,
    pub configs: Vec<ConfigChange>,
}

impl Shown {
    /// The difference between `installed` and `new`, the overlays of both
    /// taken from `profile_dir` (the changed profile's folder: the overlays
    /// are the ones the change renders with, the same for old and new).
    /// A new node's files are all new; they are not listed.
    pub fn new(installed: &Plan, new: &Plan, profile_dir: &Path) -> Result<Shown, RenderError> {
        let plan = cluster::diff::diff(installed, new);
        let before = NodeOverlays::load(installed, profile_dir)?;
        let after = NodeOverlays::load(new, profile_dir)?;
        let (mut before, mut after) = (before.for_plan(installed)?, after.for_plan(new)?);
        let mut configs = Vec::new();
        for n in &new.nodes {
            let Some(o) = installed.node(n.name.as_str()) else {
                continue;
            };
            let old: BTreeMap<PathBuf, _> = before
                .render(o)?
                .into_iter()
                .map(|e| (e.path.clone(), e))
                .collect();
            let mut now: BTreeMap<PathBuf, _> = after
                .render(n)?
                .into_iter()
                .map(|e| (e.path.clone(), e))
                .collect();
            let mut files: Vec<String> = old
                .iter()
                .filter(|(p, e)| now.remove(*p).as_ref() != Some(*e))
                .map(|(p, _)| p.display().to_string())
                .collect();
            files.extend(now.keys().map(|p| p.display().to_string()));
            files.sort();
            if !files.is_empty() {
                configs.push(ConfigChange {
                    node: n.name.to_string(),
                    files,
                });
            }
        }
        Ok(Shown { plan, configs })
    }

    pub fn is_empty(&self) -> bool {
        self.plan.is_empty() && self.configs.is_empty()
    }
}

impl std::fmt::Display for Shown {
    /// The plan's difference, then one line per node whose files change;
    /// nothing at all when nothing changes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.plan)?;
        if !self.configs.is_empty() {
            writeln!(f, "configs:")?;
            for c in &self.configs {
                writeln!(f, "  ~ {:<12} {}", c.node, c.files.join(", "))?;
            }
        }
        Ok(())
    }
}
