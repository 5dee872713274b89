//! What the two vlx programs that run as an initramfs's `/init` need from
//! Linux: the node agent (`vlx-node`) and the installer environment
//! (`vlx-install media-env`). Both mount, load the modules the image
//! builder listed in `/etc/vlx/modules.load`, and ask the running kernel
//! its release; this crate is that shared part, so that neither depends on
//! the other. It stays as small as the agent must be.
//!
//! - [`sys`]: thin, safe wrappers over the system calls;
//! - [`modules`]: which modules to load, in which order (pure).

pub mod modules;
pub mod sys;
