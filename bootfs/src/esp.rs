//! The EFI system partition every blade boots from the SAN.
//!
//! One FAT32 volume serves both firmware kinds:
//!
//! | path | for | what |
//! |---|---|---|
//! | `/EFI/BOOT/BOOTX64.EFI` | UEFI | systemd-boot, at the removable-media path firmware tries without any boot variable (blades have none for the SAN) |
//! | `/loader/loader.conf`, `/loader/entries/<id>.conf` | UEFI | the entries (Boot Loader Specification, type 1) |
//! | `/syslinux/ldlinux.sys`, `ldlinux.c32`, `syslinux.cfg` | BIOS | syslinux, installed by its own installer; the volume boot record is syslinux's |
//! | `/vlx/<id>/vmlinuz`, `/vlx/<id>/<initrd name>` | both | the kernel and initramfs images of each entry |
//!
//! plus, for BIOS, syslinux's `gptmbr.bin` as the disk's MBR boot code
//! ([`mbr_boot_code`]), which boots the GPT partition with the legacy BIOS
//! bootable attribute (`cluster::layout::ATTR_LEGACY_BIOS_BOOTABLE`, set on
//! `vlx-esp` by the plan when the profile's firmware includes BIOS).
//!
//! Why these loaders:
//! - **systemd-boot** for UEFI: one file from a Debian package and two text
//!   files, no image to build (GRUB needs `grub-mkimage` with an embedded
//!   configuration and module list); it boots the kernel through its EFI
//!   stub and hands over every initrd. It writes nothing to the ESP at
//!   boot (no `loader/random-seed` file exists and `random-seed-mode` is
//!   off), which matters when hundreds of blades boot the same ESP.
//! - **syslinux** for BIOS: it lives on the FAT itself, so the SAN layout
//!   needs no BIOS boot partition (GRUB's i386-pc core image needs one on a
//!   GPT disk), and `gptmbr.bin` is the MBR half made for it.
//!   syslinux cannot read FAT with 4096-byte sectors (its installer says
//!   "unsupported sectors size"), so BIOS boot needs 512-byte sectors;
//!   4096-byte-sector SANs boot UEFI (the same holds for most BIOSes).
//!
//! The syslinux installer (`syslinux --install --offset`) is run as it is:
//! it copies `ldlinux.sys` and `ldlinux.c32` with mtools (timestamps from
//! `SOURCE_DATE_EPOCH`, which we pass, in UTC), patches the sector list of
//! `ldlinux.sys` into it, and replaces the boot sector's code (not its
//! BPB). It leaves the backup boot sector as it was; we copy the new boot
//! sector there so that `fsck.vfat` finds the two equal. The BPB's hidden
//! sectors stay the partition's first LBA, as the plan says; syslinux's
//! boot sector takes the partition's start from the hand-over of
//! `gptmbr.bin` anyway.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use cluster::layout::{Role, derived_guid};
use cluster::profile::Firmware;
use cluster::{Bytes, Lba, Plan, SectorSize};

use crate::assets::{AssetError, Assets};
use crate::entry::{self, BootEntry, EntryError, Serial};
use crate::fat::{self, Attributes, FatError, FatImage, FatSpec, Source, Tree};
use crate::time::Epoch;

/// The MBR boot code area: the bytes before the disk signature and the
/// partition table (which stay as they are).
pub const MBR_CODE: usize = 440;
/// The volume label vlx gives its ESPs.
pub const LABEL: &str = "VLX-ESP";
const SYSLINUX_DIR: &str = "/syslinux";

#[derive(Debug, thiserror::Error)]
pub enum EspError {
    #[error(transparent)]
    Fat(#[from] FatError),
    #[error(transparent)]
    Asset(#[from] AssetError),
    #[error(transparent)]
    Entry(#[from] EntryError),
    #[error("an ESP needs at least one boot entry")]
    NoEntries,
    #[error(
        "BIOS boot needs 512-byte sectors: syslinux reads no FAT with {sector}-byte sectors (boot such SANs with UEFI: boot.firmware = \"uefi\")"
    )]
    BiosNeeds512 { sector: SectorSize },
    #[error("the plan has no vlx-esp partition")]
    NoEspInPlan,
    #[error("{what} of {path}: {detail}")]
    Syslinux {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// Everything the ESP holds, and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspSpec {
    pub firmware: Firmware,
    pub sector_size: SectorSize,
    /// The partition's size: the volume fills it.
    pub size: Bytes,
    /// The partition's first LBA on its disk.
    pub partition_lba: Lba,
    pub volume_id: u32,
    pub label: String,
    pub epoch: Epoch,
    /// The first entry is the default.
    pub entries: Vec<BootEntry>,
    /// Seconds a boot menu waits when there is one (systemd-boot always
    /// shows its menu for this long; syslinux prompts when there are
    /// several entries).
    pub timeout_secs: u32,
    /// Where the loaders print, besides the screen.
    pub serial: Option<Serial>,
    /// More files, by path on the volume (install media add theirs).
    pub extra: Vec<(String, Source)>,
    pub assets: Assets,
}

impl EspSpec {
    /// The ESP of a plan: its `vlx-esp` partition, firmware and command
    /// line, the volume id derived from the cluster uuid.
    pub fn for_plan(
        plan: &Plan,
        kernel: impl Into<PathBuf>,
        initrds: Vec<PathBuf>,
        epoch: Epoch,
    ) -> Result<EspSpec, EspError> {
        let part = plan.disk.by_role(&Role::Esp).ok_or(EspError::NoEspInPlan)?;
        let id = derived_guid(plan.cluster.uuid, "vlx-esp volume id");
        let b = id.as_bytes();
        Ok(EspSpec {
            firmware: plan.boot.firmware,
            sector_size: plan.disk.sector_size,
            size: part.size,
            partition_lba: part.first_lba,
            volume_id: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            label: LABEL.into(),
            epoch,
            entries: vec![BootEntry::for_plan(plan, kernel, initrds)],
            timeout_secs: 1,
            serial: Serial::from_cmdline(&plan.boot.cmdline),
            extra: Vec::new(),
            assets: Assets::default(),
        })
    }
}

/// A planned ESP: the FAT volume, and whether syslinux goes on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspPlan {
    pub fat: FatImage,
    /// The files, by path on the volume, with their text when we wrote it
    /// (loader configurations), for printing and tests.
    pub configs: Vec<(String, String)>,
    bios: Option<Bios>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Bios {
    installer: PathBuf,
    epoch: Epoch,
    sector: SectorSize,
}

/// Where each host file lands on the ESP: `/vlx/<entry id>/<name>`, the
/// kernel as `vmlinuz`; a file two entries share is stored once.
fn placements(entries: &[BootEntry]) -> Vec<(PathBuf, String)> {
    let mut out: Vec<(PathBuf, String)> = Vec::new();
    for e in entries {
        let files =
            std::iter::once((&e.kernel, "vmlinuz".to_owned())).chain(e.initrds.iter().map(|p| {
                let name = p
                    .file_name()
                    .map_or_else(|| "initrd".into(), |n| n.to_string_lossy().into_owned());
                (p, name)
            }));
        for (host, name) in files {
            if !out.iter().any(|(h, _)| h == host) {
                out.push((host.clone(), format!("/vlx/{}/{name}", e.id)));
            }
        }
    }
    out
}

/// Lays out the ESP. Reads only the sizes of the files it will copy.
pub fn plan(spec: &EspSpec) -> Result<EspPlan, EspError> {
    if spec.entries.is_empty() {
        return Err(EspError::NoEntries);
    }
    for e in &spec.entries {
        e.check()?;
    }
    if spec.firmware.bios() && spec.sector_size != SectorSize::B512 {
        return Err(EspError::BiosNeeds512 {
            sector: spec.sector_size,
        });
    }
    let mut tree = Tree::new();
    let placed = placements(&spec.entries);
    for (host, at) in &placed {
        tree.add_file(at, Source::file(host)?)?;
    }
    let path_of = |p: &Path| -> String {
        placed
            .iter()
            .find(|(h, _)| h == p)
            .map_or_else(String::new, |(_, at)| at.clone())
    };
    let mut configs = Vec::new();
    if spec.firmware.uefi() {
        let a = &spec.assets;
        tree.add_file("/EFI/BOOT/BOOTX64.EFI", a.source(&a.systemd_boot)?)?;
        configs.push(("/loader/loader.conf".into(), loader_conf(spec)));
        for e in &spec.entries {
            configs.push((
                format!("/loader/entries/{}.conf", e.id),
                bls_entry(e, &path_of),
            ));
        }
    }
    let bios = if spec.firmware.bios() {
        spec.assets.source(&spec.assets.syslinux)?;
        configs.push((
            format!("{SYSLINUX_DIR}/syslinux.cfg"),
            entry::syslinux_cfg(&spec.entries, spec.serial, spec.timeout_secs, &path_of),
        ));
        Some(Bios {
            installer: spec.assets.syslinux.clone(),
            epoch: spec.epoch,
            sector: spec.sector_size,
        })
    } else {
        None
    };
    for (at, text) in &configs {
        tree.add_file_with(
            at,
            Source::Bytes(text.clone().into_bytes()),
            Attributes::default(),
        )?;
    }
    for (at, src) in &spec.extra {
        tree.add_file(at, src.clone())?;
    }
    let fat = fat::plan(
        &FatSpec {
            sector_size: spec.sector_size,
            size: spec.size,
            volume_id: spec.volume_id,
            label: Some(spec.label.clone()),
            partition_lba: spec.partition_lba,
            epoch: spec.epoch,
        },
        &tree,
    )?;
    Ok(EspPlan { fat, configs, bios })
}

fn loader_conf(spec: &EspSpec) -> String {
    let first = spec.entries.first().map_or("", |e| e.id.as_str());
    format!(
        "# vlx: systemd-boot settings; written by the installer, do not edit\n\
         default {first}.conf\n\
         timeout {}\n\
         console-mode keep\n\
         auto-entries no\n\
         auto-firmware no\n\
         random-seed-mode off\n",
        spec.timeout_secs
    )
}

fn bls_entry(e: &BootEntry, path: &dyn Fn(&Path) -> String) -> String {
    let mut s = format!("title {}\nlinux {}\n", e.title, path(&e.kernel));
    for i in &e.initrds {
        s += &format!("initrd {}\n", path(i));
    }
    s += &format!("options {}\n", e.cmdline);
    s
}

impl EspPlan {
    /// Writes the ESP into `dest` (a disk image, a partition image or a
    /// block device) at byte `offset`, installs syslinux when BIOS boot is
    /// asked for, and syncs. The MBR boot code is the caller's to write,
    /// last ([`write_mbr_boot_code`]).
    pub fn write(&self, dest: &Path, offset: Bytes) -> Result<(), EspError> {
        self.fat.write(dest, offset)?;
        if let Some(b) = &self.bios {
            install_syslinux(b, dest, offset)?;
        }
        Ok(())
    }
}

fn install_syslinux(b: &Bios, dest: &Path, offset: Bytes) -> Result<(), EspError> {
    let out = Command::new(&b.installer)
        .arg("--install")
        .arg("--offset")
        .arg(offset.get().to_string())
        .args(["--directory", SYSLINUX_DIR])
        .arg(dest)
        .env("SOURCE_DATE_EPOCH", b.epoch.to_string())
        // mtools stamps local time; FAT times are UTC here.
        .env("TZ", "UTC")
        .output()
        .map_err(|e| EspError::Syslinux {
            what: "starting syslinux",
            path: dest.to_owned(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(EspError::Syslinux {
            what: "installing syslinux",
            path: dest.to_owned(),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    // The backup boot sector must equal the boot sector syslinux wrote.
    let s = b.sector.bytes();
    let io = |what: &str| {
        let what = format!("{what} {} at byte {}", dest.display(), offset.get());
        move |source| EspError::Io { what, source }
    };
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dest)
        .map_err(io("opening"))?;
    let mut boot = vec![0u8; s as usize];
    f.read_exact_at(&mut boot, offset.get())
        .map_err(io("reading the boot sector of"))?;
    if boot[510..512] != [0x55, 0xAA] {
        return Err(EspError::Syslinux {
            what: "checking the boot sector syslinux wrote",
            path: dest.to_owned(),
            detail: "no 55 AA signature".into(),
        });
    }
    f.write_all_at(&boot, offset.get() + 6 * s)
        .map_err(io("writing the backup boot sector of"))?;
    f.sync_all().map_err(io("syncing"))
}

/// The 440 bytes of MBR boot code that boot the legacy-BIOS-bootable GPT
/// partition (syslinux's `gptmbr.bin`).
pub fn mbr_boot_code(assets: &Assets) -> Result<[u8; MBR_CODE], EspError> {
    let data = std::fs::read(&assets.gptmbr).map_err(|source| AssetError {
        path: assets.gptmbr.clone(),
        package: "syslinux-common",
        source,
    })?;
    data.get(..MBR_CODE)
        .and_then(|d| <[u8; MBR_CODE]>::try_from(d).ok())
        .ok_or_else(|| EspError::Io {
            what: format!("reading {}", assets.gptmbr.display()),
            source: std::io::Error::other(format!("{} bytes, not {MBR_CODE}", data.len())),
        })
}

/// Writes MBR boot code to the first 440 bytes of `dest` (a disk image or
/// a whole-disk block device), leaving the disk signature and partition
/// table of the protective MBR as they are.
pub fn write_mbr_boot_code(dest: &Path, code: &[u8; MBR_CODE]) -> Result<(), EspError> {
    let io = |what: &str| {
        let what = format!("{what} {}", dest.display());
        move |source| EspError::Io { what, source }
    };
    let f = OpenOptions::new()
        .write(true)
        .open(dest)
        .map_err(io("opening"))?;
    f.write_all_at(code, 0)
        .map_err(io("writing MBR boot code to"))?;
    f.sync_all().map_err(io("syncing"))
}
