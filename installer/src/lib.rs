//! vlx-install: lays a whole cluster onto the SAN in one run.
//!
//! The binary is a thin command-line layer over this library; every
//! command here takes plain values and returns plain values or errors.

pub mod device;
pub mod profile;
pub mod render;
