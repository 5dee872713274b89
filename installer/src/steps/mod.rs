//! The install's steps, one module each, in the order `apply` runs them:
//! [`disk`] (the GPT), [`meta`] (the meta volume and, later, its content),
//! [`origin`], [`cow`], [`swap`], [`shared`], [`content`] (what the meta
//! volume carries for the nodes) and [`boot`] (the ESP and MBR code, last).
//!
//! Each step has a `write` that does it and a `verify` that says whether
//! the target holds it (`None`) or why not. They find every volume through
//! the plan's locator ([`cluster::locate`]), never by partition label.
//! The journaled loop that runs them is [`crate::apply`]; what they share
//! is in [`ctx`].

pub mod boot;
pub mod content;
pub mod cow;
pub mod ctx;
pub mod disk;
pub mod meta;
pub mod origin;
pub mod shared;
pub mod swap;
