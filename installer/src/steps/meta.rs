//! The meta volume: the profile as installed, the plan (the cluster table),
//! the image manifest and the journal; with the content step also the
//! nodes' configurations and the PXE tree ([`super::content`]). It is made
//! whole by mke2fs from a staged tree, so each of the two steps makes it
//! again.

use std::path::Path;

use cluster::Role;

use super::ctx::{ApplyError, Ctx};
use crate::fs::{self, Ext4};
use crate::journal::{self, Journal};
use crate::prepare::Inputs;
use crate::stage::Staging;

/// The meta volume's file-system label.
const LABEL: &str = cluster::locate::META_LABEL;
/// Names what the content step laid down, so that a rerun can tell.
const CONTENT_STAMP: &str = "content.json";

/// What the meta volume gets besides the plan, manifest and journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// Nothing more (the meta step).
    None,
    /// The PXE tree and every node's configuration rendered from the
    /// profile's overlays (the content step).
    Render,
    /// The PXE tree of the image, and the nodes' configurations as the
    /// volume holds them now (an upgrade or rollback, which has no
    /// profile folder to render from and keeps the nodes' host keys).
    Kept,
}

/// Makes the meta volume holding `journal`; with `content` also the nodes'
/// configurations and the PXE tree.
pub fn write(ctx: &Ctx<'_>, journal: &Journal, content: bool) -> Result<(), ApplyError> {
    write_with(
        ctx,
        journal,
        if content {
            Content::Render
        } else {
            Content::None
        },
    )
}

/// Makes the meta volume holding `journal` and `content`; with two origin
/// slots also the slot table and each filled slot's boot files.
pub fn write_with(ctx: &Ctx<'_>, journal: &Journal, content: Content) -> Result<(), ApplyError> {
    let inputs = ctx.inputs;
    let stage = Staging::new(inputs.epoch())?;
    let journal_json = journal.to_json();
    let files: [(&str, &[u8]); 4] = [
        ("cluster.toml", inputs.profile_text.as_bytes()),
        ("plan.json", inputs.plan_json.as_bytes()),
        ("manifest.json", &inputs.image.manifest_bytes),
        (journal::FILE, journal_json.as_bytes()),
    ];
    for (name, bytes) in files {
        stage.file(Path::new(name), bytes, 0o644, 0, 0)?;
    }
    match (&inputs.slots, inputs.plan.disk.has_slots()) {
        (Some(slots), true) => crate::slots::stage(&stage, slots)?,
        (None, false) => {}
        (Some(_), false) | (None, true) => {
            return Err(ApplyError::Refused(
                "the plan's origin slots and the install's slot table disagree".into(),
            ));
        }
    }
    if content == Content::Kept {
        let v = ctx.locate(&Role::Meta)?;
        fs::dump_tree(
            ctx.target.path(),
            v.offset,
            &format!("/{}", contracts::names::meta::NODES),
            stage.path(),
        )?;
        super::content::stage_pxe(&stage, inputs)?;
    }
    if content == Content::Render {
        super::content::stage(&stage, inputs)?;
    }
    if let (Some(slots), true) = (&inputs.slots, content != Content::None) {
        crate::slots::link_current(&stage, slots)?;
    }
    if content != Content::None {
        stage.file(
            Path::new(CONTENT_STAMP),
            content_stamp(inputs).as_bytes(),
            0o644,
            0,
            0,
        )?;
    }
    stage.seal()?;
    let v = ctx.locate(&Role::Meta)?;
    fs::mke2fs(
        ctx.target.path(),
        &Ext4 {
            label: LABEL,
            uuid: generation(inputs),
            offset: v.offset,
            size: v.size,
            contents: Some(stage.path()),
            epoch: inputs.epoch(),
        },
    )?;
    Ok(())
}

/// `None` when the meta volume holds this plan, or a change to this plan
/// is under way on it (its journal names the plan; the plan itself lands
/// with the content step, and the volume stays mounted on running blades,
/// so it is not made again before that).
pub fn verify(ctx: &Ctx<'_>) -> Result<Option<String>, ApplyError> {
    let v = ctx.locate(&Role::Meta)?;
    let changing = fs::read_file(ctx.target.path(), v.offset, &format!("/{}", journal::FILE))?
        .and_then(|b| Journal::parse(&b))
        .is_some_and(|j| j.only_nodes.is_some() && j.plan_sha256 == ctx.inputs.plan_sha256);
    if changing {
        return Ok(None);
    }
    Ok(
        match fs::read_file(ctx.target.path(), v.offset, "/plan.json")? {
            Some(b) if b == ctx.inputs.plan_json.as_bytes() => None,
            _ => Some("the meta volume does not hold this plan".into()),
        },
    )
}

/// `None` when the meta volume holds this install's content.
pub fn verify_content(ctx: &Ctx<'_>) -> Result<Option<String>, ApplyError> {
    let v = ctx.locate(&Role::Meta)?;
    let path = format!("/{CONTENT_STAMP}");
    Ok(match fs::read_file(ctx.target.path(), v.offset, &path)? {
        Some(b) if b == content_stamp(ctx.inputs).as_bytes() => None,
        _ => Some("the meta volume lacks this install's node configurations or boot tree".into()),
    })
}

/// Replaces the journal on the meta volume.
pub fn save_journal(ctx: &Ctx<'_>, journal: &Journal) -> Result<(), ApplyError> {
    let v = ctx.locate(&Role::Meta)?;
    fs::replace_file(
        ctx.target.path(),
        v.offset,
        journal::FILE,
        journal.to_json().as_bytes(),
        ctx.inputs.epoch(),
    )?;
    Ok(())
}

/// The meta volume's file-system UUID, which is its generation: derived
/// from the plan's and the image's sha256, it changes with every change of
/// the cluster and stays with a rerun. Running blades poll it with direct
/// reads of the superblock (`/usr/lib/vlx/follow`), past their stale page
/// cache of the read-only mount.
pub fn generation(inputs: &Inputs) -> uuid::Uuid {
    let mut name = format!("fs:{LABEL}:{}:{}", inputs.plan_sha256, inputs.image.sha256);
    // With two slots the same plan and image come back after an upgrade
    // and a rollback: the slot table is part of what changed.
    if let Some(s) = &inputs.slots {
        name.push_str(&format!(
            ":{}",
            cluster::plan::hex(&<sha2::Sha256 as sha2::Digest>::digest(
                s.table.to_json().as_bytes()
            ))
        ));
    }
    cluster::layout::derived_guid(inputs.plan.cluster.uuid, &name)
}

fn content_stamp(inputs: &Inputs) -> String {
    format!(
        "{{\"plan_sha256\": \"{}\", \"image_sha256\": \"{}\"}}\n",
        inputs.plan_sha256, inputs.image.sha256
    )
}
