//! `vlx-install apply`: the journaled loop over the install's steps.
//!
//! Each step ([`crate::steps`]) is done, then recorded in the journal on
//! `vlx-meta`. A rerun reads the journal, re-verifies every step it lists
//! (a step that does not verify is done again), and does the rest; when
//! everything verifies it writes nothing at all. The ESP and the MBR boot
//! code come last, so an install cut short never boots.

use crate::device::{Checked, Contents};
use crate::fs;
use crate::journal::{Journal, Step};
use crate::steps::ctx::{Ctx, fault};
use crate::steps::{boot, cow, disk, meta, origin, shared, swap};
use crate::target::{Target, TargetError};
use crate::tool::run;

pub use crate::prepare::Inputs;
pub use crate::steps::ctx::{ApplyError, Event, Reporter};

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Overwrite whatever the target holds.
    pub wipe: bool,
    /// Replace the origin of an installed cluster, resetting every node.
    pub reset_all: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every step verified; nothing was written.
    AlreadyInstalled,
    /// These steps were done (the others verified).
    Installed { did: Vec<Step> },
}

/// Installs `inputs` onto the checked target.
pub fn apply(
    inputs: &Inputs,
    checked: Checked,
    opts: Options,
    rep: &dyn Reporter,
) -> Result<Outcome, ApplyError> {
    let plan = &inputs.plan;
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
    let ctx = Ctx {
        inputs,
        target: &target,
        rep,
    };
    let journal = match found {
        Some(j) if j.slot_change.is_some() => {
            return Err(ApplyError::Refused(format!(
                "{} holds an unfinished upgrade or rollback of this cluster's image; finish it first by running it again (vlx-install upgrade with the same image, or vlx-install rollback)",
                target.path().display()
            )));
        }
        Some(j) if j.plan_sha256 != inputs.plan_sha256 => start_change(&ctx, j)?,
        Some(j) if j.image_sha256 != inputs.image.sha256 && plan.disk.has_slots() => {
            return Err(ApplyError::Refused(format!(
                "{} holds this cluster with two origin slots and another host image ({} is installed); a new image goes to the other slot with `vlx-install upgrade --image DIR` (each node moves to it at its next reboot), not with apply",
                target.path().display(),
                j.image_sha256
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
            j.only_nodes = None;
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
    let mut run = Run { ctx, journal };
    let mut did = Vec::new();
    for step in Step::ALL {
        if run.journal.is_done(step) {
            match verify(&run.ctx, step)? {
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

/// Starts a change of the installed cluster whose finished `installed`
/// journal names another plan: the plan was rebased onto the installed one
/// ([`cluster::diff::rebase`]), so kept volumes stay where they are. The
/// new journal, saved before anything else is written, lists every step
/// done but the content (the new tables and configurations) and, when the
/// change adds nodes, the stores and swap of those nodes only; the loop's
/// verification redoes the partition table and the ESP when they differ.
/// A crash anywhere is finished by a rerun with the same profile: the
/// rebase of the same profile gives the same plan.
fn start_change(ctx: &Ctx<'_>, installed: Journal) -> Result<Journal, ApplyError> {
    let inputs = ctx.inputs;
    let path = ctx.target.path().display();
    let Some(old) = &inputs.installed else {
        return Err(ApplyError::Refused(format!(
            "{path} holds an install of this cluster with another plan; the plan was made fresh, not onto the install (reinstall with --wipe)"
        )));
    };
    if !installed.complete() {
        return Err(ApplyError::Refused(format!(
            "{path} holds an unfinished install or change of this cluster with another plan; finish it first by rerunning apply with the profile it was started with, or reinstall with --wipe"
        )));
    }
    if installed.image_sha256 != inputs.image.sha256 {
        return Err(ApplyError::Refused(format!(
            "{path} holds this cluster with another host image: change the profile and replace the image in two runs (the image with its installed profile and --reset-all)"
        )));
    }
    let diff = cluster::diff::diff(old, &inputs.plan);
    let added = diff.added_nodes();
    ctx.rep.event(Event::Note(&format!(
        "changing the installed cluster in place: {} node(s) added, {} removed, {} changed, {} partition(s) changed, {} setting(s) changed",
        added.len(),
        diff.nodes
            .iter()
            .filter(|n| n.change == cluster::diff::Kind::Removed)
            .count(),
        diff.nodes
            .iter()
            .filter(|n| n.change == cluster::diff::Kind::Changed)
            .count(),
        diff.partitions.len(),
        diff.settings.len()
    )));
    let mut j = Journal::new(
        inputs.plan.cluster.uuid,
        inputs.plan_sha256.clone(),
        inputs.image.sha256.clone(),
    );
    for s in Step::ALL {
        j.mark(s);
    }
    j.unmark(Step::Content);
    if !added.is_empty() {
        j.unmark(Step::Cow);
        j.unmark(Step::Swap);
    }
    j.only_nodes = Some(added);
    meta::save_journal(ctx, &j)?;
    Ok(j)
}

/// The journal on the target's meta volume, if there is a readable one of
/// this cluster. The meta volume is found by the disk's own table: the
/// plan on it may not be this one.
pub fn read_journal(target: &Target, plan: &cluster::Plan) -> Result<Option<Journal>, ApplyError> {
    let on_disk = crate::device::read_gpt(target.file(), plan.disk.sector_size, target.size())
        .map_err(|source| TargetError {
            op: "reading the partition table of",
            path: target.path().to_owned(),
            offset: 0,
            source,
        })?;
    let Some(offset) = on_disk.and_then(|g| {
        cluster::locate::meta_entry(&g.entries).map(|e| e.offset(plan.disk.sector_size))
    }) else {
        return Ok(None);
    };
    let Ok(Some(bytes)) =
        fs::read_file(target.path(), offset, &format!("/{}", crate::journal::FILE))
    else {
        // No file system or no journal yet: nothing to resume from.
        return Ok(None);
    };
    Ok(Journal::parse(&bytes).filter(|j| j.cluster == plan.cluster.uuid))
}

/// `None` when the step's result is on the target as it should be;
/// otherwise why not.
fn verify(ctx: &Ctx<'_>, step: Step) -> Result<Option<String>, ApplyError> {
    match step {
        Step::Gpt => disk::verify(ctx),
        Step::Meta => meta::verify(ctx),
        Step::Origin => origin::verify(ctx),
        Step::Cow => cow::verify(ctx),
        Step::Swap => swap::verify(ctx),
        Step::Shared => shared::verify(ctx),
        Step::Content => meta::verify_content(ctx),
        Step::Boot => boot::verify(ctx),
    }
}

struct Run<'a> {
    ctx: Ctx<'a>,
    journal: Journal,
}

impl Run<'_> {
    /// Does one step and records it in the journal. Returns a detail line.
    fn execute(&mut self, step: Step) -> Result<String, ApplyError> {
        let ctx = &self.ctx;
        let detail = match step {
            Step::Gpt => disk::write(ctx, self.journal.only_nodes.is_none())?,
            Step::Meta => {
                // The meta volume carries the journal, marked before it is
                // made: the journal starts with it.
                self.journal.mark(Step::Gpt);
                self.journal.mark(Step::Meta);
                meta::write(ctx, &self.journal, false)?;
                return Ok("meta volume made".into());
            }
            Step::Origin => origin::write(ctx)?,
            Step::Cow => cow::write(ctx, &|n| self.journal.writes_node(n))?,
            Step::Swap => swap::write(ctx, &|n| self.journal.writes_node(n))?,
            Step::Shared => shared::write(ctx)?,
            Step::Content => {
                self.journal.mark(Step::Content);
                meta::write(ctx, &self.journal, true)?;
                return Ok(format!(
                    "configurations of {} nodes and the PXE tree",
                    ctx.plan().nodes.len()
                ));
            }
            Step::Boot => boot::write(ctx)?,
        };
        self.journal.mark(step);
        if self.journal.is_done(Step::Meta) {
            meta::save_journal(ctx, &self.journal)?;
        }
        Ok(detail)
    }
}
