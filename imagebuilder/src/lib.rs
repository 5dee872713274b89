//! vlx-image: bakes what the installer lays on the SAN.
//!
//! - [`host::build`]: a host image directory (`origin.ext4`, `vmlinuz`,
//!   `initramfs.img`, `manifest.json`) from a host profile.
//! - [`guest::build`]: a guest OS tarball and its `guest.toml`.
//! - [`manifest`]: the image directory's manifest and its verification,
//!   used by the installer.
//! - [`media::build`]: install media (a USB image and a hybrid ISO) that
//!   boot the installer, with a payload and its sha256 manifest.
//!
//! Planning (profiles, [`tree::Tree`], module closures) is kept apart from
//! the executors that write files or run mke2fs and mmdebstrap.

pub mod cpio;
pub mod elf;
pub mod error;
pub mod ext4;
pub mod guest;
pub mod hash;
pub mod host;
pub mod initramfs;
pub mod iso;
pub mod kernel;
pub mod libs;
pub mod manifest;
pub mod media;
pub mod output;
pub mod overlays;
pub mod pgz;
pub mod profile;
pub mod progress;
pub mod rootfs;
pub mod tarball;
pub mod tool;
pub mod tree;

pub use error::{Error, Result};
