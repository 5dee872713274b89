//! The real Debian cloud kernel (from the kernel cache): module closures
//! for both SAN transports, checked against its modules.dep.

// Helpers outside #[test] functions panic on purpose too.
#![allow(clippy::unwrap_used)]

use imagebuilder::image::initramfs;
use imagebuilder::image::kernel::{self, ModuleIndex};
use imagebuilder::profile::Transport;

#[test]
fn transports_pull_their_modules_in_dependency_order() {
    let k = kernel::fetch("linux-image-cloud-amd64").unwrap();
    let index = ModuleIndex::load(&k).unwrap();
    let names = |mods: &[kernel::Module]| mods.iter().map(|m| m.name.clone()).collect::<Vec<_>>();
    let disk = names(&initramfs::modules(&index, &[Transport::Disk], &[]).unwrap());
    assert!(!disk.contains(&"iscsi_tcp".to_owned()), "{disk:?}");
    // ext4 is built into the cloud kernel: skipped, not an error.
    assert!(index.is_builtin("ext4") && !disk.contains(&"ext4".to_owned()));
    let both = names(
        &initramfs::modules(
            &index,
            &[Transport::Disk, Transport::Iscsi],
            &["nbd".into()],
        )
        .unwrap(),
    );
    let pos = |m: &str| {
        both.iter()
            .position(|x| x == m)
            .unwrap_or_else(|| panic!("{m} missing: {both:?}"))
    };
    assert!(pos("scsi_mod") < pos("scsi_transport_iscsi"));
    assert!(pos("scsi_transport_iscsi") < pos("libiscsi"));
    assert!(pos("libiscsi") < pos("libiscsi_tcp"));
    assert!(pos("libiscsi_tcp") < pos("iscsi_tcp"));
    assert!(pos("scsi_mod") < pos("sd_mod"));
    pos("nbd");
    // Each module appears once.
    let mut dedup = both.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), both.len());
    let err = initramfs::modules(&index, &[Transport::Disk], &["e1000".into()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("e1000") && err.contains(&k.release), "{err}");
}

#[test]
fn iscsi_initramfs_carries_iscsistart_and_its_libraries() {
    use std::path::Path;
    let k = kernel::fetch("linux-image-cloud-amd64").unwrap();
    let index = ModuleIndex::load(&k).unwrap();
    let transports = [Transport::Disk, Transport::Iscsi];
    let programs = initramfs::Programs::find(Path::new("/usr/bin/true"), &transports).unwrap();
    let modules = initramfs::modules(&index, &transports, &[]).unwrap();
    let resolver = imagebuilder::image::libs::Resolver::host();
    let tree = initramfs::plan(&programs, &k, &index, &modules, &resolver).unwrap();
    assert!(tree.get(Path::new("sbin/iscsistart")).is_some());
    let iscsi_tcp = modules.iter().find(|m| m.name == "iscsi_tcp").unwrap();
    let at = Path::new("lib/modules")
        .join(&k.release)
        .join(iscsi_tcp.plain_path());
    assert!(tree.get(&at).is_some(), "{} missing", at.display());
    // Every library iscsistart needs is in the tree.
    let needs = resolver
        .closure(&[programs.iscsistart.clone().unwrap()])
        .unwrap();
    assert!(!needs.is_empty());
    for lib in needs {
        assert!(tree.get(&lib).is_some(), "{} missing", lib.display());
    }
}
