//! Boot assets for a vlx cluster: the SAN's EFI system partition and the
//! PXE boot tree, both booting the one kernel, initramfs and command line
//! every blade shares.
//!
//! - [`fat`]: a FAT32 writer of our own (reproducible, 512- and 4096-byte
//!   sectors, written straight into a partition at an offset).
//! - [`esp`]: the ESP from a [`esp::EspSpec`]: systemd-boot for UEFI,
//!   syslinux for BIOS, and the MBR boot code for LBA 0.
//! - [`pxe`]: the PXE tree (iPXE script, pxelinux, iPXE loaders) and the
//!   DHCP boot file names each kind of client gets.
//!
//! The choices and why are in docs/contracts.md ("Boot assets") and in
//! each module's documentation.

pub mod assets;
pub mod entry;
pub mod esp;
pub mod fat;
pub mod pxe;
pub mod time;

pub use assets::Assets;
pub use entry::{BootEntry, Serial};
pub use time::Epoch;
