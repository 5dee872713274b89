//! The tiny guest of the VC tests and rig: the Debian cloud kernel from the
//! image builder's cache, a busybox initramfs that mounts the VM's disk as
//! root, and a busybox root tarball whose init prints
//! `vlx-guest: ready <vc>/<vm>`, asks for its address by DHCP when it has
//! a NIC (reporting `vlx-guest: address <vm> <addr>`), mounts its VC's
//! share at `/vc` over NFSv4 when the command line names one
//! (`vlx.share=ADDR:PATH`; `vlx-guest: shared mounted ...`) and keeps a
//! shell on the console.
//!
//! Built with the image builder's kernel cache and initramfs writer (as the
//! rig's test blades are).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use imagebuilder::image::kernel::{self as kernels, ModuleIndex};
use imagebuilder::image::tree::{Content, Entry, Tree};

/// Kernel, initramfs and root tarball of the tiny guest, in `dir`.
#[derive(Debug, Clone)]
pub struct TinyGuest {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub tarball: PathBuf,
}

const INITRAMFS_INIT: &str = include_str!("../guest/tiny/initramfs-init.sh");
const ROOT_INIT: &str = include_str!("../guest/tiny/root-init.sh");
const UDHCPC_SCRIPT: &str = include_str!("../guest/tiny/udhcpc.script");
const SHARE_SCRIPT: &str = include_str!("../guest/tiny/share.sh");
/// Loaded by the initramfs: the disk and the NIC.
const MODULES: &[&str] = &["virtio_pci", "virtio_blk", "virtio_net"];
/// The NFSv4 client for the VC's share (the cloud kernel has it as a
/// module; its closure adds sunrpc, nfs and the rest), in the root's
/// `/lib/modules/nfs/` and loaded by `/etc/vlx-share` only when the VM has
/// a share: a guest without one does not pay for them at boot.
const NFS_MODULES: &[&str] = &["nfsv4"];

/// Builds the tiny guest in `dir`.
pub fn build(dir: &Path) -> anyhow::Result<TinyGuest> {
    let kernel = kernels::cached_or_fetch(kernels::DEFAULT_PACKAGE)
        .context("the guest kernel (cached by the image builder, or fetched with apt)")?;
    let mut t = Tree::new();
    for d in ["bin", "dev", "proc", "sys", "newroot"] {
        t.mkdir_p(Path::new(d))?;
    }
    let file = |bytes: Vec<u8>, mode| Entry::file(Content::Bytes(bytes), mode);
    t.insert(
        Path::new("bin/busybox"),
        Entry::file(Content::Host("/bin/busybox".into()), 0o755),
    )
    .context("busybox (Debian busybox-static)")?;
    t.insert(Path::new("init"), file(INITRAMFS_INIT.into(), 0o755))?;
    let index = ModuleIndex::load(&kernel)?;
    let boot = modules(&kernel, &index, MODULES, "the tiny guest's disk and NIC")?;
    t.insert(
        Path::new("lib/modules/order"),
        file(order(&boot).into(), 0o644),
    )?;
    for (base, bytes) in boot {
        t.insert(&Path::new("lib/modules").join(&base), file(bytes, 0o644))?;
    }
    let initrd = dir.join("initrd.img");
    imagebuilder::image::initramfs::write(&t, &initrd, 0)
        .with_context(|| format!("writing {}", initrd.display()))?;

    let root = dir.join("root");
    for d in [
        "bin", "sbin", "dev", "proc", "sys", "etc", "tmp", "var", "root", "vc",
    ] {
        let p = root.join(d);
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).context("copying /bin/busybox")?;
    let init = root.join("sbin/init");
    std::fs::write(&init, ROOT_INIT).with_context(|| format!("writing {}", init.display()))?;
    let script = root.join("etc/udhcpc.script");
    std::fs::write(&script, UDHCPC_SCRIPT)
        .with_context(|| format!("writing {}", script.display()))?;
    let nfs = root.join("lib/modules/nfs");
    std::fs::create_dir_all(&nfs).with_context(|| format!("creating {}", nfs.display()))?;
    let client = modules(&kernel, &index, NFS_MODULES, "the tiny guest's NFS client")?;
    let p = nfs.join("order");
    std::fs::write(&p, order(&client)).with_context(|| format!("writing {}", p.display()))?;
    for (base, bytes) in client {
        let p = nfs.join(&base);
        std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))?;
    }
    let share = root.join("etc/vlx-share");
    std::fs::write(&share, SHARE_SCRIPT).with_context(|| format!("writing {}", share.display()))?;
    use std::os::unix::fs::PermissionsExt;
    for f in [&init, &script, &share] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {}", f.display()))?;
    }
    let tarball = dir.join("tiny.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .args(["--numeric-owner", "--owner=0", "--group=0", "-cf"])
        .arg(&tarball)
        .arg(".")
        .status()
        .context("running tar")?;
    if !st.success() {
        bail!("tar of {} failed: {st}", root.display());
    }
    Ok(TinyGuest {
        kernel: kernel.vmlinuz.clone(),
        initrd,
        tarball,
    })
}

/// The file name and bytes of every module of `wanted`'s closure, in load
/// order (dependencies first).
fn modules(
    kernel: &kernels::Kernel,
    index: &ModuleIndex,
    wanted: &[&str],
    why: &str,
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let wanted: Vec<(String, String)> = wanted
        .iter()
        .map(|m| ((*m).to_owned(), why.to_owned()))
        .collect();
    let mut out = Vec::new();
    for m in index.closure(&wanted)? {
        let plain = m.plain_path();
        let base = plain.rsplit('/').next().unwrap_or(&plain).to_owned();
        out.push((base, kernels::module_bytes(kernel, &m)?));
    }
    Ok(out)
}

/// The `order` file of `modules`: one file name a line, in load order.
fn order(modules: &[(String, Vec<u8>)]) -> String {
    modules
        .iter()
        .map(|(base, _)| format!("{base}\n"))
        .collect()
}
