//! vlx-install: lays a whole cluster onto the SAN in one run.
//!
//! The binary is a thin command-line layer over this library: `plan` makes
//! the plan, [`device::check`] checks the target without writing, and
//! [`apply::apply`] executes the plan's steps with a journal.

pub mod apply;
pub mod boot;
pub mod content;
pub mod device;
pub mod exit;
pub mod fs;
pub mod image;
pub mod installed;
pub mod journal;
pub mod lock;
pub mod media;
pub mod profile;
pub mod render;
pub mod report;
pub mod reset;
pub mod stage;
pub mod stream;
pub mod target;
pub mod tool;
