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
//! Steps: installer environment → payload (read, and check what can be
//! checked cheaply; with `LICENSES/`, [`licenses`], which names the
//! environment's packages too) → boot files → both images. From the payload
//! step on, another thread hashes the image and the guest tarballs against
//! their manifests; a mismatch fails the build and leaves no output. The
//! big images are not synced: the installer checks every payload byte
//! against the manifest before it writes anything, so a copy gone wrong is
//! caught where it matters, and a sync would double the build time.

pub mod env;
pub mod licenses;
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
use crate::formats::cpio;
use crate::formats::iso::{self, BootSpec, IsoSpec, Source};
use crate::image::kernel::{self, Kernel, ModuleIndex};
use crate::image::libs::Resolver;
use crate::output::Output;
use crate::progress::{Progress, Steps};
use crate::tool;
use contracts::media::{self as manifest, MediaManifest};
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

/// The host profile the media profile's first cluster profile names
/// (`image.host`): what `vlx-image media` builds when no `--image` is
/// given. (Every carried profile must name that same image; the payload
/// step checks it.)
pub fn host_profile_of(profile: &MediaProfile) -> Result<PathBuf> {
    let cluster = profile.clusters.first().ok_or_else(|| Error::Profile {
        path: profile.path.clone(),
        message: "media.clusters: name at least one cluster profile".into(),
    })?;
    let text = fs::read_to_string(cluster).map_err(io(cluster))?;
    let v: toml::Table = toml::from_str(&text).map_err(|e| Error::Profile {
        path: cluster.clone(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    let host = v
        .get("image")
        .and_then(|i| i.get("host"))
        .and_then(|h| h.as_str())
        .ok_or_else(|| Error::Profile {
            path: cluster.clone(),
            message: "image.host: missing".into(),
        })?;
    Ok(cluster
        .parent()
        .map(Path::to_owned)
        .unwrap_or_default()
        .join(host))
}

/// The kernel command line of a boot entry.
pub fn cmdline(profile: &MediaProfile, manifest_sha256: &str, unattended: bool) -> String {
    let mut args = contracts::cmdline::media::MediaArgs {
        media: manifest_sha256.to_owned(),
        ..Default::default()
    };
    if let (true, Some(u)) = (unattended, &profile.unattended) {
        args.unattended = true;
        args.profile = Some(u.profile.clone());
        args.target = Some(u.target.clone());
        args.storage = u.storage.clone();
        args.wipe = u.wipe;
    }
    // `vlx.media=` first, then the consoles, then the unattended words: the
    // order docs/contracts.md shows.
    let mut vlx = contracts::cmdline::media::write(&args).into_iter();
    let mut a: Vec<String> = vlx.next().into_iter().collect();
    a.extend(profile.console.iter().map(|c| format!("console={c}")));
    a.extend(vlx);
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
    let h = contracts::hash::sha256_bytes(format!("{what}:{sha}").as_bytes());
    u32::from_str_radix(&h[..8], 16).unwrap_or(0)
}

/// Builds the media; returns what it made.
pub fn build(profile: &MediaProfile, b: &MediaBuild, progress: &dyn Progress) -> Result<Built> {
    let epoch = b.source_date_epoch;
    let mut steps = Steps {
        progress,
        total: 5,
        index: 0,
    };
    let [img_name, iso_name, json_name] = outputs(&profile.name);
    let mtime32 = u32::try_from(epoch).map_err(|_| {
        Error::Other(format!(
            "SOURCE_DATE_EPOCH {epoch} does not fit a cpio header"
        ))
    })?;
    let image = contracts::image::Manifest::read(&b.image)?;
    let mut out = Output::new(&b.out)?;
    let staging = tempfile::Builder::new()
        .prefix(".media-")
        .tempdir_in(&b.out)
        .map_err(io(&b.out))?;

    steps.next("installer environment");
    let kernel = kernel_of(&image, &b.image, staging.path())?;
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

    steps.next("payload");
    let mut host = licenses::host_files(&tree, &kernel.modules, &b.installer);
    host.extend(licenses::boot_loader_paths());
    host.sort();
    host.dedup();
    let license_files = licenses::files(&b.image, &host, staging.path())?;
    steps.info(&format!(
        "{}: {} files, {} KiB",
        licenses::DIR,
        license_files.len(),
        license_files
            .iter()
            .map(|(_, b)| b.len() as u64)
            .sum::<u64>()
            >> 10
    ));
    let payload = payload::collect(profile, &b.image, &b.guests, epoch, &license_files)?;
    steps.info(&format!(
        "{} files, {} MiB; image {} {}, clusters {}, guests {}",
        payload.manifest.files.len(),
        payload.bytes >> 20,
        payload.image.name,
        payload.image.version,
        manifest::names(&payload.manifest.clusters),
        manifest::names(&payload.manifest.guests),
    ));
    let sha = payload.manifest_sha256.clone();
    let img_tmp = out.temp(&img_name);
    let iso_tmp = out.temp(&iso_name);

    // The image and guest tarballs are hashed against their manifests on
    // a thread of their own, from now until both images are written: the
    // files are read anyway, and the writers' copies are the kernel's
    // work on the other core.
    let started = std::time::Instant::now();
    let (written, verified) = std::thread::scope(|s| {
        let verifier = s.spawn(|| {
            payload::verify(&payload.checks)?;
            Ok(started.elapsed())
        });
        let written = write_media(
            profile,
            b,
            &payload,
            &license_files,
            &initrd,
            &mut steps,
            &img_tmp,
            &iso_tmp,
        );
        let verified: Result<std::time::Duration> = verifier
            .join()
            .unwrap_or_else(|_| Err(Error::Other("the payload check panicked".into())));
        (written, verified)
    });
    // A payload that does not match its manifests is the error that
    // matters, whatever the writers did.
    let verify_time = verified?;
    let write_time = written?.elapsed();
    drop(staging);
    steps.info(&format!(
        "{} MiB of image and guests checked against their manifests in {:.1} s; images written in {:.1} s",
        payload.checks.iter().map(|c| c.size).sum::<u64>() >> 20,
        verify_time.as_secs_f64(),
        write_time.as_secs_f64(),
    ));

    steps.next(&json_name);
    let json_tmp = out.temp(&json_name);
    fs::write(&json_tmp, &payload.manifest_json).map_err(io(&json_tmp))?;
    out.commit(&json_name)?;
    Ok(Built {
        manifest: payload.manifest,
        manifest_sha256: sha,
        img: b.out.join(img_name),
        iso: b.out.join(iso_name),
        payload_bytes: payload.bytes,
    })
}

/// Steps 3 and 4: the boot files and both images (at `img_tmp` and
/// `iso_tmp`), with the installer's initramfs at `initrd`; `licenses` go
/// onto the USB image's ESP too (a stick shows that volume to any
/// computer). Returns when the writing began.
#[allow(clippy::too_many_arguments)]
fn write_media(
    profile: &MediaProfile,
    b: &MediaBuild,
    payload: &payload::Payload,
    licenses: &[(String, Vec<u8>)],
    initrd: &Path,
    steps: &mut Steps<'_>,
    img_tmp: &Path,
    iso_tmp: &Path,
) -> Result<std::time::Instant> {
    let epoch = b.source_date_epoch;
    let sha = &payload.manifest_sha256;
    let out_dir = img_tmp.parent().unwrap_or(Path::new("."));
    let staging = tempfile::Builder::new()
        .prefix(".media-")
        .tempdir_in(out_dir)
        .map_err(io(out_dir))?;

    steps.next("boot files");
    let license_bytes: u64 = licenses.iter().map(|(_, b)| b.len() as u64).sum();
    let boot_bytes = fs::metadata(&payload.vmlinuz)
        .map_err(io(&payload.vmlinuz))?
        .len()
        + fs::metadata(initrd).map_err(io(initrd))?.len()
        + (1 << 20);
    let entries = entries(profile, sha, &payload.vmlinuz, initrd);
    // Room for the licenses on the USB image's ESP (the ISO's EFI image,
    // of the same size, does without them), a cluster's slack per file.
    let esp_size = fat_size(boot_bytes + license_bytes + 4096 * licenses.len() as u64);
    let esp_spec = |firmware, size: Bytes, lba: Lba, what: &str| EspSpec {
        firmware,
        sector_size: SectorSize::B512,
        size,
        partition_lba: lba,
        volume_id: volume_id(sha, what),
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
    let mut usb_spec = esp_spec(Firmware::Both, esp_part.size, esp_part.first_lba, "usb");
    usb_spec.extra = licenses
        .iter()
        .map(|(p, b)| (p.clone(), bootfs::fat::Source::Bytes(b.clone())))
        .collect();
    let usb_esp = esp::plan(&usb_spec).map_err(boot_err)?;

    let mut full = payload.tree.clone();
    full.add(ISO_KERNEL, Source::file(&payload.vmlinuz)?)?;
    full.add(ISO_INITRD, Source::file(initrd)?)?;
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

    steps.next("images");
    steps.info(&format!(
        "USB image: {} (ESP {}, payload {}); ISO: {}",
        disk.size,
        esp_part.size,
        payload_part.size,
        Bytes(iso_image.size())
    ));
    let began = std::time::Instant::now();
    let f = File::create(img_tmp).map_err(io(img_tmp))?;
    f.set_len(disk.size.get()).map_err(io(img_tmp))?;
    drop(f);
    // The ESP first: bootfs syncs what it writes, and here that is the
    // ESP alone.
    usb_esp
        .write(img_tmp, esp_part.offset(disk.sector_size))
        .map_err(boot_err)?;
    payload_iso.write(img_tmp, payload_part.offset(disk.sector_size).get())?;
    // The partition table and the MBR boot code.
    let code = esp::mbr_boot_code(&bootfs::Assets::default()).map_err(boot_err)?;
    let f = fs::OpenOptions::new()
        .write(true)
        .open(img_tmp)
        .map_err(io(img_tmp))?;
    use std::os::unix::fs::FileExt;
    for w in cluster::gpt::encode(&disk) {
        f.write_all_at(&w.data, w.offset.get())
            .map_err(io(img_tmp))?;
    }
    f.write_all_at(&code, 0).map_err(io(img_tmp))?;
    drop(f);
    // One writer beside the hashing thread: two cores are what build
    // machines can be counted on for.
    iso_image.write(iso_tmp, 0)?;
    drop(staging);
    Ok(began)
}

fn boot_err(e: impl std::fmt::Display) -> Error {
    Error::Other(format!("boot files: {e}"))
}

/// The image's kernel with its modules: from the kernel cache when it
/// holds that release, else out of the image's root (`/usr/lib/modules`
/// or `/lib/modules` in `origin.ext4`, read with debugfs).
fn kernel_of(
    image: &contracts::image::Manifest,
    image_dir: &Path,
    staging: &Path,
) -> Result<Kernel> {
    let release = &image.kernel_release;
    let vmlinuz = image_dir.join("vmlinuz");
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
                        vmlinuz: vmlinuz.clone(),
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
                vmlinuz: vmlinuz.clone(),
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

/// Writes the installer's initramfs: cpio newc, uncompressed. Compressing
/// its ~20 MiB costs a build more (gzip -1: a third of a second, half of
/// what writing both images takes) than reading 10 MiB more costs a boot,
/// and the kernel then has nothing to decompress.
fn write_initramfs(tree: &crate::image::tree::Tree, path: &Path, mtime: u32) -> Result<()> {
    let f = File::create(path).map_err(io(path))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    cpio::write(tree, &mut w, mtime)?;
    w.flush().map_err(io(path))?;
    Ok(())
}
