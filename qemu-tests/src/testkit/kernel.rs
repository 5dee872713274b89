//! The guest kernel from the shared cache, filled from Debian's cloud
//! kernel package when empty.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{TestkitError, io, tool};

/// The Debian meta package whose dependency names the cloud kernel: it has
/// ext4 built in and virtio, dm-snapshot and friends as modules.
const META_PACKAGE: &str = "linux-image-cloud-amd64";

/// An extracted kernel package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    pub release: String,
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>`.
    pub modules: PathBuf,
}

/// `$VLX_CACHE`, else `$HOME/.cache/vlx`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("VLX_CACHE") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache").join("vlx")
}

/// The newest kernel in the cache; fills the cache first when it holds
/// none.
pub fn kernel() -> Result<Kernel, TestkitError> {
    let dir = cache_dir().join("kernels");
    if let Some(k) = newest(&dir)? {
        return Ok(k);
    }
    fill(&dir)?;
    newest(&dir)?.ok_or_else(|| {
        TestkitError::Kernel(format!(
            "{} holds no kernel after extracting {META_PACKAGE}",
            dir.display()
        ))
    })
}

/// The newest kernel in the cache, without filling it.
pub fn cached_kernel() -> Option<Kernel> {
    newest(&cache_dir().join("kernels")).ok().flatten()
}

fn newest(dir: &Path) -> Result<Option<Kernel>, TestkitError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("listing the kernel cache", dir)(e)),
    };
    let mut found = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue; // an extraction in progress
        }
        if let Some(k) = read_one(&e.path()) {
            found.push((name, k));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found.pop().map(|(_, k)| k))
}

fn read_one(pkg: &Path) -> Option<Kernel> {
    let boot = std::fs::read_dir(pkg.join("boot")).ok()?;
    for e in boot.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(release) = name.strip_prefix("vmlinuz-") {
            let modules = pkg.join("lib/modules").join(release);
            if modules.join("modules.dep").is_file() {
                return Some(Kernel {
                    release: release.to_string(),
                    vmlinuz: e.path(),
                    modules,
                });
            }
        }
    }
    None
}

/// `apt-get download` + `dpkg-deb -x` + `depmod -b`, into a hidden
/// directory renamed into place, so that a concurrent reader never sees a
/// half-extracted kernel.
fn fill(dir: &Path) -> Result<(), TestkitError> {
    std::fs::create_dir_all(dir).map_err(io("creating the kernel cache", dir))?;
    let deps = tool(Command::new("apt-cache").args(["depends", META_PACKAGE]))?;
    let deps = String::from_utf8_lossy(&deps);
    let package = deps
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
        .ok_or_else(|| {
            TestkitError::Kernel(format!(
                "apt-cache depends {META_PACKAGE} names no kernel package (run apt-get update)"
            ))
        })?
        .trim()
        .to_string();
    let work = tempfile::Builder::new()
        .prefix(".fill.")
        .tempdir_in(dir)
        .map_err(io("creating a scratch directory", dir))?;
    tool(
        Command::new("apt-get")
            .args(["download", &package])
            .current_dir(work.path()),
    )?;
    let deb = std::fs::read_dir(work.path())
        .map_err(io("listing the download", work.path()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| TestkitError::Kernel(format!("apt-get download {package} gave no .deb")))?;
    let stem = deb
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    // <package>_<version>_<arch>: the cache names <package>_<version>.
    let name = stem
        .rsplit_once('_')
        .map_or(stem.as_str(), |x| x.0)
        .to_string();
    let tree = work.path().join("tree");
    tool(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree))?;
    let k = read_release(&tree)?;
    tool(Command::new("depmod").arg("-b").arg(&tree).arg(&k))?;
    let target = dir.join(name);
    match std::fs::rename(&tree, &target) {
        Ok(()) => Ok(()),
        // Someone else filled it meanwhile.
        Err(_) if target.is_dir() => Ok(()),
        Err(e) => Err(io("moving the kernel into the cache", &target)(e)),
    }
}

fn read_release(tree: &Path) -> Result<String, TestkitError> {
    let boot = tree.join("boot");
    std::fs::read_dir(&boot)
        .map_err(io("listing the kernel package", &boot))?
        .flatten()
        .find_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix("vmlinuz-")
                .map(str::to_string)
        })
        .ok_or_else(|| TestkitError::Kernel(format!("no vmlinuz-* in {}", boot.display())))
}

impl Kernel {
    /// The modules `names` and their dependencies, each after what it
    /// needs, as paths relative to [`Kernel::modules`]. Built-in modules
    /// are skipped.
    pub fn closure(&self, names: &[&str]) -> Result<Vec<String>, TestkitError> {
        let dep_path = self.modules.join("modules.dep");
        let text =
            std::fs::read_to_string(&dep_path).map_err(io("reading modules.dep", &dep_path))?;
        let builtin =
            std::fs::read_to_string(self.modules.join("modules.builtin")).unwrap_or_default();
        let mut deps: HashMap<String, (String, Vec<String>)> = HashMap::new();
        for line in text.lines() {
            let Some((path, rest)) = line.split_once(':') else {
                continue;
            };
            let d = rest.split_whitespace().map(str::to_string).collect();
            deps.insert(module_name(path), (path.to_string(), d));
        }
        let mut out: Vec<String> = Vec::new();
        for n in names {
            let key = n.replace('-', "_");
            if builtin.lines().any(|l| module_name(l) == key) {
                continue;
            }
            let (path, d) = deps.get(&key).ok_or_else(|| {
                TestkitError::Kernel(format!(
                    "module {n} is in neither modules.dep nor modules.builtin of {}",
                    self.release
                ))
            })?;
            // depmod lists dependencies so that loading them from last to
            // first satisfies each before its users.
            for p in d.iter().rev().chain(std::iter::once(path)) {
                if !out.contains(p) {
                    out.push(p.clone());
                }
            }
        }
        if let Some(p) = out.iter().find(|p| !p.ends_with(".ko")) {
            return Err(TestkitError::Kernel(format!(
                "{p} is compressed; the test initramfs loads plain .ko modules"
            )));
        }
        Ok(out)
    }
}

fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = base.split(".ko").next().unwrap_or(base);
    stem.replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_ignore_dirs_suffixes_and_dashes() {
        assert_eq!(
            module_name("kernel/drivers/net/virtio_net.ko"),
            "virtio_net"
        );
        assert_eq!(module_name("kernel/fs/dm-snapshot.ko.xz"), "dm_snapshot");
    }

    #[test]
    fn closure_orders_dependencies_first() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("modules.dep"),
            "k/virtio_net.ko: k/net_failover.ko k/failover.ko k/virtio.ko k/virtio_ring.ko\n\
             k/net_failover.ko: k/failover.ko\nk/failover.ko:\nk/virtio.ko: k/virtio_ring.ko\n\
             k/virtio_ring.ko:\nk/virtio_blk.ko: k/virtio.ko k/virtio_ring.ko\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("modules.builtin"), "k/ext4.ko\n").unwrap();
        let k = Kernel {
            release: "test".into(),
            vmlinuz: "/nonexistent".into(),
            modules: dir.path().into(),
        };
        assert_eq!(
            k.closure(&["virtio_net", "ext4", "virtio-blk"]).unwrap(),
            [
                "k/virtio_ring.ko",
                "k/virtio.ko",
                "k/failover.ko",
                "k/net_failover.ko",
                "k/virtio_net.ko",
                "k/virtio_blk.ko",
            ]
        );
        assert!(k.closure(&["nope"]).is_err());
    }
}
