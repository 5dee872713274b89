//! The image steps: root file systems from their sources, overlays, the
//! kernel and its module closure, the initramfs, and the two products built
//! from them (a host image directory and a guest tarball) with the host
//! image's manifest.

pub mod guest;
pub mod host;
pub mod initramfs;
pub mod kernel;
pub mod libs;
pub mod overlays;
pub mod rootfs;
pub mod sbom;
pub mod sources;
pub mod tools;
pub mod tree;
