//! `vlx-install apply`: the install as a sequence of journaled steps.
//!
//! Each step is done, then recorded in the journal on `vlx-meta`. A rerun
//! reads the journal, re-verifies every step it lists (a step that does not
//! verify is done again), and does the rest; when everything verifies it
//! writes nothing at all. The ESP and the MBR boot code come last, so an
//! install cut short never boots.

use std::path::{Path, PathBuf};

use cluster::{Bytes, Plan, Role};
use sha2::{Digest, Sha256};

use crate::device::{Checked, Contents};
use crate::fs::{self, Ext4};
use crate::image::{self, HostImage};
use crate::journal::{Journal, Step};
use crate::stage::{StageError, Staging};
use crate::stream::{self, StreamError};
use crate::target::{Target, TargetError};
use crate::tool::{ToolError, run};

/// Bytes zeroed at the start of each snapshot store. dm-snapshot keeps its
/// header in chunk 0 and starts a new store when the header's magic is zero
/// (drivers/md/dm-snap-persistent.c, `read_header`); 64 KiB covers chunk
/// sizes up to 128 sectors.
pub const COW_HEADER_BYTES: u64 = 64 << 10;
/// Bytes zeroed at the start of the ESP partition when the partition table
/// is written: the FAT boot sector and its backup (sector 6) and FSInfo.
const ESP_HEAD_BYTES: u64 = 1 << 20;
/// dm-snapshot's on-disk magic, "SnAp" as a little-endian u32.
const SNAP_MAGIC: &[u8; 4] = b"SnAp";
/// Where mkswap keeps the UUID and the label in the first page
/// (util-linux `struct swap_header_v1_2`).
const SWAP_UUID: std::ops::Range<usize> = 1036..1052;
const SWAP_LABEL: std::ops::Range<usize> = 1052..1068;

/// Everything an install reads, loaded and checked before the target is
/// touched.
#[derive(Debug)]
pub struct Inputs {
    pub profile_path: PathBuf,
    pub profile_text: String,
    pub plan: Plan,
    pub plan_json: String,
    pub plan_sha256: String,
    pub image: HostImage,
}

impl Inputs {
    pub fn new(profile_path: &Path, profile_text: String, plan: Plan, image: HostImage) -> Inputs {
        let plan_json = plan.to_json();
        let plan_sha256 = cluster::plan::hex(&Sha256::digest(plan_json.as_bytes()));
        Inputs {
            profile_path: profile_path.to_owned(),
            profile_text,
            plan,
            plan_json,
            plan_sha256,
            image,
        }
    }

    /// Every time written on the SAN: the image's SOURCE_DATE_EPOCH.
    pub fn epoch(&self) -> u64 {
        self.image.manifest.source_date_epoch
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Overwrite whatever the target holds.
    pub wipe: bool,
    /// Replace the origin of an installed cluster, resetting every node.
    pub reset_all: bool,
}

/// What the install is doing, for progress output.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    Start(Step),
    Verified(Step),
    Redo(Step, &'a str),
    Bytes { step: Step, done: u64, total: u64 },
    Done(Step, &'a str),
    Note(&'a str),
}

pub trait Reporter: Sync {
    fn event(&self, event: Event<'_>);
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every step verified; nothing was written.
    AlreadyInstalled,
    /// These steps were done (the others verified).
    Installed { did: Vec<Step> },
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error(transparent)]
    Stage(#[from] StageError),
    #[error(transparent)]
    Image(#[from] image::ImageError),
    #[error("{0}")]
    Refused(String),
    #[error("step {step}: {message}")]
    Step { step: Step, message: String },
}

/// Aborts the process at a named point when `VLX_INSTALL_FAULT` names it: a
/// test switch for the crash tests (`after:<step>` or `during:origin`).
fn fault(point: &str) {
    if std::env::var("VLX_INSTALL_FAULT").is_ok_and(|v| v == point) {
        eprintln!("vlx-install: fault injected at {point}");
        std::process::abort();
    }
}

struct Run<'a> {
    inputs: &'a Inputs,
    target: Target,
    rep: &'a dyn Reporter,
    journal: Journal,
}

/// Installs `inputs` onto the checked target.
pub fn apply(
    inputs: &Inputs,
    checked: Checked,
    opts: Options,
    rep: &dyn Reporter,
) -> Result<Outcome, ApplyError> {
    let plan = &inputs.plan;
    if plan.san.layout != cluster::profile::Layout::Gpt {
        return Err(ApplyError::Refused(
            "the LVM layout is planned but not yet written by this installer; use san.layout = \"gpt\" (at most 255 partitions)".into(),
        ));
    }
    if plan.services.shared && plan.san.shared_fs != cluster::profile::SharedFs::Ext4 {
        return Err(ApplyError::Refused(
            "storage.shared_fs = \"ocfs2\" is not yet made by this installer; use \"ext4\"".into(),
        ));
    }
    let contents = checked.contents().clone();
    let target = Target::open(checked)?;
    let found = match (&contents, opts.wipe) {
        (Contents::ThisCluster, false) => read_journal(&target, plan)?,
        _ => None,
    };
    let journal = match found {
        Some(j) if j.plan_sha256 != inputs.plan_sha256 => {
            return Err(ApplyError::Refused(format!(
                "{} holds an install of this cluster with another plan (nodes or layout changed); changing an installed layout is not supported: reinstall with --wipe",
                target.path().display()
            )));
        }
        Some(mut j) if j.image_sha256 != inputs.image.sha256 => {
            if !opts.reset_all {
                return Err(ApplyError::Refused(format!(
                    "{} holds this cluster with another host image; replacing the origin invalidates every node's snapshot store, so it needs --reset-all (every node returns to the new image at its next boot)",
                    target.path().display()
                )));
            }
            rep.event(Event::Note("replacing the origin and resetting every node"));
            j.image_sha256 = inputs.image.sha256.clone();
            for s in [Step::Origin, Step::Cow, Step::Content, Step::Boot] {
                j.unmark(s);
            }
            j
        }
        Some(j) => j,
        None => {
            if contents != Contents::Blank {
                // Start from a clean slate: old signatures anywhere (a
                // backup GPT, an ISO or LVM label) must not outlive us.
                run(std::process::Command::new("wipefs")
                    .args(["--all", "--force", "--quiet"])
                    .arg(target.path()))?;
            }
            Journal::new(
                plan.cluster.uuid,
                inputs.plan_sha256.clone(),
                inputs.image.sha256.clone(),
            )
        }
    };
    let mut run = Run {
        inputs,
        target,
        rep,
        journal,
    };
    let mut did = Vec::new();
    for step in Step::ALL {
        if run.journal.is_done(step) {
            match run.verify(step)? {
                None => {
                    rep.event(Event::Verified(step));
                    continue;
                }
                Some(why) => {
                    rep.event(Event::Redo(step, &why));
                    run.journal.unmark(step);
                    // What depends on a redone step is redone too: the
                    // partition table shares LBA 0 with the boot code, and
                    // a remade meta volume has lost its content.
                    match step {
                        Step::Gpt => run.journal.unmark(Step::Boot),
                        Step::Meta => run.journal.unmark(Step::Content),
                        _ => {}
                    }
                }
            }
        }
        rep.event(Event::Start(step));
        let detail = run.execute(step)?;
        fault(&format!("after:{step}"));
        did.push(step);
        rep.event(Event::Done(step, &detail));
    }
    if did.is_empty() {
        Ok(Outcome::AlreadyInstalled)
    } else {
        Ok(Outcome::Installed { did })
    }
}

fn partition<'p>(plan: &'p Plan, role: &Role) -> Result<&'p cluster::Partition, ApplyError> {
    plan.disk
        .by_role(role)
        .ok_or_else(|| ApplyError::Refused(format!("the plan has no {role:?} partition")))
}

fn offset_of(plan: &Plan, p: &cluster::Partition) -> Bytes {
    p.offset(plan.disk.sector_size)
}

/// The journal on the target's meta volume, if there is a readable one of
/// this cluster.
pub fn read_journal(target: &Target, plan: &Plan) -> Result<Option<Journal>, ApplyError> {
    let on_disk = crate::device::read_gpt(target.file(), plan.disk.sector_size, target.size())
        .map_err(|source| TargetError {
            op: "reading the partition table of",
            path: target.path().to_owned(),
            offset: 0,
            source,
        })?;
    let Some(meta) = on_disk.and_then(|g| g.entries.into_iter().find(|e| e.name == "vlx-meta"))
    else {
        return Ok(None);
    };
    let offset = meta.offset(plan.disk.sector_size);
    let Ok(Some(bytes)) =
        fs::read_file(target.path(), offset, &format!("/{}", crate::journal::FILE))
    else {
        // No file system or no journal yet: nothing to resume from.
        return Ok(None);
    };
    Ok(Journal::parse(&bytes).filter(|j| j.cluster == plan.cluster.uuid))
}

impl Run<'_> {
    fn plan(&self) -> &Plan {
        &self.inputs.plan
    }

    /// `None` when the step's result is on the target as it should be;
    /// otherwise why not.
    fn verify(&self, step: Step) -> Result<Option<String>, ApplyError> {
        let plan = self.plan();
        let t = &self.target;
        Ok(match step {
            Step::Gpt => {
                let mut bad = None;
                for w in cluster::gpt::encode(&plan.disk) {
                    let got = t.read_at(w.offset.get(), w.data.len())?;
                    // LBA 0 carries boot code in its first 440 bytes.
                    let skip = if w.offset.get() == 0 { 440 } else { 0 };
                    if got.get(skip..) != w.data.get(skip..) {
                        bad = Some(format!(
                            "the partition table at byte {} differs from the plan",
                            w.offset.get()
                        ));
                        break;
                    }
                }
                bad
            }
            Step::Meta => {
                let meta = partition(plan, &Role::Meta)?;
                match fs::read_file(t.path(), offset_of(plan, meta), "/plan.json")? {
                    Some(b) if b == self.inputs.plan_json.as_bytes() => None,
                    _ => Some("the meta volume does not hold this plan".into()),
                }
            }
            Step::Origin => {
                let p = partition(plan, &Role::Origin)?;
                let a = self.inputs.image.artifact(image::ORIGIN)?;
                let got = stream::hash_range(t, offset_of(plan, p).get(), a.size)?;
                (got != a.sha256)
                    .then(|| format!("the origin hashes to {got}, not the image's {}", a.sha256))
            }
            Step::Cow => {
                let mut bad = None;
                for n in &plan.nodes {
                    let p = plan
                        .disk
                        .by_label(&n.cow)
                        .ok_or_else(|| ApplyError::Refused(format!("no partition {}", n.cow)))?;
                    let head = t.read_at(offset_of(plan, p).get(), 512)?;
                    if !(head.iter().all(|b| *b == 0) || head.starts_with(SNAP_MAGIC)) {
                        bad = Some(format!(
                            "{} holds neither a fresh nor a snapshot store header",
                            n.cow
                        ));
                        break;
                    }
                }
                bad
            }
            Step::Swap => {
                let page = fs::page_size();
                let mut bad = None;
                for n in &plan.nodes {
                    let Some(label) = &n.swap else { continue };
                    let p = plan
                        .disk
                        .by_label(label)
                        .ok_or_else(|| ApplyError::Refused(format!("no partition {label}")))?;
                    let head = t.read_at(offset_of(plan, p).get(), page)?;
                    let uuid = crate::device::fs_uuid(plan, label);
                    if !fs::is_swap(&head) || head.get(SWAP_UUID) != Some(&uuid.as_bytes()[..]) {
                        bad = Some(format!("{label} holds no swap header of this cluster"));
                        break;
                    }
                }
                bad
            }
            Step::Shared => match plan.disk.by_role(&Role::Shared) {
                None => None,
                Some(p) => {
                    let head = t.read_at(offset_of(plan, p).get(), 2048)?;
                    let want = crate::device::fs_uuid(plan, "vlx-shared");
                    (fs::ext4_uuid(&head) != Some(want))
                        .then(|| "vlx-shared holds no ext4 file system of this cluster".into())
                }
            },
            Step::Content => {
                let meta = partition(plan, &Role::Meta)?;
                match fs::read_file(t.path(), offset_of(plan, meta), "/content.json")? {
                    Some(b) if b == self.content_stamp().as_bytes() => None,
                    _ => Some(
                        "the meta volume lacks this install's node configurations or boot tree"
                            .into(),
                    ),
                }
            }
            Step::Boot => crate::boot::verify(self.inputs, t)?,
        })
    }

    /// Does one step and records it in the journal. Returns a detail line.
    fn execute(&mut self, step: Step) -> Result<String, ApplyError> {
        let detail = match step {
            Step::Gpt => self.gpt()?,
            Step::Meta => {
                self.journal.mark(Step::Gpt);
                self.journal.mark(Step::Meta);
                self.meta(false)?;
                return Ok("meta volume made".into());
            }
            Step::Origin => self.origin()?,
            Step::Cow => self.cow()?,
            Step::Swap => self.swap()?,
            Step::Shared => self.shared()?,
            Step::Content => {
                self.journal.mark(Step::Content);
                self.meta(true)?;
                return Ok(format!(
                    "configurations of {} nodes and the PXE tree",
                    self.plan().nodes.len()
                ));
            }
            Step::Boot => crate::boot::write(self.inputs, &self.target)?,
        };
        self.journal.mark(step);
        self.save_journal()?;
        Ok(detail)
    }

    fn save_journal(&self) -> Result<(), ApplyError> {
        if !self.journal.is_done(Step::Meta) {
            return Ok(()); // no meta volume yet; the journal starts with it
        }
        let plan = self.plan();
        let meta = partition(plan, &Role::Meta)?;
        fs::replace_file(
            self.target.path(),
            offset_of(plan, meta),
            crate::journal::FILE,
            self.journal.to_json().as_bytes(),
            self.inputs.epoch(),
        )?;
        Ok(())
    }

    fn gpt(&self) -> Result<String, ApplyError> {
        let plan = self.plan();
        let writes = cluster::gpt::encode(&plan.disk);
        for w in &writes {
            self.target.write_at(w.offset.get(), &w.data)?;
        }
        // An ESP of an earlier install in the same place must not boot
        // this one half-done: its boot sectors go now, the new ESP last.
        let esp = partition(plan, &Role::Esp)?;
        self.target.zero(
            offset_of(plan, esp).get(),
            ESP_HEAD_BYTES.min(esp.size.get()),
        )?;
        self.target.sync()?;
        Ok(format!("{} partitions", self.plan().disk.partitions.len()))
    }

    /// Makes the meta volume: the profile, plan, manifest and journal, and
    /// with `content` the nodes' configurations and the PXE tree.
    fn meta(&self, content: bool) -> Result<(), ApplyError> {
        let inputs = self.inputs;
        let plan = self.plan();
        let stage = Staging::new(inputs.epoch())?;
        stage.file(
            Path::new("cluster.toml"),
            inputs.profile_text.as_bytes(),
            0o644,
            0,
            0,
        )?;
        stage.file(
            Path::new("plan.json"),
            inputs.plan_json.as_bytes(),
            0o644,
            0,
            0,
        )?;
        stage.file(
            Path::new("manifest.json"),
            &inputs.image.manifest_bytes,
            0o644,
            0,
            0,
        )?;
        stage.file(
            Path::new(crate::journal::FILE),
            self.journal.to_json().as_bytes(),
            0o644,
            0,
            0,
        )?;
        if content {
            crate::content::stage(&stage, inputs)?;
            stage.file(
                Path::new("content.json"),
                self.content_stamp().as_bytes(),
                0o644,
                0,
                0,
            )?;
        }
        stage.seal()?;
        let meta = partition(plan, &Role::Meta)?;
        fs::mke2fs(
            self.target.path(),
            &Ext4 {
                label: "vlx-meta",
                uuid: crate::device::fs_uuid(plan, "vlx-meta"),
                offset: offset_of(plan, meta),
                size: meta.size,
                contents: Some(stage.path()),
                epoch: inputs.epoch(),
                mmp: false,
            },
        )?;
        Ok(())
    }

    /// Names what the content step laid down, so a rerun can tell.
    fn content_stamp(&self) -> String {
        format!(
            "{{\"plan_sha256\": \"{}\", \"image_sha256\": \"{}\"}}\n",
            self.inputs.plan_sha256, self.inputs.image.sha256
        )
    }

    fn origin(&self) -> Result<String, ApplyError> {
        let plan = self.plan();
        let p = partition(plan, &Role::Origin)?;
        let a = self.inputs.image.artifact(image::ORIGIN)?;
        let total = a.size;
        let rep = self.rep;
        let half = total / 2;
        let copied = stream::copy_verified(
            &self.inputs.image.path(image::ORIGIN),
            &a.sha256,
            &self.target,
            offset_of(plan, p).get(),
            p.size.get(),
            &|done| {
                rep.event(Event::Bytes {
                    step: Step::Origin,
                    done,
                    total,
                });
                if done >= half {
                    fault("during:origin");
                }
            },
        )?;
        let secs = copied.write_time.as_secs_f64().max(1e-9);
        Ok(format!(
            "{} written at {:.0} MB/s and read back in {:.1} s, sha256 {}",
            Bytes(copied.bytes),
            copied.bytes as f64 / secs / 1e6,
            copied.verify_time.as_secs_f64(),
            &copied.sha256[..16]
        ))
    }

    fn cow(&self) -> Result<String, ApplyError> {
        let plan = self.plan();
        for n in &plan.nodes {
            let p = plan
                .disk
                .by_label(&n.cow)
                .ok_or_else(|| ApplyError::Refused(format!("no partition {}", n.cow)))?;
            self.target
                .zero(offset_of(plan, p).get(), COW_HEADER_BYTES.min(p.size.get()))?;
        }
        self.target.sync()?;
        Ok(format!("{} snapshot stores reset", plan.nodes.len()))
    }

    fn swap(&self) -> Result<String, ApplyError> {
        let plan = self.plan();
        let mut count = 0;
        let mut template: Option<(Bytes, Vec<u8>)> = None;
        for n in &plan.nodes {
            let Some(label) = &n.swap else { continue };
            let p = plan
                .disk
                .by_label(label)
                .ok_or_else(|| ApplyError::Refused(format!("no partition {label}")))?;
            // mkswap runs once per size; each node's header then gets its
            // own UUID and label at mkswap's offsets.
            let head = match &template {
                Some((size, h)) if *size == p.size => h.clone(),
                _ => {
                    let h = fs::swap_header(p.size, "template", uuid::Uuid::nil())?;
                    template = Some((p.size, h.clone()));
                    h
                }
            };
            let mut head = head;
            head[SWAP_UUID].copy_from_slice(crate::device::fs_uuid(plan, label).as_bytes());
            let name = n.name.as_str().as_bytes();
            let field = &mut head[SWAP_LABEL];
            field.fill(0);
            let len = name.len().min(field.len());
            field[..len].copy_from_slice(&name[..len]);
            self.target.write_at(offset_of(plan, p).get(), &head)?;
            count += 1;
        }
        self.target.sync()?;
        Ok(format!("{count} swap areas"))
    }

    fn shared(&self) -> Result<String, ApplyError> {
        let plan = self.plan();
        let Some(p) = plan.disk.by_role(&Role::Shared) else {
            return Ok("no shared volume in the plan".into());
        };
        fs::mke2fs(
            self.target.path(),
            &Ext4 {
                label: "vlx-shared",
                uuid: crate::device::fs_uuid(plan, "vlx-shared"),
                offset: offset_of(plan, p),
                size: p.size,
                contents: None,
                epoch: self.inputs.epoch(),
                mmp: true,
            },
        )?;
        Ok(format!("ext4 of {}", p.size))
    }
}
