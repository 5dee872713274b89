//! `vlx-image media`: install media from an image directory (and guest
//! tarballs), as an isos/*.toml profile says: `NAME.img`, a GPT disk image
//! for USB sticks, and `NAME.iso`, a hybrid ISO 9660 image; both boot the
//! installer environment ([`env`]) on UEFI and BIOS, and both carry the
//! same payload ([`payload`]) with its sha256 manifest.
//!
//! | | UEFI | BIOS | payload |
//! |---|---|---|---|
//! | `NAME.img` | systemd-boot on the ESP | `gptmbr.bin` → syslinux on the ESP | ISO 9660 in partition `vlx-payload` |
//! | `NAME.iso` as a CD | El Torito EFI entry: a FAT image with systemd-boot, kernel, initramfs | El Torito BIOS entry: isolinux | the ISO itself |
//! | `NAME.iso` on a stick | MBR partition 0xEF over that FAT image | isohybrid MBR → isolinux | the ISO itself |
//!
//! Every boot entry runs the kernel of the image with the installer's
//! initramfs and `vlx.media=<sha256 of vlx-media.json>`, by which the
//! environment knows its own payload; unattended media add
//! `vlx.unattended=1 vlx.profile=... vlx.target=...` to the default entry
//! (and keep a guided entry).
//!
//! Steps: payload (read and check what can be checked cheaply) →
//! installer environment → boot files → both images written while another
//! thread hashes the image and the guest tarballs against their manifests
//! (a mismatch fails the build and leaves no output) → manifest copy. The
//! big images are not synced: the installer checks every payload byte
//! against the manifest before it writes anything, so a copy gone wrong
//! is caught where it matters, and a sync would double the build time.

pub mod env;
pub mod manifest;
pub mod payload;
pub mod profile;
pub mod usb;

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use bootfs::esp::{self, EspSpec};
use bootfs::{BootEntry, Epoch};
use cluster::profile::Firmware;
use cluster::{Bytes, Lba, SectorSize};

use crate::error::{Error, Result, io};
use crate::iso::{self, BootSpec, IsoSpec, Source};
use crate::kernel::{self, Kernel, ModuleIndex};
use crate::libs::Resolver;
use crate::output::Output;
use crate::progress::{Progress, Steps};
use crate::{cpio, tool};
use manifest::MediaManifest;
use profile::MediaProfile;

/// The kernel and the installer's initramfs: in the ISO (for isolinux) and
/// on each FAT volume (`/vlx/<entry>/`).
const ISO_KERNEL: &str = "boot/vmlinuz";
const ISO_INITRD: &str = "boot/installer.img";
const ISO_EFI: &str = "boot/efi.img";
const ISOLINUX_DIR: &str = "isolinux";
/// The installer's initramfs file name (also its name on the ESPs).
const INITRD_NAME: &str = "installer.img";

/// Where BIOS boot files come from (Debian packages isolinux and
/// syslinux-common).
pub const ISOLINUX_BIN: &str = "/usr/lib/ISOLINUX/isolinux.bin";
pub const ISOHDPFX_BIN: &str = "/usr/lib/ISOLINUX/isohdpfx.bin";
pub const LDLINUX_C32: &str = "/usr/lib/syslinux/modules/bios/ldlinux.c32";

/// What a media build needs besides the profile.
#[derive(Debug, Clone)]
pub struct MediaBuild {
    /// An image directory made by `vlx-image build`.
    pub image: PathBuf,
    /// Folders made by `vlx-image guest` (or folders of them).
    pub guests: Vec<PathBuf>,
    /// The `vlx-install` binary for the installer environment.
    pub installer: PathBuf,
    pub out: PathBuf,
    pub source_date_epoch: u64,
}

/// What a build made.
#[derive(Debug, Clone)]
pub struct Built {
    pub manifest: MediaManifest,
    /// sha256 of `vlx-media.json`: the boot entries' `vlx.media=`.
    pub manifest_sha256: String,
    pub img: PathBuf,
    pub iso: PathBuf,
    /// The payload's bytes.
    pub payload_bytes: u64,
}

/// `NAME.img`, `NAME.iso`, and `NAME.json` (a copy of the payload's
/// manifest, for whoever ships or tests the media).
pub fn outputs(name: &str) -> [String; 3] {
    [
        format!("{name}.img"),
        format!("{name}.iso"),
        format!("{name}.json"),
    ]
}

/// The `vlx-install` beside the running executable (the same cargo target
/// folder), the default `--installer`.
pub fn default_installer() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join("vlx-install"), dir.parent()?.join("vlx-install")]
        .into_iter()
        .find(|p| p.is_file())
        .or_else(|| Some(dir.join("vlx-install")))
}

/// The kernel command line of a boot entry.
pub fn cmdline(profile: &MediaProfile, manifest_sha256: &str, unattended: bool) -> String {
    let mut a = vec![format!("vlx.media={manifest_sha256}")];
    a.extend(profile.console.iter().map(|c| format!("console={c}")));
    if let (true, Some(u)) = (unattended, &profile.unattended) {
        a.push("vlx.unattended=1".into());
        a.push(format!("vlx.profile={}", u.profile));
        a.push(format!("vlx.target={}", u.target));
        if u.wipe {
            a.push("vlx.wipe=1".into());
        }
    }
    a.extend(profile.kernel_args.iter().cloned());
    a.join(" ")
}

/// The boot entries: one, or for unattended media the unattended one
/// first and a guided one.
fn entries(profile: &MediaProfile, sha: &str, kernel: &Path, initrd: &Path) -> Vec<BootEntry> {
    let entry = |id: &str, title: String, unattended| BootEntry {
        id: id.into(),
        title,
        kernel: kernel.to_owned(),
        initrds: vec![initrd.to_owned()],
        cmdline: cmdline(profile, sha, unattended),
    };
    let mut v = vec![entry("install", profile.title.clone(), true)];
    if profile.unattended.is_some() {
        v.push(entry(
            "guided",
            format!("{} (guided: asks first)", profile.title),
            false,
        ));
    }
    v
}

/// Seconds a boot menu waits: none for one entry, a few to choose the
/// guided entry of unattended media.
fn menu_timeout(entries: &[BootEntry]) -> u32 {
    if entries.len() > 1 { 3 } else { 0 }
}

/// A FAT volume big enough for `content` bytes of boot files, in whole
/// MiB: the files with a quarter to spare and 8 MiB for the file system,
/// at least 40 MiB (FAT32 needs 65,525 clusters: 33 MiB of one-sector
/// clusters).
fn fat_size(content: u64) -> Bytes {
    let want = content + content / 4 + (8 << 20);
    Bytes(want.next_multiple_of(1 << 20).max(40 << 20))
}

fn volume_id(sha: &str, what: &str) -> u32 {
    let h = crate::hash::sha256_bytes(format!("{what}:{sha}").as_bytes());
    u32::from_str_radix(&h[..8], 16).unwrap_or(0)
}

/// Builds the media; returns what it made.
pub fn build(profile: &MediaProfile, b: &MediaBuild, progress: &dyn Progress) -> Result<Built> {
    let epoch = b.source_date_epoch;
    let mtime32 = u32::try_from(epoch).map_err(|_| {
        Error::Other(format!(
            "SOURCE_DATE_EPOCH {epoch} does not fit a cpio header"
        ))
    })?;
    let mut steps = Steps {
        progress,
        total: 5,
        index: 0,
    };
    let [img_name, iso_name, json_name] = outputs(&profile.name);

    steps.next("payload");
    let payload = payload::collect(profile, &b.image, &b.guests, epoch)?;
    steps.info(&format!(
        "{} files, {} MiB; image {} {}, clusters {}, guests {}",
        payload.manifest.files.len(),
        payload.bytes >> 20,
        payload.image.name,
        payload.image.version,
        names(&payload.manifest.clusters),
        names(&payload.manifest.guests),
    ));
    let sha = payload.manifest_sha256.clone();

    let mut out = Output::new(&b.out)?;
    let staging = tempfile::Builder::new()
        .prefix(".media-")
        .tempdir_in(out.dir())
        .map_err(io(out.dir()))?;

    steps.next("installer environment");
    let kernel = kernel_of(&payload, &b.image, staging.path())?;
    let index = ModuleIndex::load(&kernel)?;
    let (modules, skipped) = env::modules(&index, &profile.modules)?;
    let resolver = Resolver::host();
    let tree = env::plan(&b.installer, &kernel, &index, &modules, &resolver)?;
    let initrd = staging.path().join(INITRD_NAME);
    write_initramfs(&tree, &initrd, mtime32)?;
    steps.info(&format!(
        "{INITRD_NAME}: {} paths, {} modules, {} KiB{}",
        tree.len(),
        modules.len(),
        fs::metadata(&initrd).map_err(io(&initrd))?.len() >> 10,
        if skipped.is_empty() {
            String::new()
        } else {
            format!("; kernel {} lacks {}", kernel.release, skipped.join(" "))
        }
    ));

    steps.next("boot files");
    let boot_bytes = fs::metadata(&payload.vmlinuz)
        .map_err(io(&payload.vmlinuz))?
        .len()
        + fs::metadata(&initrd).map_err(io(&initrd))?.len()
        + (1 << 20);
    let entries = entries(profile, &sha, &payload.vmlinuz, &initrd);
    let esp_size = fat_size(boot_bytes);
    let esp_spec = |firmware, size: Bytes, lba: Lba, what: &str| EspSpec {
        firmware,
        sector_size: SectorSize::B512,
        size,
        partition_lba: lba,
        volume_id: volume_id(&sha, what),
        label: "VLX-MEDIA".into(),
        epoch: Epoch(epoch),
        entries: entries.clone(),
        timeout_secs: menu_timeout(&entries),
        serial: bootfs::Serial::from_cmdline(&entries[0].cmdline),
        extra: Vec::new(),
        assets: bootfs::Assets::default(),
    };
    // The ISO's El Torito EFI image: UEFI only (isolinux boots BIOS).
    let efi_spec = esp_spec(Firmware::Uefi, esp_size, Lba(0), "efi.img");
    let efi_plan = esp::plan(&efi_spec).map_err(boot_err)?;
    let efi_img = staging.path().join("efi.img");
    File::create(&efi_img)
        .and_then(|f| f.set_len(esp_size.get()))
        .map_err(io(&efi_img))?;
    efi_plan.write(&efi_img, Bytes(0)).map_err(boot_err)?;

    let payload_iso = iso::plan(
        &IsoSpec {
            volume_id: profile.label.clone(),
            epoch,
            boot: None,
        },
        &payload.tree,
    )?;
    let seed = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("vlx:media:{sha}").as_bytes(),
    );
    let disk = usb::layout(esp_size, Bytes(payload_iso.size()), profile.size, seed)?;
    let esp_part = &disk.partitions[0];
    let payload_part = &disk.partitions[1];
    let usb_esp = esp::plan(&esp_spec(
        Firmware::Both,
        esp_part.size,
        esp_part.first_lba,
        "usb",
    ))
    .map_err(boot_err)?;

    let mut full = payload.tree.clone();
    full.add(ISO_KERNEL, Source::file(&payload.vmlinuz)?)?;
    full.add(ISO_INITRD, Source::file(&initrd)?)?;
    full.add(ISO_EFI, Source::file(&efi_img)?)?;
    full.add(
        &format!("{ISOLINUX_DIR}/isolinux.bin"),
        Source::file(Path::new(ISOLINUX_BIN))?,
    )?;
    full.add(
        &format!("{ISOLINUX_DIR}/ldlinux.c32"),
        Source::file(Path::new(LDLINUX_C32))?,
    )?;
    let iso_entries: Vec<BootEntry> = entries
        .iter()
        .map(|e| BootEntry {
            kernel: PathBuf::from(ISO_KERNEL),
            initrds: vec![PathBuf::from(ISO_INITRD)],
            ..e.clone()
        })
        .collect();
    let cfg = bootfs::entry::syslinux_cfg(
        &iso_entries,
        bootfs::Serial::from_cmdline(&entries[0].cmdline),
        menu_timeout(&entries),
        &|p| format!("/{}", p.display()),
    );
    full.add(
        &format!("{ISOLINUX_DIR}/isolinux.cfg"),
        Source::Bytes(cfg.into_bytes()),
    )?;
    let hybrid = fs::read(ISOHDPFX_BIN)
        .map_err(|e| Error::Other(format!("{ISOHDPFX_BIN} (Debian package isolinux): {e}")))?;
    let iso_image = iso::plan(
        &IsoSpec {
            volume_id: profile.label.clone(),
            epoch,
            boot: Some(BootSpec {
                bios: Some(format!("{ISOLINUX_DIR}/isolinux.bin")),
                efi: Some(ISO_EFI.into()),
                catalog: format!("{ISOLINUX_DIR}/boot.cat"),
                hybrid_mbr: Some(hybrid),
            }),
        },
        &full,
    )?;

    steps.next(&format!("{img_name} and {iso_name}"));
    steps.info(&format!(
        "{img_name}: {} (ESP {}, payload {}); {iso_name}: {}",
        disk.size,
        esp_part.size,
        payload_part.size,
        Bytes(iso_image.size())
    ));
    let img_tmp = out.temp(&img_name);
    let iso_tmp = out.temp(&iso_name);
    let checks = payload.checks.clone();
    std::thread::scope(|s| -> Result<()> {
        let verifier = s.spawn(|| payload::verify(&checks));
        let written = (|| -> Result<()> {
            let f = File::create(&img_tmp).map_err(io(&img_tmp))?;
            f.set_len(disk.size.get()).map_err(io(&img_tmp))?;
            drop(f);
            payload_iso.write(&img_tmp, payload_part.offset(disk.sector_size).get())?;
            iso_image.write(&iso_tmp, 0)?;
            usb_esp
                .write(&img_tmp, esp_part.offset(disk.sector_size))
                .map_err(boot_err)?;
            // The partition table, then the MBR boot code last.
            let f = fs::OpenOptions::new()
                .write(true)
                .open(&img_tmp)
                .map_err(io(&img_tmp))?;
            for w in cluster::gpt::encode(&disk) {
                use std::os::unix::fs::FileExt;
                f.write_all_at(&w.data, w.offset.get())
                    .map_err(io(&img_tmp))?;
            }
            drop(f);
            let code = esp::mbr_boot_code(&bootfs::Assets::default()).map_err(boot_err)?;
            esp::write_mbr_boot_code(&img_tmp, &code).map_err(boot_err)?;
            Ok(())
        })();
        let verified = verifier
            .join()
            .map_err(|_| Error::Other("the payload check panicked".into()))?;
        // A payload that does not match its manifests is the error that
        // matters, whatever the writers did.
        verified?;
        written
    })?;

    steps.next(&json_name);
    let json_tmp = out.temp(&json_name);
    fs::write(&json_tmp, &payload.manifest_json).map_err(io(&json_tmp))?;
    drop(staging);
    out.commit(&json_name)?;
    Ok(Built {
        manifest: payload.manifest,
        manifest_sha256: sha,
        img: b.out.join(img_name),
        iso: b.out.join(iso_name),
        payload_bytes: payload.bytes,
    })
}

fn names(v: &[manifest::Named]) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.iter()
        .map(|n| n.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn boot_err(e: impl std::fmt::Display) -> Error {
    Error::Other(format!("boot files: {e}"))
}

/// The image's kernel with its modules: from the kernel cache when it
/// holds that release, else out of the image's root (`/usr/lib/modules`
/// or `/lib/modules` in `origin.ext4`, read with debugfs).
fn kernel_of(payload: &payload::Payload, image_dir: &Path, staging: &Path) -> Result<Kernel> {
    let release = &payload.image.kernel_release;
    let cache = kernel::cache_root().join("kernels");
    if let Ok(rd) = fs::read_dir(&cache) {
        let mut dirs: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        dirs.sort();
        for d in dirs {
            for m in ["lib/modules", "usr/lib/modules"] {
                let modules = d.join(m).join(release);
                if modules.join("modules.dep").is_file() {
                    return Ok(Kernel {
                        release: release.clone(),
                        vmlinuz: payload.vmlinuz.clone(),
                        modules,
                    });
                }
            }
        }
    }
    let origin = image_dir.join("origin.ext4");
    for inside in ["/usr/lib/modules", "/lib/modules"] {
        let from = format!("{inside}/{release}");
        // debugfs says on stderr when the folder is not there, and exits
        // 0 either way: the modules.dep below is the check.
        tool::run(
            Command::new("debugfs")
                .arg("-R")
                .arg(format!("rdump {from} {}", staging.display()))
                .arg(&origin),
            &format!("reading {from} out of {}", origin.display()),
        )?;
        let modules = staging.join(release);
        if modules.join("modules.dep").is_file() {
            return Ok(Kernel {
                release: release.clone(),
                vmlinuz: payload.vmlinuz.clone(),
                modules,
            });
        }
    }
    Err(Error::Kernel(format!(
        "no modules of kernel {release}: neither in the kernel cache ({}) nor in {} (vlx-image fetch-kernel fills the cache)",
        cache.display(),
        origin.display()
    )))
}

/// Writes the installer's initramfs: cpio newc, gzip.
fn write_initramfs(tree: &crate::tree::Tree, path: &Path, mtime: u32) -> Result<()> {
    let f = File::create(path).map_err(io(path))?;
    // Level 1: the environment is built with every medium and read once
    // per install; the stronger levels cost seconds for a few MiB.
    let mut gz = flate2::GzBuilder::new().mtime(0).write(
        BufWriter::with_capacity(1 << 20, f),
        flate2::Compression::fast(),
    );
    cpio::write(tree, &mut gz, mtime)?;
    let mut w = gz.finish().map_err(io(path))?;
    w.flush().map_err(io(path))?;
    Ok(())
}
