//! The tiny guest of the VC tests: the Debian cloud kernel from the shared
//! cache, a busybox initramfs that mounts the VM's disk as root, and a
//! busybox root tarball whose init prints `vlx-guest: ready <vc>/<vm>`.

use std::path::{Path, PathBuf};
use std::process::Command;

use imagebuilder::image::kernel::{self as kernels, ModuleIndex};
use imagebuilder::image::tree::{Content, Entry, Tree};

/// Kernel, initramfs and root tarball of the tiny guest, in `dir`.
pub struct TinyGuest {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub tarball: PathBuf,
}

const INITRAMFS_INIT: &str = include_str!("../guest/initramfs-init.sh");
const ROOT_INIT: &str = include_str!("../guest/root-init.sh");
const MODULES: &[&str] = &["virtio_pci", "virtio_blk"];

pub fn build(dir: &Path) -> TinyGuest {
    let kernel = kernels::cached_or_fetch(kernels::DEFAULT_PACKAGE)
        .expect("the guest kernel (cached by the image builder, or fetched with apt)");
    let mut t = Tree::new();
    for d in ["bin", "dev", "proc", "sys", "newroot"] {
        t.mkdir_p(Path::new(d)).expect("tree");
    }
    let file = |bytes: Vec<u8>, mode| Entry::file(Content::Bytes(bytes), mode);
    t.insert(
        Path::new("bin/busybox"),
        Entry::file(Content::Host("/bin/busybox".into()), 0o755),
    )
    .expect("busybox (Debian busybox-static)");
    t.insert(Path::new("init"), file(INITRAMFS_INIT.into(), 0o755))
        .expect("init");
    let wanted: Vec<(String, String)> = MODULES
        .iter()
        .map(|m| ((*m).to_owned(), "the tiny guest's disk".to_owned()))
        .collect();
    let mut order = String::new();
    let index = ModuleIndex::load(&kernel).expect("module index");
    for m in index.closure(&wanted).expect("module closure") {
        let plain = m.plain_path();
        let base = plain.rsplit('/').next().unwrap_or(&plain).to_owned();
        let bytes = kernels::module_bytes(&kernel, &m).expect("module");
        t.insert(&Path::new("lib/modules").join(&base), file(bytes, 0o644))
            .expect("module");
        order.push_str(&base);
        order.push('\n');
    }
    t.insert(Path::new("lib/modules/order"), file(order.into(), 0o644))
        .expect("order");
    let initrd = dir.join("initrd.img");
    imagebuilder::image::initramfs::write(&t, &initrd, 0).expect("writing the initramfs");

    let root = dir.join("root");
    for d in [
        "bin", "sbin", "dev", "proc", "sys", "etc", "tmp", "var", "root",
    ] {
        std::fs::create_dir_all(root.join(d)).expect("root tree");
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox");
    std::fs::write(root.join("sbin/init"), ROOT_INIT).expect("init");
    let st = Command::new("chmod")
        .arg("0755")
        .arg(root.join("sbin/init"))
        .status()
        .expect("chmod");
    assert!(st.success());
    let tarball = dir.join("tiny.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .args(["--numeric-owner", "--owner=0", "--group=0", "-cf"])
        .arg(&tarball)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success(), "tar of the tiny root");
    TinyGuest {
        kernel: kernel.vmlinuz.clone(),
        initrd,
        tarball,
    }
}
