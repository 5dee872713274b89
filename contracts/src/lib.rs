//! What the vlx products agree on, in one small crate that producers and
//! consumers both depend on, so that nobody depends on a producer to borrow
//! a type:
//!
//! - [`image`]: `manifest.json` of a host image directory and its
//!   verification (written by `vlx-image build`, checked by `vlx-install`);
//! - [`media`]: `vlx-media.json`, the install media's payload manifest
//!   (written by `vlx-image media`, checked by the installer environment);
//! - [`guest`]: `guest.toml` beside a guest tarball (written by
//!   `vlx-image guest`, read by the media builder and by what runs guests);
//! - [`hash`]: the streaming sha256 both manifests are made and checked with;
//! - [`cmdline`]: the `vlx.*` kernel arguments, one parser and one writer
//!   for each set (the blades', the install media's);
//! - [`console`]: the console lines rigs wait for;
//! - [`names`]: derived names: partition names, the meta volume's files,
//!   paths an initramfs and a node's root share.
//!
//! `docs/contracts.md` says what each file holds; change it together with
//! this crate. The crate stays light (serde, sha2, toml, uuid): the node agent,
//! which goes into every initramfs, depends on it.

pub mod cmdline;
pub mod console;
pub mod error;
pub mod guest;
pub mod hash;
pub mod image;
pub mod media;
pub mod names;

pub use error::{Error, Result};
