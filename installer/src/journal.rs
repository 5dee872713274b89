//! The install journal on `vlx-meta`: which steps are done, for which plan
//! and image. A rerun after a crash reads it, re-verifies each step it
//! lists, and does the rest.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// File name of the journal at the top of the meta volume.
pub const FILE: &str = "journal.json";
const FORMAT: u32 = 1;

/// The install steps, in the order they run. The ESP and boot code come
/// last, so that a half-done install never boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Protective MBR, primary and backup GPT.
    Gpt,
    /// The meta volume with the profile, plan, manifest and this journal.
    Meta,
    /// The golden root, copied and read back.
    Origin,
    /// Every node's snapshot store header zeroed.
    Cow,
    /// Every node's swap header.
    Swap,
    /// The shared volume's file system.
    Shared,
    /// Per-node configurations and the PXE tree on the meta volume.
    Content,
    /// The ESP and the MBR boot code.
    Boot,
}

impl Step {
    pub const ALL: [Step; 8] = [
        Step::Gpt,
        Step::Meta,
        Step::Origin,
        Step::Cow,
        Step::Swap,
        Step::Shared,
        Step::Content,
        Step::Boot,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::Gpt => "gpt",
            Step::Meta => "meta",
            Step::Origin => "origin",
            Step::Cow => "cow",
            Step::Swap => "swap",
            Step::Shared => "shared",
            Step::Content => "content",
            Step::Boot => "boot",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Journal {
    pub format: u32,
    pub cluster: Uuid,
    /// sha256 of the plan JSON this install lays out.
    pub plan_sha256: String,
    /// sha256 of the image's manifest.json.
    pub image_sha256: String,
    /// Steps finished, in order.
    pub done: Vec<Step>,
    /// A change of an installed cluster: the only nodes whose snapshot
    /// stores and swap the `cow` and `swap` steps write (the nodes it
    /// adds). `None` for an install, where they write every node's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only_nodes: Option<Vec<String>>,
    /// An upgrade or rollback of a two-slot install under way: saved
    /// before its first write, cleared after its last, so that a rerun
    /// finishes it ([`crate::slots`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_change: Option<SlotChange>,
}

/// What an upgrade or rollback is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotChange {
    pub kind: SlotChangeKind,
    /// The slot the cluster is moved to.
    pub to: cluster::slots::Slot,
    /// sha256 of the manifest of the image that slot holds (or will).
    pub image_sha256: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotChangeKind {
    Upgrade,
    Rollback,
}

impl Journal {
    pub fn new(cluster: Uuid, plan_sha256: String, image_sha256: String) -> Journal {
        Journal {
            format: FORMAT,
            cluster,
            plan_sha256,
            image_sha256,
            done: Vec::new(),
            only_nodes: None,
            slot_change: None,
        }
    }

    /// Whether the `cow` and `swap` steps write node `name`'s volumes.
    pub fn writes_node(&self, name: &str) -> bool {
        self.only_nodes
            .as_ref()
            .is_none_or(|only| only.iter().any(|n| n == name))
    }

    pub fn is_done(&self, step: Step) -> bool {
        self.done.contains(&step)
    }

    pub fn complete(&self) -> bool {
        Step::ALL.iter().all(|s| self.is_done(*s))
    }

    /// Marks `step` done (idempotent; keeps the order of `Step::ALL`).
    pub fn mark(&mut self, step: Step) {
        if !self.is_done(step) {
            self.done.push(step);
            self.done.sort();
        }
    }

    pub fn unmark(&mut self, step: Step) {
        self.done.retain(|s| *s != step);
    }

    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| unreachable!("a journal always serializes: {e}"));
        s.push('\n');
        s
    }

    /// Parses a journal; `None` for anything that is not one of this format.
    pub fn parse(bytes: &[u8]) -> Option<Journal> {
        serde_json::from_slice::<Journal>(bytes)
            .ok()
            .filter(|j| j.format == FORMAT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_install_journal_writes_every_node_and_a_change_only_its_new_ones() {
        let mut j = Journal::new(Uuid::nil(), "p".into(), "i".into());
        assert!(j.writes_node("n1") && j.writes_node("n9"));
        // A journal written before changes existed reads the same.
        let json = j.to_json();
        assert!(!json.contains("only_nodes"), "{json}");
        assert_eq!(Journal::parse(json.as_bytes()), Some(j.clone()));

        j.only_nodes = Some(vec!["n4".into()]);
        let back = Journal::parse(j.to_json().as_bytes());
        assert_eq!(back.as_ref(), Some(&j));
        assert!(j.writes_node("n4"));
        assert!(!j.writes_node("n1"));
        j.only_nodes = Some(Vec::new());
        assert!(
            !j.writes_node("n4"),
            "a change that adds no node writes no store"
        );
    }
}
