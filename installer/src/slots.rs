//! Two origin slots on the SAN (`storage.slots = 2`): the slot table on the
//! meta volume, each node's record on its store, and the two commands that
//! move the cluster between slots while it runs.
//!
//! `vlx-install upgrade --image DIR` writes the image to the slot that is
//! not current, then makes it current: the meta volume is made again with
//! the new slot table, the new image's PXE tree and manifest, and the
//! nodes' configurations as they were; then the ESP gets the new kernel.
//! Running blades keep running on their slot; each moves to the new slot at
//! its next reboot, and its node agent resets its snapshot store then
//! (`cluster::slots::decide`). `vlx-install rollback` makes the previous
//! slot current again, with the boot files kept for it on the meta volume
//! (`slots/<slot>/`).
//!
//! Both are journaled: the change is saved in the journal
//! (`journal::SlotChange`) before the first write and cleared after the
//! last, and a rerun finishes it. An upgrade refuses a slot that a node
//! still records as its own (its store runs over that origin), and any
//! other image while an upgrade is half done.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cluster::slots::{NodeRecord, RECORD_BYTES, Slot, SlotTable};
use cluster::{Bytes, Locate, Role};

use crate::apply::{ApplyError, Event, Inputs, Reporter};
use crate::device;
use crate::fs;
use crate::image::{self, HostImage, ImageError};
use crate::installed::{Installed, InstalledError};
use crate::journal::{Journal, SlotChange, SlotChangeKind, Step};
use crate::stage::{StageError, Staging};
use crate::steps::ctx::{Ctx, fault};
use crate::steps::{boot, meta, origin};
use crate::target::Target;
use crate::tool::ToolError;

/// The files of a slot kept on the meta volume under `slots/<slot>/`.
const BOOT_FILES: [&str; 3] = [image::MANIFEST, image::KERNEL, image::INITRAMFS];

/// The slots as an install, change, upgrade or rollback writes them.
#[derive(Debug, Clone)]
pub struct SlotState {
    pub table: SlotTable,
    /// The slot whose origin the origin step writes and verifies.
    pub write: Slot,
    /// Where each filled slot's boot files (manifest, kernel, initramfs)
    /// are on this machine: an image directory, or a copy from the meta
    /// volume.
    pub boot: Vec<(Slot, PathBuf)>,
    /// Keeps the copies from the meta volume until the state is dropped.
    _copies: Option<Arc<tempfile::TempDir>>,
}

impl SlotState {
    /// A new install: slot A holds `image` and is current; slot B is empty.
    pub fn install(image: &HostImage) -> SlotState {
        SlotState {
            table: SlotTable::install(image.slot_image()),
            write: Slot::A,
            boot: vec![(Slot::A, image.dir.clone())],
            _copies: None,
        }
    }

    /// The slots of the install on `san`, for a change of it with `image`
    /// (which must be the current slot's: the journal refuses any other);
    /// `None` when its meta volume holds no slot table yet (an install cut
    /// short), so that the install's own state stands.
    pub fn installed(san: &Path, image: &HostImage) -> Result<Option<SlotState>, InstalledError> {
        let inst = Installed::open(san)?;
        let Some(table) = inst.slots.clone() else {
            return Ok(None);
        };
        let copies = Arc::new(temp_dir()?);
        let mut boot = Vec::new();
        for s in Slot::ALL {
            match table.image(s) {
                Some(i) if i.image_sha256 == image.sha256 => boot.push((s, image.dir.clone())),
                Some(_) => boot.push((s, dump_slot(&inst, s, copies.path())?)),
                None => {}
            }
        }
        Ok(Some(SlotState {
            write: table.current,
            table,
            boot,
            _copies: Some(copies),
        }))
    }
}

/// The temporary folders of slot copies:
/// `vlx-slots-<pid namespace>-<pid>-<random>`.
const TEMP_PREFIX: &str = "vlx-slots-";

/// A folder for copies of the slots' boot files, named after this process,
/// after removing those of installs that died before they could remove
/// theirs (killed, or the machine lost power under them).
fn temp_dir() -> Result<tempfile::TempDir, ToolError> {
    let tmp = std::env::temp_dir();
    let ns = pid_namespace();
    sweep_stale(&tmp, ns, |pid| Path::new(&format!("/proc/{pid}")).exists());
    tempfile::Builder::new()
        .prefix(&format!("{TEMP_PREFIX}{ns}-{}-", std::process::id()))
        .tempdir_in(tmp)
        .map_err(|source| ToolError::Start {
            program: "debugfs (temporary folder)".into(),
            source,
        })
}

/// This process's pid namespace (the inode `/proc/self/ns/pid` names), or
/// 0 when it cannot be read: a pid means something in its namespace only.
fn pid_namespace() -> u64 {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|l| {
            l.to_str()?
                .strip_prefix("pid:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Removes the folders in `tmp` of installs in pid namespace `ns` whose
/// process is not `alive`. Best effort: a folder that cannot be removed
/// stays; so do those of other pid namespaces (a container's install
/// sharing this /tmp), of an unknown one (0), and one whose pid a new
/// process took, until that one ends too.
fn sweep_stale(tmp: &Path, ns: u64, alive: impl Fn(u32) -> bool) {
    if ns == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some((their_ns, pid)) = name
            .to_str()
            .and_then(|n| n.strip_prefix(TEMP_PREFIX))
            .and_then(|rest| {
                let mut parts = rest.splitn(3, '-');
                let ns = parts.next()?.parse::<u64>().ok()?;
                let pid = parts.next()?.parse::<u32>().ok()?;
                parts.next()?;
                Some((ns, pid))
            })
        else {
            continue;
        };
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && their_ns == ns && pid != std::process::id() && !alive(pid) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Copies `slots/<slot>/` of the meta volume into `dest`; returns the copy.
fn dump_slot(inst: &Installed, slot: Slot, dest: &Path) -> Result<PathBuf, ToolError> {
    let dir = format!("/{}/{slot}", contracts::names::meta::SLOT_DIRS);
    fs::dump_tree(&inst.facts.path, inst.meta_offset, &dir, dest)?;
    Ok(dest.join(slot.name()))
}

/// Stages `slots.json` and each filled slot's boot files.
pub fn stage(stage: &Staging, s: &SlotState) -> Result<(), StageError> {
    use contracts::names::meta::{SLOT_DIRS, SLOTS};
    stage.file(Path::new(SLOTS), s.table.to_json().as_bytes(), 0o644, 0, 0)?;
    for (slot, dir) in &s.boot {
        let to = Path::new(SLOT_DIRS).join(slot.name());
        stage.dir(&to, 0o755, 0, 0)?;
        for f in BOOT_FILES {
            stage.copy(&to.join(f), &dir.join(f), 0o644)?;
        }
    }
    Ok(())
}

/// Makes the current slot's kernel and initramfs under `slots/` hard links
/// of the PXE tree's copies when they are the same bytes (they are, once
/// the tree is staged), so that the meta volume holds each file once:
/// `mke2fs -d` keeps hard links.
pub fn link_current(stage: &Staging, s: &SlotState) -> Result<(), StageError> {
    use contracts::names::meta::{SLOT_DIRS, TFTP};
    for f in [image::KERNEL, image::INITRAMFS] {
        let pxe = stage.path().join(TFTP).join(f);
        let kept = stage
            .path()
            .join(SLOT_DIRS)
            .join(s.table.current.name())
            .join(f);
        let err = |path: &Path| {
            let path = path.to_owned();
            move |source| StageError { path, source }
        };
        let same = match (std::fs::read(&pxe), std::fs::read(&kept)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if same {
            std::fs::remove_file(&kept).map_err(err(&kept))?;
            std::fs::hard_link(&pxe, &kept).map_err(err(&kept))?;
        }
    }
    Ok(())
}

/// Reads `slots.json` of the meta volume at `offset`; `None` when it has
/// none (a one-slot install).
pub fn read_table(san: &Path, offset: Bytes) -> Result<Option<SlotTable>, InstalledError> {
    let Some(b) = fs::read_file(san, offset, &format!("/{}", contracts::names::meta::SLOTS))?
    else {
        return Ok(None);
    };
    SlotTable::from_json(&String::from_utf8_lossy(&b))
        .map(Some)
        .map_err(|e| InstalledError::NotInstalled {
            path: san.to_owned(),
            why: format!("its {} is unreadable: {e}", contracts::names::meta::SLOTS),
        })
}

/// What a node's store says of its slot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeSlot {
    /// The slot and image the node's store was started on; `None` when the
    /// node has not booted since its store was made.
    pub record: Option<NodeRecord>,
    /// Whether the store's header is zero (reset, or never booted): such a
    /// store runs over no origin yet.
    pub fresh: bool,
}

/// Node `node`'s record and whether its store is fresh, read from the SAN.
pub fn node_slot(inst: &Installed, node: &str) -> Result<NodeSlot, String> {
    let v = inst.volumes();
    let rec = v
        .locate(&cluster::locate::record(node))
        .map_err(|e| e.to_string())?;
    let store = v
        .locate(&cluster::locate::cow(node))
        .map_err(|e| e.to_string())?;
    let area = device::read_at(&inst.file, rec.offset.get(), RECORD_BYTES)
        .map_err(|e| format!("{} at byte {}: {e}", rec.label, rec.offset))?;
    let head = device::read_at(&inst.file, store.offset.get(), 512)
        .map_err(|e| format!("{} at byte {}: {e}", store.label, store.offset))?;
    let record = NodeRecord::decode(&area).map_err(|e| format!("{}: {e}", rec.label))?;
    Ok(NodeSlot {
        record,
        fresh: head.iter().all(|b| *b == 0),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum SlotsError {
    #[error(transparent)]
    Installed(#[from] InstalledError),
    #[error(transparent)]
    Refusal(#[from] device::Refusal),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("checking image {dir}: {error}")]
    Image { dir: PathBuf, error: ImageError },
    /// Nothing was written (exit 3).
    #[error("{0}")]
    Refused(#[source] voice::Hinted),
}

impl SlotsError {
    /// 3 for a refusal (the SAN was left as it was: a target of the wrong
    /// type, one that holds no install of a cluster or an unfinished one,
    /// an image that does not check, or the change refused), else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            SlotsError::Refusal(_)
            | SlotsError::Image { .. }
            | SlotsError::Refused(_)
            | SlotsError::Apply(ApplyError::Refused(_))
            | SlotsError::Installed(
                InstalledError::Device(_)
                | InstalledError::NotInstalled { .. }
                | InstalledError::Interrupted { .. },
            ) => voice::exit::REFUSED,
            _ => voice::exit::FAILED,
        }
    }
}

fn refuse(what: impl Into<String>, hint: impl Into<String>) -> SlotsError {
    SlotsError::Refused(voice::Hinted::new(what, hint))
}

/// What an upgrade or rollback did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    /// The slot table the cluster boots from now.
    pub table: SlotTable,
    /// Nothing to do: the cluster already boots what was asked.
    pub unchanged: bool,
    pub message: String,
}

/// The installed cluster with two slots, or a refusal naming what to do.
fn open_slotted(san: &Path) -> Result<(Installed, SlotTable, Journal), SlotsError> {
    let inst = Installed::open(san)?;
    let path = san.display();
    if !inst.plan.disk.has_slots() {
        return Err(refuse(
            format!(
                "{path}: cluster {} was installed with one origin slot; an upgrade with a way back needs two",
                inst.plan.cluster.name
            ),
            "set storage.slots = 2 and reinstall (apply --wipe: every store is lost), or replace the image in place with `vlx-install apply --reset-all` (every node is reset, no way back)",
        ));
    }
    let table = inst.slots.clone().ok_or_else(|| {
        refuse(
            format!("{path}: the meta volume holds no slot table (slots.json)"),
            "finish the install with vlx-install apply and the same profile and image",
        )
    })?;
    let journal = inst.journal.clone().ok_or_else(|| {
        refuse(
            format!("{path}: the meta volume holds no install journal"),
            "finish the install with vlx-install apply and the same profile and image",
        )
    })?;
    Ok((inst, table, journal))
}

/// The nodes whose stores run over `slot` (their record names it and the
/// store is not fresh), which an upgrade must not overwrite.
fn nodes_on(inst: &Installed, slot: Slot) -> Result<Vec<String>, SlotsError> {
    let mut out = Vec::new();
    for n in &inst.plan.nodes {
        let name = n.name.as_str();
        let s = node_slot(inst, name).map_err(|e| {
            refuse(
                format!(
                    "{}: reading the slot record of {name}: {e}",
                    inst.facts.path.display()
                ),
                format!("reset the node (vlx-install reset-node {name}) once it is off"),
            )
        })?;
        if s.record.as_ref().is_some_and(|r| r.slot == slot) && !s.fresh {
            out.push(name.to_owned());
        }
    }
    Ok(out)
}

/// Writes the journal on the meta volume of `target`.
fn save(ctx: &Ctx<'_>, j: &Journal) -> Result<(), SlotsError> {
    meta::save_journal(ctx, j).map_err(SlotsError::from)
}

/// What a change of slot works with: the target, opened once the installed
/// disk checked again; the steps' inputs; and the journal recording the
/// change (`kind`, to the slot `state` writes, with `image`).
fn begin_change(
    inst: &Installed,
    journal: &Journal,
    image: HostImage,
    state: SlotState,
    kind: SlotChangeKind,
) -> Result<(Target, Inputs, Journal), SlotsError> {
    let checked = device::check_installed(inst.facts.clone(), &inst.plan)?;
    let target = Target::open(checked).map_err(ApplyError::from)?;
    let mut j = journal.clone();
    j.slot_change = Some(SlotChange {
        kind,
        to: state.write,
        image_sha256: image.sha256.clone(),
    });
    let inputs = inputs(inst, journal, image, state)?;
    Ok((target, inputs, j))
}

/// The inputs of the meta and boot steps for the installed plan with
/// `image` and `slots`; the plan must be the one the journal names.
fn inputs(
    inst: &Installed,
    journal: &Journal,
    image: HostImage,
    slots: SlotState,
) -> Result<Inputs, SlotsError> {
    let path = &inst.facts.path;
    let text = fs::read_file(
        path,
        inst.meta_offset,
        &format!("/{}", contracts::names::meta::CLUSTER),
    )?
    .ok_or_else(|| {
        refuse(
            format!("{}: the meta volume holds no cluster.toml", path.display()),
            "finish the install with vlx-install apply and the same profile and image",
        )
    })?;
    let mut inputs = Inputs::new(
        Path::new(contracts::names::meta::CLUSTER),
        String::from_utf8_lossy(&text).into_owned(),
        inst.plan.clone(),
        image,
    );
    if inputs.plan_sha256 != journal.plan_sha256 {
        return Err(refuse(
            format!(
                "{}: plan.json on the meta volume is not the plan its journal names",
                path.display()
            ),
            "finish the last change with vlx-install apply and its profile first",
        ));
    }
    inputs.slots = Some(slots);
    Ok(inputs)
}

/// Makes the meta volume again with `j` (unless it holds `ctx`'s slot
/// table already), writes the ESP, then clears the change from the
/// journal.
fn switch(ctx: &Ctx<'_>, mut j: Journal, rep: &dyn Reporter) -> Result<(), SlotsError> {
    let inputs = ctx.inputs;
    let Some(slots) = &inputs.slots else {
        return Err(refuse("no slot table to write", "this is a bug"));
    };
    let v = ctx.locate(&Role::Meta)?;
    if read_table(ctx.target.path(), v.offset)?.as_ref() != Some(&slots.table) {
        rep.event(Event::Start(Step::Content));
        meta::write_with(ctx, &j, meta::Content::Kept)?;
        rep.event(Event::Done(
            Step::Content,
            &format!(
                "meta volume made again: slot {} current, its PXE tree, the nodes' configurations kept",
                slots.table.current
            ),
        ));
    }
    fault("after:slots-meta");
    rep.event(Event::Start(Step::Boot));
    let did = boot::write(ctx)?;
    rep.event(Event::Done(Step::Boot, &did));
    j.slot_change = None;
    save(ctx, &j)?;
    ctx.target.sync().map_err(ApplyError::from)?;
    Ok(())
}

/// `vlx-install upgrade`: writes `image_dir` to the slot that is not
/// current and makes it current. Running nodes are not touched; each
/// moves to the new slot at its next reboot, its store reset then.
pub fn upgrade(san: &Path, image_dir: &Path, rep: &dyn Reporter) -> Result<Outcome, SlotsError> {
    let (inst, table, journal) = open_slotted(san)?;
    let path = san.display().to_string();
    let image = HostImage::open(image_dir).map_err(|error| SlotsError::Image {
        dir: image_dir.to_owned(),
        error,
    })?;
    let cur = table
        .current_image()
        .map_err(|e| refuse(format!("{path}: {e}"), "vlx-install verify"))?
        .clone();
    if image.manifest.name != cur.name {
        return Err(refuse(
            format!(
                "{path}: the cluster runs host image {:?}, and {} is image {:?}",
                cur.name,
                image_dir.display(),
                image.manifest.name
            ),
            "an upgrade takes a newer build of the same host image; another image is a reinstall",
        ));
    }
    let new_image = image.slot_image();
    let (new, resuming) = match &journal.slot_change {
        Some(c) if c.kind == SlotChangeKind::Upgrade && c.image_sha256 == image.sha256 => {
            rep.event(Event::Note(&format!(
                "finishing the upgrade to {new_image} in slot {}",
                c.to
            )));
            let new = if table.current == c.to {
                table.clone()
            } else {
                table.upgraded(new_image.clone())
            };
            (new, true)
        }
        Some(c) => {
            let what = match c.kind {
                SlotChangeKind::Upgrade => format!(
                    "an upgrade to the image with manifest sha256 {} in slot {} was cut short",
                    c.image_sha256, c.to
                ),
                SlotChangeKind::Rollback => format!("a rollback to slot {} was cut short", c.to),
            };
            return Err(refuse(
                format!("{path}: {what}"),
                match c.kind {
                    SlotChangeKind::Upgrade => {
                        "run the upgrade again with that image to finish it, then upgrade again"
                    }
                    SlotChangeKind::Rollback => "run vlx-install rollback again to finish it",
                },
            ));
        }
        None => {
            if !journal.complete() {
                return Err(refuse(
                    format!(
                        "{path}: the install or change of cluster {} is not finished",
                        inst.plan.cluster.name
                    ),
                    "finish it with vlx-install apply and the same profile and image",
                ));
            }
            if cur.image_sha256 == image.sha256 {
                return Ok(Outcome {
                    message: format!(
                        "cluster {} already boots {new_image} from slot {}; nothing was written",
                        inst.plan.cluster.name, table.current
                    ),
                    table,
                    unchanged: true,
                });
            }
            (table.upgraded(new_image.clone()), false)
        }
    };
    let to = new.current;
    if !resuming {
        let busy = nodes_on(&inst, to)?;
        if !busy.is_empty() {
            return Err(refuse(
                format!(
                    "{path}: slot {to} is in use: the stores of {} run over it (they have not rebooted since the cluster left it)",
                    busy.join(", ")
                ),
                format!(
                    "reboot them (they move to slot {}) or, once they are off, reset them (vlx-install reset-node), then upgrade",
                    table.current
                ),
            ));
        }
    }
    let copies = Arc::new(temp_dir()?);
    let mut boot = vec![(to, image.dir.clone())];
    for s in Slot::ALL.into_iter().filter(|s| *s != to) {
        if new.image(s).is_some() {
            boot.push((s, dump_slot(&inst, s, copies.path())?));
        }
    }
    let state = SlotState {
        table: new.clone(),
        write: to,
        boot,
        _copies: Some(copies),
    };
    let (target, inputs, mut j) =
        begin_change(&inst, &journal, image, state, SlotChangeKind::Upgrade)?;
    let ctx = Ctx {
        inputs: &inputs,
        target: &target,
        rep,
    };
    if !resuming {
        save(&ctx, &j)?;
    }
    match origin::verify(&ctx)? {
        None => rep.event(Event::Verified(Step::Origin)),
        Some(_) => {
            rep.event(Event::Start(Step::Origin));
            let did = origin::write(&ctx)?;
            rep.event(Event::Done(Step::Origin, &did));
        }
    }
    fault("after:slots-origin");
    j.image_sha256 = inputs.image.sha256.clone();
    switch(&ctx, j, rep)?;
    Ok(Outcome {
        message: format!(
            "cluster {} upgraded: slot {to} holds {new_image} and is current; slot {} ({cur}) stays for a rollback.\n\
             Running nodes keep their slot until they reboot. AT ITS NEXT REBOOT EACH NODE MOVES TO SLOT {to} AND ITS SNAPSHOT STORE IS RESET: \
             everything written to its root since its last reset is lost (its rendered configuration is applied again). \
             Keep what must survive on the shared volume.",
            inputs.plan.cluster.name, table.current
        ),
        table: new,
        unchanged: false,
    })
}

/// `vlx-install rollback`: the previous slot current again, with the boot
/// files kept for it. Nodes move at their next reboot, their stores reset
/// then, as for an upgrade; nodes still on the previous slot keep theirs.
pub fn rollback(san: &Path, rep: &dyn Reporter) -> Result<Outcome, SlotsError> {
    let (inst, table, journal) = open_slotted(san)?;
    let path = san.display().to_string();
    let new = match &journal.slot_change {
        Some(c) if c.kind == SlotChangeKind::Rollback => {
            rep.event(Event::Note(&format!(
                "finishing the rollback to slot {}",
                c.to
            )));
            if table.current == c.to {
                table.clone()
            } else {
                table.rolled_back().ok_or_else(|| {
                    refuse(
                        format!("{path}: the slot table has no previous slot"),
                        "vlx-install verify",
                    )
                })?
            }
        }
        Some(c) => {
            return Err(refuse(
                format!(
                    "{path}: an upgrade to the image with manifest sha256 {} in slot {} was cut short",
                    c.image_sha256, c.to
                ),
                "run the upgrade again with that image to finish it, then roll back",
            ));
        }
        None => {
            if !journal.complete() {
                return Err(refuse(
                    format!(
                        "{path}: the install or change of cluster {} is not finished",
                        inst.plan.cluster.name
                    ),
                    "finish it with vlx-install apply and the same profile and image",
                ));
            }
            table.rolled_back().ok_or_else(|| {
                refuse(
                    format!(
                        "{path}: cluster {} has no previous slot to roll back to: it has booted slot {} only",
                        inst.plan.cluster.name, table.current
                    ),
                    "a rollback follows an upgrade (vlx-install upgrade --image DIR)",
                )
            })?
        }
    };
    let to = new.current;
    let want = new
        .current_image()
        .map_err(|e| refuse(format!("{path}: {e}"), "vlx-install verify"))?
        .clone();
    let copies = Arc::new(temp_dir()?);
    let mut boot = Vec::new();
    for s in Slot::ALL {
        if new.image(s).is_some() {
            boot.push((s, dump_slot(&inst, s, copies.path())?));
        }
    }
    let dir = copies.path().join(to.name());
    let image = HostImage::open_boot(&dir).map_err(|error| {
        refuse(
            format!("{path}: the boot files of slot {to} on the meta volume do not check: {error}"),
            "upgrade with an image directory instead (vlx-install upgrade --image DIR)",
        )
    })?;
    if image.sha256 != want.image_sha256 {
        return Err(refuse(
            format!(
                "{path}: slot {to}'s manifest on the meta volume has sha256 {}, the slot table says {}",
                image.sha256, want.image_sha256
            ),
            "upgrade with an image directory instead (vlx-install upgrade --image DIR)",
        ));
    }
    let state = SlotState {
        table: new.clone(),
        write: to,
        boot,
        _copies: Some(copies),
    };
    let (target, inputs, mut j) =
        begin_change(&inst, &journal, image, state, SlotChangeKind::Rollback)?;
    let ctx = Ctx {
        inputs: &inputs,
        target: &target,
        rep,
    };
    // The slot to return to must still hold its image: nothing writes a
    // slot but an upgrade, but a damaged one must not become current.
    if let Some(why) = origin::verify(&ctx)? {
        return Err(refuse(
            format!("{path}: slot {to} does not verify: {why}"),
            "upgrade with an image directory instead (vlx-install upgrade --image DIR)",
        ));
    }
    rep.event(Event::Verified(Step::Origin));
    save(&ctx, &j)?;
    j.image_sha256 = inputs.image.sha256.clone();
    switch(&ctx, j, rep)?;
    Ok(Outcome {
        message: format!(
            "cluster {} rolled back: slot {to} ({want}) is current again.\n\
             AT ITS NEXT REBOOT EACH NODE THAT RUNS ANOTHER SLOT MOVES TO SLOT {to} AND ITS SNAPSHOT STORE IS RESET \
             (nodes that never left slot {to} keep theirs). Keep what must survive on the shared volume.",
            inputs.plan.cluster.name
        ),
        table: new,
        unchanged: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_folders_of_gone_installs_of_this_namespace_are_swept() {
        let tmp = tempfile::tempdir().unwrap();
        let ns = pid_namespace();
        assert_ne!(ns, 0, "/proc/self/ns/pid");
        let me = std::process::id();
        let at = |name: String| tmp.path().join(name);
        // pid 4 is gone, every other one lives.
        let alive = |pid: u32| pid != 4;
        let gone = at(format!("{TEMP_PREFIX}{ns}-4-abc"));
        let mine = at(format!("{TEMP_PREFIX}{ns}-{me}-def"));
        let live = at(format!("{TEMP_PREFIX}{ns}-7-ghi"));
        let other_ns = at(format!("{TEMP_PREFIX}{}-4-jkl", ns + 1));
        let old_style = at(format!("{TEMP_PREFIX}teWgws"));
        let a_file = at(format!("{TEMP_PREFIX}{ns}-4-file"));
        for d in [&gone, &mine, &live, &other_ns, &old_style] {
            std::fs::create_dir_all(d.join("a")).unwrap();
            std::fs::write(d.join("a/vmlinuz"), b"kernel").unwrap();
        }
        std::fs::write(&a_file, b"not a folder").unwrap();

        // An unknown namespace sweeps nothing.
        sweep_stale(tmp.path(), 0, alive);
        assert!(gone.exists());

        sweep_stale(tmp.path(), ns, alive);
        assert!(!gone.exists(), "the gone install's folder stays");
        for kept in [&mine, &live, &other_ns, &old_style, &a_file] {
            assert!(kept.exists(), "{} was removed", kept.display());
        }

        // The folder an install makes is named so that it would be swept
        // once its install is gone.
        let made = temp_dir().unwrap();
        let name = made
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            name.starts_with(&format!("{TEMP_PREFIX}{ns}-{me}-")),
            "{name}"
        );
    }
}
