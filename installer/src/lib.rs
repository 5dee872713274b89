//! vlx-install: lays a whole cluster onto the SAN in one run.
//!
//! The binary is a thin command-line layer over this library. Every front
//! end of an install (the CLI, the installer environment of the media, the
//! bench) goes through one front door: [`prepare::prepare`] reads the
//! profile once, plans it for the target and applies every refusal,
//! [`prepare::Prepared::check_target`] checks the target without writing,
//! and [`apply::apply`] runs the [`steps`] with a journal. Volumes are
//! found by role through [`cluster::locate`].

pub mod apply;
pub mod change;
pub mod cli;
pub mod device;
pub mod exit;
pub mod fs;
pub mod image;
pub mod installed;
pub mod iscsi;
pub mod journal;
pub mod live;
pub mod lock;
pub mod media;
pub mod prepare;
pub mod render;
pub mod report;
pub mod reset;
pub mod slots;
pub mod stage;
pub mod steps;
pub mod store;
pub mod stream;
pub mod target;
pub mod tool;
