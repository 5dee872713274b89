//! Which kernel modules to load, in which order.
//!
//! The image builder writes `/etc/vlx/modules.load` (one module name per
//! line, dependencies first) and copies the modules with `depmod`'s
//! `modules.dep` and `modules.builtin`. The agent still resolves each name
//! through `modules.dep`, so a list that names only the leaves (or that was
//! written by hand) loads the same way.

use std::collections::{BTreeMap, BTreeSet};

/// The file that names the modules the initramfs loads.
pub const LOAD_LIST: &str = contracts::names::initramfs::MODULES_LOAD;

/// A module's canonical name: the file name without `.ko` and compression
/// suffix, with `-` read as `_` (the kernel treats them alike).
pub fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let base = [".ko.xz", ".ko.zst", ".ko.gz", ".ko"]
        .iter()
        .find_map(|s| base.strip_suffix(s))
        .unwrap_or(base);
    canonical(base)
}

fn canonical(name: &str) -> String {
    name.trim().replace('-', "_")
}

/// Reads a `modules.load` list: one name per line; blank lines and `#`
/// comments are skipped.
pub fn parse_load_list(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(canonical)
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModuleError {
    #[error("modules.dep line {line}: `{text}` is not `path: dependencies`")]
    BadDep { line: usize, text: String },
    #[error("kernel module {0} is neither in modules.dep nor built in (is it in the initramfs?)")]
    Unknown(String),
}

/// `modules.dep` and `modules.builtin` of one kernel release.
#[derive(Debug, Clone, Default)]
pub struct ModuleIndex {
    /// Module name to (path relative to the release folder, dependency
    /// paths as depmod lists them).
    modules: BTreeMap<String, (String, Vec<String>)>,
    builtin: BTreeSet<String>,
}

impl ModuleIndex {
    pub fn parse(dep: &str, builtin: &str) -> Result<ModuleIndex, ModuleError> {
        let mut modules = BTreeMap::new();
        for (i, line) in dep.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let Some((path, deps)) = line.split_once(':') else {
                return Err(ModuleError::BadDep {
                    line: i + 1,
                    text: line.to_owned(),
                });
            };
            let deps = deps.split_whitespace().map(str::to_owned).collect();
            modules.insert(module_name(path), (path.trim().to_owned(), deps));
        }
        let builtin = builtin
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(module_name)
            .collect();
        Ok(ModuleIndex { modules, builtin })
    }

    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&canonical(name))
    }

    /// The module files to load for `wanted`, each after its dependencies
    /// and each once; built-in modules are left out.
    ///
    /// depmod lists a module's dependencies already flattened, each before
    /// the modules it needs, so they load in reverse (as `modprobe` does).
    pub fn load_order(&self, wanted: &[String]) -> Result<Vec<String>, ModuleError> {
        let mut order: Vec<String> = Vec::new();
        for name in wanted {
            let name = canonical(name);
            let Some((path, deps)) = self.modules.get(&name) else {
                if self.is_builtin(&name) {
                    continue;
                }
                return Err(ModuleError::Unknown(name));
            };
            for p in deps.iter().rev().chain(std::iter::once(path)) {
                if !order.contains(p) {
                    order.push(p.clone());
                }
            }
        }
        Ok(order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/md/dm-mod.ko:
kernel/drivers/md/dm-bufio.ko:
kernel/drivers/md/dm-snapshot.ko: kernel/drivers/md/dm-bufio.ko kernel/drivers/md/dm-mod.ko
kernel/drivers/net/virtio_net.ko.xz: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
";
    const BUILTIN: &str = "kernel/fs/ext4/ext4.ko\nkernel/crypto/crc32c_generic.ko\n";

    fn index() -> ModuleIndex {
        ModuleIndex::parse(DEP, BUILTIN).unwrap()
    }

    fn names(paths: &[String]) -> Vec<String> {
        paths.iter().map(|p| module_name(p)).collect()
    }

    #[test]
    fn names_like_the_kernel() {
        for (path, want) in [
            ("kernel/drivers/md/dm-snapshot.ko", "dm_snapshot"),
            ("kernel/drivers/net/virtio_net.ko.xz", "virtio_net"),
            ("kernel/fs/ext4/ext4.ko.zst", "ext4"),
            ("dm-mod", "dm_mod"),
        ] {
            assert_eq!(module_name(path), want);
        }
    }

    #[test]
    fn loads_dependencies_first_and_once() {
        let cases: &[(&[&str], &[&str])] = &[
            (
                &["virtio_pci", "virtio_blk"],
                &[
                    "virtio_ring",
                    "virtio",
                    "virtio_pci_modern_dev",
                    "virtio_pci_legacy_dev",
                    "virtio_pci",
                    "virtio_blk",
                ],
            ),
            // Leaves only: the dependencies come from modules.dep.
            (&["dm-snapshot"], &["dm_mod", "dm_bufio", "dm_snapshot"]),
            // A full list, dependencies first, as the image builder writes it.
            (
                &["failover", "net_failover", "virtio_net"],
                &["failover", "net_failover", "virtio_net"],
            ),
            // Built-in modules are skipped.
            (&["ext4", "crc32c-generic", "dm_mod"], &["dm_mod"]),
        ];
        for (wanted, want) in cases {
            let wanted: Vec<String> = wanted.iter().map(|s| s.to_string()).collect();
            let got = index().load_order(&wanted).unwrap();
            assert_eq!(names(&got), *want, "{wanted:?}");
        }
    }

    #[test]
    fn unknown_module_is_named() {
        let err = index().load_order(&["mlx4_ib".into()]).unwrap_err();
        assert_eq!(err, ModuleError::Unknown("mlx4_ib".into()));
        assert!(err.to_string().contains("mlx4_ib"));
    }

    #[test]
    fn bad_dep_line_is_named() {
        let err = ModuleIndex::parse("kernel/a.ko\n", "").unwrap_err();
        assert_eq!(
            err,
            ModuleError::BadDep {
                line: 1,
                text: "kernel/a.ko".into()
            }
        );
    }

    #[test]
    fn reads_load_list() {
        assert_eq!(
            parse_load_list("# virtio first\nvirtio_pci\n\n dm-mod \ndm_snapshot # snapshots\n"),
            vec!["virtio_pci", "dm_mod", "dm_snapshot"]
        );
    }
}
