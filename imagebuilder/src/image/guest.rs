//! `vlx-image guest`: a guest OS tarball (`NAME.tar.gz`, parallel gzip) and
//! its `guest.toml`, from mmdebstrap, a folder or a pinned tarball.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result, io};
use crate::formats::pgz::ParGz;
use crate::formats::tarball::{HashingWriter, TarWriter};
use crate::image::{kernel, rootfs, sources};
use crate::output::Output;
use crate::profile::{GuestProfile, RootSource};
use crate::progress::{Progress, Steps};

/// `guest.toml`: the contract's type, beside the tarball this module writes.
pub use contracts::guest::{FILE as META_FILE, GuestMeta};

/// gzip level of guest tarballs: gzip's own default.
pub const LEVEL: u32 = 6;

#[derive(Debug, Clone)]
pub struct GuestBuild {
    pub out: PathBuf,
    pub source_date_epoch: u64,
}

/// Builds the tarball and guest.toml; returns what guest.toml says.
pub fn build(profile: &GuestProfile, g: &GuestBuild, progress: &dyn Progress) -> Result<GuestMeta> {
    let mut steps = Steps {
        progress,
        total: 4,
        index: 0,
    };
    let mut out = Output::new(&g.out)?;
    steps.next("root file system");
    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(out.dir())
        .map_err(io(out.dir()))?;
    let root = match &profile.rootfs {
        RootSource::Directory(d) => {
            if !d.is_dir() {
                return Err(Error::Other(format!(
                    "rootfs.path {}: no such folder",
                    d.display()
                )));
            }
            d.clone()
        }
        RootSource::Tarball { path, sha256 } => {
            rootfs::check_sha256(path, sha256)?;
            let r = staging.path().join("root");
            fs::create_dir(&r).map_err(io(&r))?;
            rootfs::extract_tarball(path, &r)?;
            r
        }
        RootSource::Mmdebstrap(spec) => {
            let r = staging.path().join("root");
            let sources = sources::for_build(spec)?;
            rootfs::mmdebstrap(spec, &sources, &[], &r, g.source_date_epoch)?;
            r
        }
        RootSource::Host(_) => {
            return Err(Error::Profile {
                path: profile.path.clone(),
                message: "rootfs.source: \"host\" is for host profiles".into(),
            });
        }
    };

    steps.next("kernel and initramfs");
    let (kernel_path, initramfs_path) = boot_files(profile, &root)?;
    steps.info(&format!(
        "kernel {kernel_path}, initramfs {}",
        initramfs_path.as_deref().unwrap_or("(none)")
    ));

    let tar_name = format!("{}.tar.gz", profile.name);
    steps.next(&tar_name);
    let tmp = out.temp(&tar_name);
    let f = File::create(&tmp).map_err(io(&tmp))?;
    let hashing = HashingWriter::new(BufWriter::with_capacity(1 << 20, f));
    let gz = ParGz::with_all_cores(hashing, flate2::Compression::new(LEVEL));
    let mut tw = TarWriter::new(gz, g.source_date_epoch, progress);
    tw.append_tree(&root)?;
    let count = tw.count;
    let gz = tw.finish()?;
    let hashing = gz.finish().map_err(io(&tmp))?;
    let (bw, size, sha) = hashing.finish();
    let f = bw.into_inner().map_err(|e| io(&tmp)(e.into_error()))?;
    f.sync_all().map_err(io(&tmp))?;
    steps.info(&format!("{tar_name}: {count} entries, {size} bytes"));
    drop(staging);

    steps.next(META_FILE);
    let meta = GuestMeta {
        name: profile.name.clone(),
        distribution: profile.distribution.clone(),
        kernel: kernel_path,
        initramfs: initramfs_path,
        vcpus: profile.vcpus,
        memory: profile.memory.get(),
        disk: profile.disk.get(),
        tarball: tar_name,
        tarball_size: size,
        tarball_sha256: sha,
        source_date_epoch: g.source_date_epoch,
        profile_sha256: profile.sha256.clone(),
    };
    let text = toml::to_string(&meta).map_err(|e| Error::Other(format!("guest.toml: {e}")))?;
    let mpath = out.temp(META_FILE);
    fs::write(&mpath, text).map_err(io(&mpath))?;
    out.commit(META_FILE)?;
    Ok(meta)
}

/// The kernel and initramfs inside `root`: the profile's, checked, or the
/// newest `boot/vmlinuz-<release>` and its `boot/initrd.img-<release>`.
fn boot_files(profile: &GuestProfile, root: &Path) -> Result<(String, Option<String>)> {
    let inside = |key: &str, rel: &str| -> Result<String> {
        let p = Path::new(rel);
        if p.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(Error::Profile {
                path: profile.path.clone(),
                message: format!("guest.{key}: `{rel}` must be a relative path inside the tree"),
            });
        }
        if fs::symlink_metadata(root.join(p)).is_err() {
            return Err(Error::Profile {
                path: profile.path.clone(),
                message: format!("guest.{key}: `{rel}` is not in the guest tree"),
            });
        }
        Ok(rel.to_owned())
    };
    if let Some(k) = &profile.kernel {
        let k = inside("kernel", k)?;
        let i = profile
            .initramfs
            .as_deref()
            .map(|i| inside("initramfs", i))
            .transpose()?;
        return Ok((k, i));
    }
    let k = kernel::in_tree(root).map_err(|e| {
        Error::Other(format!(
            "the guest tree has no kernel ({e}); install one or set guest.kernel"
        ))
    })?;
    let kernel_rel = format!("boot/vmlinuz-{}", k.release);
    let initrd = format!("boot/initrd.img-{}", k.release);
    let initramfs = match &profile.initramfs {
        Some(i) => Some(inside("initramfs", i)?),
        None => root.join(&initrd).is_file().then_some(initrd),
    };
    Ok((kernel_rel, initramfs))
}
