//! Boot assets for a vlx cluster: the SAN's EFI system partition and the
//! PXE boot tree, both booting the one kernel, initramfs and command line
//! every blade shares; install media reuse the ESP builder (more entries,
//! more files).
//!
//! - [`fat`]: a FAT32 writer (reproducible, 512- and 4096-byte sectors,
//!   written straight into a partition at an offset).
//! - [`esp`]: the ESP from an [`esp::EspSpec`]: systemd-boot for UEFI,
//!   syslinux for BIOS, and the MBR boot code for LBA 0.
//! - [`pxe`]: the PXE tree (iPXE script, iPXE loaders, pxelinux) and the
//!   DHCP boot file each kind of client gets ([`pxe::DHCP_BOOT`]).
//!
//! # Choices, and why
//!
//! - **Our own FAT32 writer**, not a crate: the `fatfs` crate writes
//!   volumes `fsck.vfat` rejects; a writer of a fresh volume is small (FAT32
//!   is a fixed format), and owning it gives what the installer needs: every
//!   byte decided by the inputs (timestamps from `SOURCE_DATE_EPOCH`, the
//!   volume id from the cluster uuid, allocation in name order), a plan
//!   separate from the writes, and writes of only the metadata and used
//!   clusters straight into a partition of an image or block device.
//!   `fsck.vfat -n`, mtools, Linux, OVMF and syslinux judge it in the tests.
//! - **systemd-boot** as the UEFI loader and **syslinux** (with `gptmbr.bin`
//!   in the MBR) as the BIOS one; see [`esp`] for why.
//! - **4096-byte sectors**: OVMF boots a 4096-byte-sector virtio disk whose
//!   ESP has 4096-byte sectors (rig test). BIOS cannot: SeaBIOS 1.16 says
//!   "virtio-blk block size 4096 is unsupported", syslinux's installer
//!   refuses FAT with 4096-byte sectors, and most hardware BIOSes cannot
//!   boot 4Kn disks either. [`esp::plan`] refuses BIOS boot at 4096 bytes
//!   and says to boot UEFI.
//! - **PXE**: iPXE everywhere (HTTP is several times faster than TFTP for an
//!   initramfs): BIOS PXE firmware gets `undionly.kpxe`, UEFI x64 PXE
//!   firmware `snponly.efi` (iPXE on the firmware's network driver, so any
//!   NIC the firmware drives works), and iPXE then gets `boot.ipxe`. QEMU's
//!   NIC ROMs are iPXE already and go straight to the script. `pxelinux.0`
//!   stays in the tree for PXE stacks iPXE cannot run on.
//!
//! Nothing here writes to the ESP at boot, so any number of blades may boot
//! the one ESP at once.

pub mod assets;
pub mod entry;
pub mod esp;
pub mod fat;
pub mod pxe;
pub mod time;

pub use assets::Assets;
pub use entry::{BootEntry, Serial};
pub use time::Epoch;
