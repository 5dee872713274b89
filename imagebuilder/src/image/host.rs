//! `vlx-image build`: a host image directory from a host profile.
//!
//! Steps: check inputs (overlays rendered, programs found) → kernel →
//! root file system in staging → overlays → clamp mtimes → `origin.ext4`
//! → `initramfs.img` → `vmlinuz` → `manifest.json`, then every artifact is
//! renamed into place at once.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, io};
use crate::formats::ext4;
use crate::image::initramfs::{self, Programs};
use crate::image::kernel::{self, Kernel, ModuleIndex};
use crate::image::libs::Resolver;
use crate::image::{overlays, rootfs, sbom, sources, tools};
use crate::output::Output;
use crate::profile::{HostProfile, RootSource};
use crate::progress::{Progress, Steps};
use contracts::image::{self as manifest, Manifest};

pub use contracts::image::{INITRAMFS, KERNEL as VMLINUZ, ORIGIN};

/// What a host build needs besides the profile.
#[derive(Debug, Clone)]
pub struct HostBuild {
    /// The node agent binary that becomes the initramfs's `/init`.
    pub agent: PathBuf,
    /// The image directory.
    pub out: PathBuf,
    /// Every mtime in the image is at most this; also the superblock times.
    pub source_date_epoch: u64,
}

/// The UUID of the origin file system: the same profile gives the same.
pub fn origin_uuid(profile: &HostProfile) -> uuid::Uuid {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("vlx:origin:{}", profile.sha256).as_bytes(),
    )
}

fn hash_seed(profile: &HostProfile) -> uuid::Uuid {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("vlx:origin-hash-seed:{}", profile.sha256).as_bytes(),
    )
}

/// Builds the image; returns its manifest (also written to the folder).
pub fn build(profile: &HostProfile, b: &HostBuild, progress: &dyn Progress) -> Result<Manifest> {
    let epoch = b.source_date_epoch;
    let epoch_i = i64::try_from(epoch)
        .map_err(|_| Error::Other(format!("SOURCE_DATE_EPOCH {epoch} is out of range")))?;
    let mtime32 = u32::try_from(epoch).map_err(|_| {
        Error::Other(format!(
            "SOURCE_DATE_EPOCH {epoch} does not fit a cpio header"
        ))
    })?;
    let mut steps = Steps {
        progress,
        total: 9,
        index: 0,
    };

    steps.next("checking inputs");
    let context = overlays::host_context(profile, epoch);
    let rendered = overlays::render_all(&profile.overlays, &context)?;
    let programs = Programs::find(&b.agent, &profile.transports)?;
    let found_tools = tools::find(profile, &b.agent)?;
    let resolver = Resolver::host();
    let mut out = Output::new(&b.out)?;

    steps.next("kernel");
    let fetched = match &profile.rootfs {
        RootSource::Mmdebstrap(_) => None,
        _ => {
            let k = kernel::fetch(&profile.kernel_package)?;
            steps.info(&format!(
                "kernel {} from {}",
                k.release,
                k.vmlinuz.display()
            ));
            Some(k)
        }
    };

    steps.next("root file system");
    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(out.dir())
        .map_err(io(out.dir()))?;
    let root = staging.path().join("root");
    let tools = tools::stripped(&found_tools, &staging.path().join("tools"))?;
    let kernel: Kernel = match &profile.rootfs {
        RootSource::Host(spec) => {
            let mut tree = rootfs::plan_host(spec, &resolver, progress)?;
            tools::add_to_tree(&mut tree, &tools, &resolver)?;
            fs::create_dir(&root).map_err(io(&root))?;
            tree.write_to(&root, epoch_i)?;
            steps.info(&format!("{} paths from the build machine", tree.len()));
            fetched.ok_or_else(|| Error::Kernel("no kernel fetched".into()))?
        }
        RootSource::Tarball { path, sha256 } => {
            rootfs::check_sha256(path, sha256)?;
            fs::create_dir(&root).map_err(io(&root))?;
            rootfs::extract_tarball(path, &root)?;
            fetched.ok_or_else(|| Error::Kernel("no kernel fetched".into()))?
        }
        RootSource::Mmdebstrap(spec) => {
            let sources = sources::for_build(spec)?;
            for l in &sources {
                steps.info(&format!("apt source: {l}"));
            }
            rootfs::mmdebstrap(
                spec,
                &sources,
                std::slice::from_ref(&profile.kernel_package),
                &root,
                epoch,
            )?;
            let k = kernel::in_tree(&root)?;
            steps.info(&format!("kernel {} from the root's /boot", k.release));
            k
        }
        RootSource::Directory(_) => {
            return Err(Error::Profile {
                path: profile.path.clone(),
                message: "rootfs.source: \"directory\" is for guest profiles".into(),
            });
        }
    };

    if !matches!(profile.rootfs, RootSource::Host(_)) {
        tools::install(&root, &tools)?;
    }
    for t in &found_tools {
        steps.info(&format!(
            "tool /{} from {}",
            t.in_root().display(),
            t.from.display()
        ));
    }

    if !matches!(profile.rootfs, RootSource::Mmdebstrap(_)) {
        let n = kernel::install_in_root(&root, &kernel, &profile.root_modules)?;
        steps.info(&format!(
            "{n} kernel modules in the root's /lib/modules/{}",
            kernel.release
        ));
    }

    steps.next("overlays");
    for (entries, path) in rendered.iter().zip(&profile.overlays) {
        overlays::apply(&root, entries)?;
        steps.info(&format!(
            "overlay {}: {} paths",
            path.display(),
            entries.len()
        ));
    }
    rootfs::clamp_mtimes(&root, epoch_i)?;

    steps.next(sbom::FILE);
    let bom = bill_of_materials(profile, &root, &kernel, epoch)?;
    let spath = out.temp(sbom::FILE);
    fs::write(&spath, bom.to_json()).map_err(io(&spath))?;
    steps.info(&format!(
        "{}: {} packages, {} files owned by none",
        sbom::FILE,
        bom.packages.len(),
        bom.unowned.len()
    ));

    steps.next(ORIGIN);
    let usage = ext4::measure(&root)?;
    let (size, inodes) = ext4::plan_size(usage, profile.headroom);
    steps.info(&format!(
        "{ORIGIN}: {size} for {} inodes and {} MiB of content, {} headroom",
        usage.inodes,
        (usage.blocks * 4096) >> 20,
        profile.headroom
    ));
    ext4::make(
        &root,
        &out.temp(ORIGIN),
        size,
        inodes,
        origin_uuid(profile),
        hash_seed(profile),
        epoch,
    )?;

    steps.next(INITRAMFS);
    let index = ModuleIndex::load(&kernel)?;
    let modules = initramfs::modules(&index, &profile.transports, &profile.modules)?;
    let tree = initramfs::plan(&programs, &kernel, &index, &modules, &resolver)?;
    initramfs::write(&tree, &out.temp(INITRAMFS), mtime32)?;
    steps.info(&format!(
        "{INITRAMFS}: {} paths, {} modules",
        tree.len(),
        modules.len()
    ));

    steps.next(VMLINUZ);
    let vmlinuz = out.temp(VMLINUZ);
    copy_file(&kernel.vmlinuz, &vmlinuz, epoch_i)?;
    drop(staging);

    steps.next(manifest::FILE);
    let dir = out.dir().to_owned();
    let mut artifacts = Vec::new();
    for name in [INITRAMFS, ORIGIN, sbom::FILE, VMLINUZ] {
        let tmp = out.temp(name);
        let mut a = manifest::describe(
            tmp.parent().unwrap_or(&dir),
            &[tmp.file_name().and_then(|n| n.to_str()).unwrap_or_default()],
        )?;
        let mut a = a.remove(0);
        a.file = name.to_owned();
        artifacts.push(a);
    }
    let m = Manifest {
        format: manifest::FORMAT,
        name: profile.name.clone(),
        version: profile.version.clone(),
        profile_sha256: profile.sha256.clone(),
        source_date_epoch: epoch,
        kernel_release: kernel.release.clone(),
        artifacts,
        packages: bom.versions(),
        test_image: profile.test_image,
    };
    let mpath = out.temp(manifest::FILE);
    fs::write(&mpath, m.to_json()).map_err(io(&mpath))?;
    out.commit(manifest::FILE)?;
    Ok(m)
}

/// The SBOM of the staged root: dpkg's records of a Debian root, the
/// build machine's packages of a `host` root's files.
fn bill_of_materials(
    profile: &HostProfile,
    root: &Path,
    kernel: &Kernel,
    epoch: u64,
) -> Result<sbom::Sbom> {
    let has_dpkg = root.join("var/lib/dpkg/status").is_file();
    let (packages, unowned) = match &profile.rootfs {
        RootSource::Host(_) => sbom::host_root(root, sbom::kernel_package_of(&kernel.vmlinuz))?,
        _ if has_dpkg => (sbom::debian_root(root)?, Vec::new()),
        _ => (Vec::new(), sbom::unowned_only(root)?),
    };
    Ok(sbom::Sbom {
        image: profile.name.clone(),
        version: profile.version.clone(),
        profile_sha256: profile.sha256.clone(),
        source_date_epoch: epoch,
        packages,
        unowned,
    })
}

/// Copies a file with mode 0644 and the given mtime, synced.
fn copy_file(from: &Path, to: &Path, mtime: i64) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::copy(from, to).map_err(io(from))?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o644)).map_err(io(to))?;
    let t = filetime::FileTime::from_unix_time(mtime, 0);
    filetime::set_file_times(to, t, t).map_err(io(to))?;
    fs::File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(io(to))
}

/// `vlx-node` beside the running executable (the same cargo target
/// folder), the default `--agent`.
pub fn default_agent() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    // Test binaries live one level down, in target/<profile>/deps.
    [dir.join("vlx-node"), dir.parent()?.join("vlx-node")]
        .into_iter()
        .find(|p| p.is_file())
        .or_else(|| Some(dir.join("vlx-node")))
}
