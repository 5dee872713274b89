//! An installed SAN read back: its partition table, the plan and journal on
//! its meta volume, and the checks of `status` and `verify`.

use std::fs::File;
use std::path::{Path, PathBuf};

use cluster::{Bytes, Locate, Plan, Role, SectorSize, Volumes};
use serde::Serialize;

use crate::device::{self, FoundGpt, TargetFacts};
use crate::fs;
use crate::journal::{Journal, Step};
use crate::stream;
use crate::target::TargetError;

#[derive(Debug, thiserror::Error)]
pub enum InstalledError {
    #[error(transparent)]
    Device(#[from] device::DeviceError),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Tool(#[from] crate::tool::ToolError),
    #[error("{path} holds no vlx cluster: {why}")]
    NotInstalled { path: PathBuf, why: String },
    /// A vlx partition table whose install was cut before the meta volume
    /// (and with it the plan and journal) was made.
    #[error(
        "the install on {path} was cut {when}: {what}; run `vlx-install apply` again with the same profile and image to finish it"
    )]
    Interrupted {
        path: PathBuf,
        when: &'static str,
        what: &'static str,
    },
}

/// What `status` and `verify` read from a SAN, without writing.
#[derive(Debug)]
pub struct Installed {
    pub facts: TargetFacts,
    pub file: File,
    pub sector: SectorSize,
    pub gpt: FoundGpt,
    pub plan: Plan,
    pub journal: Option<Journal>,
    pub manifest: Option<crate::image::Manifest>,
    pub meta_offset: Bytes,
    /// The slot table of a two-slot install (`slots.json`).
    pub slots: Option<cluster::slots::SlotTable>,
}

impl Installed {
    /// Reads the GPT (at the device's sector size, or for an image file at
    /// 512 then 4096 bytes) and the plan from `vlx-meta`.
    pub fn open(path: &Path) -> Result<Installed, InstalledError> {
        let facts = device::inspect(path)?;
        let file = device::open_read(path)?;
        let sizes = match facts.sector_size {
            Some(s) => vec![s],
            None => vec![SectorSize::B512, SectorSize::B4096],
        };
        let not = |why: &str| InstalledError::NotInstalled {
            path: path.to_owned(),
            why: why.to_owned(),
        };
        let mut found = None;
        for s in sizes {
            let g = device::read_gpt(&file, s, facts.size).map_err(|source| TargetError {
                op: "reading the partition table of",
                path: path.to_owned(),
                offset: 0,
                source,
            })?;
            if let Some(g) = g {
                found = Some((s, g));
                break;
            }
        }
        let (sector, gpt) = found.ok_or_else(|| not("no GPT"))?;
        // The plan is on the meta volume: it is found by the disk's own table.
        let meta = cluster::locate::meta_entry(&gpt.entries)
            .ok_or_else(|| not("no vlx-meta partition"))?;
        let meta_offset = meta.offset(sector);
        // Without this, debugfs's own complaint about a missing file system
        // would be all that is said of an install cut after the GPT step.
        let head =
            device::read_at(&file, meta_offset.get(), 2048).map_err(|source| TargetError {
                op: "reading the superblock of vlx-meta on",
                path: path.to_owned(),
                offset: meta_offset.get(),
                source,
            })?;
        if fs::ext4_uuid(&head).is_none() {
            return Err(InstalledError::Interrupted {
                path: path.to_owned(),
                when: "after its first step (gpt)",
                what: "the partition table is written, but vlx-meta holds no file system yet",
            });
        }
        let plan_bytes =
            fs::read_file(path, meta_offset, "/plan.json")?.ok_or(InstalledError::Interrupted {
                path: path.to_owned(),
                when: "while the meta volume (step meta) was made",
                what: "vlx-meta holds no plan.json",
            })?;
        let plan = Plan::from_json(&String::from_utf8_lossy(&plan_bytes))
            .map_err(|e| not(&format!("its plan.json is unreadable: {e}")))?;
        let journal = fs::read_file(path, meta_offset, &format!("/{}", crate::journal::FILE))?
            .and_then(|b| Journal::parse(&b));
        let manifest = fs::read_file(path, meta_offset, "/manifest.json")?
            .and_then(|b| serde_json::from_slice(&b).ok());
        let slots = crate::slots::read_table(path, meta_offset)?;
        Ok(Installed {
            facts,
            file,
            sector,
            gpt,
            plan,
            journal,
            manifest,
            meta_offset,
            slots,
        })
    }

    /// The plan installed on `path`, if it holds a readable vlx install
    /// (a blank or foreign target has none, nor one whose install was cut
    /// short before its meta volume had a file system: debugfs cannot
    /// read it, as for [`crate::apply::read_journal`]). Reads only.
    pub fn plan_of(path: &Path) -> Result<Option<Plan>, InstalledError> {
        match Installed::open(path) {
            Ok(i) => Ok(Some(i.plan)),
            // An install cut short before its meta volume held a plan has
            // nothing to rebase onto: the journaled rerun finishes it.
            Err(
                InstalledError::NotInstalled { .. }
                | InstalledError::Interrupted { .. }
                | InstalledError::Tool(_),
            ) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Where the installed plan's volumes are, by role.
    pub fn volumes(&self) -> Volumes<'_> {
        self.plan.volumes()
    }

    /// Re-hashes the origin against the installed manifest: `Ok(None)` when
    /// it matches, else what differs.
    pub fn check_origin(&self) -> Result<Option<String>, InstalledError> {
        let Some(m) = &self.manifest else {
            return Ok(Some("no manifest.json on vlx-meta".into()));
        };
        let Some(a) = m.artifacts.iter().find(|a| a.file == crate::image::ORIGIN) else {
            return Ok(Some("the manifest lists no origin.ext4".into()));
        };
        // The origin the cluster boots: with two slots, the current one
        // (whose manifest is the installed one).
        let role = self
            .slots
            .as_ref()
            .map_or(Role::Origin, |t| t.current.role());
        let Some(origin) = self.volumes().find(&role) else {
            return Ok(Some(format!(
                "the plan has no {}",
                cluster::locate::describe(&role)
            )));
        };
        let got =
            stream::hash_file_range(&self.file, &self.facts.path, origin.offset.get(), a.size)?;
        Ok((got != a.sha256).then(|| {
            format!(
                "{} hashes to {got}, but the image's origin.ext4 is {}",
                origin.label, a.sha256
            )
        }))
    }

    /// Every difference between the partition table on disk and the plan.
    pub fn layout_differences(&self) -> Vec<String> {
        let mut out = Vec::new();
        let d = &self.plan.disk;
        if self.sector != d.sector_size {
            out.push(format!(
                "sector size is {} but the plan says {}",
                self.sector, d.sector_size
            ));
        }
        if self.gpt.header.disk_guid != d.disk_guid {
            out.push(format!(
                "disk GUID is {} but the plan says {}",
                self.gpt.header.disk_guid, d.disk_guid
            ));
        }
        if !self.gpt.primary_ok {
            out.push("the primary GPT is damaged (the backup was read)".into());
        }
        for p in &d.partitions {
            match self.gpt.entries.iter().find(|e| e.number == p.number) {
                None => out.push(format!("partition {} ({}) is missing", p.number, p.label)),
                Some(e) => {
                    let mut diff = Vec::new();
                    if e.name != p.label {
                        diff.push(format!("label {:?}", e.name));
                    }
                    if (e.first_lba, e.last_lba) != (p.first_lba.0, p.last_lba.0) {
                        diff.push(format!(
                            "LBAs {}-{} (plan {}-{})",
                            e.first_lba, e.last_lba, p.first_lba, p.last_lba
                        ));
                    }
                    if e.guid != p.guid {
                        diff.push(format!("GUID {}", e.guid));
                    }
                    if e.type_guid != p.type_guid {
                        diff.push(format!("type {}", e.type_guid));
                    }
                    if e.attributes != p.attributes {
                        diff.push(format!("attributes {:#x}", e.attributes));
                    }
                    if !diff.is_empty() {
                        out.push(format!(
                            "partition {} ({}) differs: {}",
                            p.number,
                            p.label,
                            diff.join(", ")
                        ));
                    }
                }
            }
        }
        for e in &self.gpt.entries {
            if !d.partitions.iter().any(|p| p.number == e.number) {
                out.push(format!(
                    "partition {} ({}) is not in the plan",
                    e.number, e.name
                ));
            }
        }
        out
    }
}

/// `vlx-install status` as data.
#[derive(Debug, Serialize)]
pub struct Status {
    pub cluster: String,
    pub uuid: String,
    pub complete: bool,
    pub steps: Vec<StepState>,
    pub nodes: Vec<NodeStatus>,
    pub image: Option<String>,
    /// The installed image is a test image (`test_image` in its manifest,
    /// as the tiny image's): installed with `--test-image`.
    pub test_image: bool,
    /// Whether the origin was re-hashed (`status --check-origin`; `verify`
    /// always does).
    pub origin_checked: bool,
    /// `None` when the origin verifies or was not checked, else why not.
    pub origin_problem: Option<String>,
    /// Two-slot installs: the slot every blade boots, the previous one and
    /// the image of each (absent for one slot).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slots: Option<cluster::slots::SlotTable>,
}

#[derive(Debug, Serialize)]
pub struct StepState {
    pub step: Step,
    pub done: bool,
}

#[derive(Debug, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub ip: String,
    pub macs: Vec<String>,
    pub cow: String,
    /// The store's fill from its on-disk metadata; `None` when it could
    /// not be read (`store_problem` says why).
    pub store: Option<crate::store::StoreFill>,
    pub store_problem: Option<String>,
    /// Two-slot installs: the slot the node's store was started on, from
    /// the node's own record on its store (`None`: not booted since its
    /// store was made; absent for one slot).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot: Option<SlotOfNode>,
}

/// A node's slot as `status` shows it.
#[derive(Debug, Serialize)]
pub struct SlotOfNode {
    /// The slot its store runs over; `None` before its first boot.
    pub slot: Option<cluster::slots::Slot>,
    /// sha256 of the manifest of the image it was started on.
    pub image_sha256: Option<String>,
    /// Whether it boots onto another slot at its next reboot (its store is
    /// reset then).
    pub moves_at_reboot: bool,
    /// Why the record could not be read.
    pub problem: Option<String>,
}

impl Installed {
    /// The fill of node `name`'s snapshot store, read from its on-disk
    /// metadata; the error names the store.
    pub fn store_fill(&self, name: &str) -> Result<crate::store::StoreFill, String> {
        let v = self
            .volumes()
            .locate(&cluster::locate::cow(name))
            .map_err(|e| e.to_string())?;
        crate::store::fill(v.size, |off, len| {
            device::read_at(&self.file, v.offset.get() + off, len)
        })
        .map_err(|e| format!("{} at byte {}: {e}", v.label, v.offset))
    }

    /// What the SAN holds; with `check_origin` the origin is re-hashed too
    /// (it reads the whole origin, so only when asked).
    pub fn status(&self, check_origin: bool) -> Result<Status, InstalledError> {
        let done = |s: Step| self.journal.as_ref().is_some_and(|j| j.is_done(s));
        Ok(Status {
            cluster: self.plan.cluster.name.clone(),
            uuid: self.plan.cluster.uuid.to_string(),
            complete: self.journal.as_ref().is_some_and(Journal::complete),
            steps: Step::ALL
                .iter()
                .map(|s| StepState {
                    step: *s,
                    done: done(*s),
                })
                .collect(),
            nodes: self
                .plan
                .nodes
                .iter()
                .map(|n| {
                    let (store, store_problem) = match self.store_fill(n.name.as_str()) {
                        Ok(f) => (Some(f), None),
                        Err(e) => (None, Some(e)),
                    };
                    let slot = self.slots.as_ref().map(|t| {
                        match crate::slots::node_slot(self, n.name.as_str()) {
                            Ok(s) => {
                                let r = s.record.filter(|_| !s.fresh);
                                let cur = t.current_image().ok();
                                SlotOfNode {
                                    moves_at_reboot: r.as_ref().is_some_and(|r| {
                                        r.slot != t.current
                                            || cur.is_none_or(|i| i.image_sha256 != r.image_sha256)
                                    }),
                                    slot: r.as_ref().map(|r| r.slot),
                                    image_sha256: r.map(|r| r.image_sha256),
                                    problem: None,
                                }
                            }
                            Err(e) => SlotOfNode {
                                slot: None,
                                image_sha256: None,
                                moves_at_reboot: false,
                                problem: Some(e),
                            },
                        }
                    });
                    NodeStatus {
                        slot,
                        name: n.name.to_string(),
                        ip: n.ip.to_string(),
                        macs: n.macs.iter().map(ToString::to_string).collect(),
                        cow: n.cow.clone(),
                        store,
                        store_problem,
                    }
                })
                .collect(),
            image: self
                .manifest
                .as_ref()
                .map(|m| format!("{} {}", m.name, m.version)),
            test_image: self.manifest.as_ref().is_some_and(|m| m.test_image),
            slots: self.slots.clone(),
            origin_checked: check_origin,
            origin_problem: if check_origin {
                self.check_origin()?
            } else {
                None
            },
        })
    }
}
