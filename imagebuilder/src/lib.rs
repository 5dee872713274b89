//! vlx-image: bakes what the installer lays on the SAN.
//!
//! - [`image::host::build`]: a host image directory (`origin.ext4`, `vmlinuz`,
//!   `initramfs.img`, `manifest.json`) from a host profile.
//! - [`image::guest::build`]: a guest OS tarball and its `guest.toml`.
//! - [`media::build`]: install media (a USB image and a hybrid ISO) that
//!   boot the installer, with a payload and its sha256 manifest.
//!
//! The manifests it writes are the `contracts` crate's types.
//!
//! Folders: [`formats`] (file formats written byte by byte), [`image`]
//! (root file systems, kernels, the initramfs, the host and guest products)
//! and [`media`] (install media). Planning (profiles, [`image::tree::Tree`],
//! module closures) is kept apart from the executors that write files or
//! run mke2fs and mmdebstrap.

pub mod cli;
pub mod error;
pub mod formats;
pub mod image;
pub mod media;
pub mod output;
pub mod profile;
pub mod progress;
pub mod tool;

pub use error::{Error, Result};

/// Streaming sha256, the same the manifests are checked with.
pub use contracts::hash;
