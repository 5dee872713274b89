//! The vlx node agent, `vlx-node`: `/init` of the initramfs every blade
//! boots.
//!
//! It reads `vlx.*` from the kernel command line, loads the modules the
//! image builder listed, finds the SAN by its GPT, mounts `vlx-meta`
//! read-only, knows itself in the cluster table by its MACs, assembles its
//! root as a persistent dm snapshot of `vlx-origin` with its own
//! `vlx-cow-<node>`, applies its rendered files, and switches root. Each
//! step prints one `vlx-node: ...` console line; a failure says what failed
//! and where to look, and leaves a shell on the console instead of
//! rebooting. The contract is `docs/contracts.md`, "The node agent".
//!
//! The pure decisions (command line, module order, which disk is the SAN,
//! which node this is, the dm table) live in their own modules and are
//! tested as values; [`boot`] is the executor that does the I/O. The layout
//! comes from the same `cluster` crate the installer writes the SAN with.

pub mod boot;
pub mod cli;
pub mod console;
pub mod copy;
pub mod dm;
pub mod failure;
pub mod ibft;
pub mod iscsi;
pub mod multipath;
pub mod node;
pub mod san;
pub mod slot;
pub mod tools;

/// The system calls and the module loader, shared with the installer
/// environment.
pub use initsys::{modules, sys};

/// The `vlx.*` kernel arguments the installer writes for every blade.
pub use contracts::cmdline::node as cmdline;

#[cfg(test)]
mod testing;
