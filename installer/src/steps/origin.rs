//! The origin step: the golden root, streamed onto `vlx-origin`, synced,
//! and read back to a hash that must be the manifest's (see
//! [`crate::stream`]).

use cluster::{Bytes, Role};

use super::ctx::{ApplyError, Ctx, Event, fault};
use crate::image;
use crate::journal::Step;
use crate::stream;

/// The origin volume the step writes: the one origin, or with two slots
/// the slot the install or upgrade writes.
fn role(ctx: &Ctx<'_>) -> Role {
    ctx.inputs
        .slots
        .as_ref()
        .map_or(Role::Origin, |s| s.write.role())
}

pub fn write(ctx: &Ctx<'_>) -> Result<String, ApplyError> {
    let v = ctx.locate(&role(ctx))?;
    let a = ctx.inputs.image.artifact(image::ORIGIN)?;
    let total = a.size;
    let rep = ctx.rep;
    let half = total / 2;
    let copied = stream::copy_verified(
        &ctx.inputs.image.path(image::ORIGIN),
        &a.sha256,
        ctx.target,
        v.offset.get(),
        v.size.get(),
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

pub fn verify(ctx: &Ctx<'_>) -> Result<Option<String>, ApplyError> {
    let v = ctx.locate(&role(ctx))?;
    let a = ctx.inputs.image.artifact(image::ORIGIN)?;
    let got = stream::hash_range(ctx.target, v.offset.get(), a.size)?;
    Ok((got != a.sha256)
        .then(|| format!("{} hashes to {got}, not the image's {}", v.label, a.sha256)))
}
