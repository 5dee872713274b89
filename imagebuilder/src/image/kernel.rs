//! Kernels: the shared cache of extracted Debian kernel packages, kernels
//! found in a built root, and the module closure an initramfs carries.
//!
//! Cache layout (shared with the rig): `$VLX_CACHE/kernels/<package>_<version>/`
//! holds `boot/vmlinuz-<release>` and `lib/modules/<release>/` (depmod'ed).
//! `$VLX_CACHE` defaults to `$HOME/.cache/vlx`. A folder is complete once it
//! exists under its final name: it is filled under a temporary name and
//! renamed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result, io};
use crate::tool;

/// The guests' and blades' kernel: Debian's cloud kernel (virtio, dm
/// snapshots and iSCSI as modules; boots in seconds under QEMU).
pub const DEFAULT_PACKAGE: &str = "linux-image-cloud-amd64";

/// A kernel image with its modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// `uname -r`.
    pub release: String,
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>`.
    pub modules: PathBuf,
}

/// `$VLX_CACHE`, or `$HOME/.cache/vlx`.
pub fn cache_root() -> PathBuf {
    if let Some(c) = std::env::var_os("VLX_CACHE").filter(|c| !c.is_empty()) {
        return PathBuf::from(c);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/vlx")
}

/// The real kernel package behind `package` (a metapackage such as
/// `linux-image-cloud-amd64` depends on exactly one `linux-image-<release>`,
/// usually pinned with `(= version)`) and its candidate version, from the
/// local apt lists (no network). One `apt-cache show` when the metapackage
/// pins the version, two otherwise.
pub fn resolve_package(package: &str) -> Result<(String, String)> {
    let show = |pkg: &str| -> Result<(Option<String>, String)> {
        let text = tool::stdout(
            Command::new("apt-cache").args(["show", "--no-all-versions", pkg]),
            &format!("looking up kernel package {pkg}"),
        )?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
        };
        let version = field("Version:").ok_or_else(|| {
            Error::Kernel(format!(
                "package {pkg} has no version (run apt-get update?)"
            ))
        })?;
        Ok((field("Depends:"), version))
    };
    let (depends, version) = show(package)?;
    if is_versioned(package) {
        return Ok((package.to_owned(), version));
    }
    let dep = depends
        .unwrap_or_default()
        .split(',')
        .flat_map(|alt| alt.split('|'))
        .map(str::trim)
        .find(|d| d.starts_with("linux-image-") && is_versioned(d))
        .map(str::to_owned)
        .ok_or_else(|| {
            Error::Kernel(format!(
                "package {package} depends on no linux-image-<release> package"
            ))
        })?;
    // "linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)"
    let (name, pinned) = match dep.split_once('(') {
        Some((n, rest)) => (
            n.trim().to_owned(),
            rest.trim_end_matches(')')
                .trim()
                .strip_prefix('=')
                .map(|v| v.trim().to_owned()),
        ),
        None => (dep.clone(), None),
    };
    match pinned {
        Some(v) => Ok((name, v)),
        None => {
            let (_, v) = show(&name)?;
            Ok((name, v))
        }
    }
}

/// A versioned kernel package name holds a release such as `6.1.0-26-…`.
fn is_versioned(pkg: &str) -> bool {
    pkg.strip_prefix("linux-image-")
        .and_then(|r| r.chars().next())
        .is_some_and(|c| c.is_ascii_digit())
}

/// The cached kernel of `package`, fetching and extracting it first when
/// it is not cached: `apt-get download`, `dpkg-deb -x`, `depmod -b`. Once
/// cached, no network is used.
pub fn fetch(package: &str) -> Result<Kernel> {
    fetch_into(&cache_root(), package)
}

/// [`fetch`] with the cache at `cache` instead of `$VLX_CACHE`.
pub fn fetch_into(cache: &Path, package: &str) -> Result<Kernel> {
    let root = cache.join("kernels");
    let resolved = resolve_package(package);
    let (real, version) = match resolved {
        Ok(v) => v,
        Err(e) => {
            // Without apt lists, a cached copy of the package still serves.
            return newest_cached(&root, package).ok_or(e);
        }
    };
    let dir = root.join(format!("{real}_{}", version.replace(':', "%3a")));
    if dir.is_dir() {
        return in_tree(&dir);
    }
    fs::create_dir_all(&root).map_err(io(&root))?;
    let tmp = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(&root)
        .map_err(io(&root))?;
    tool::run(
        Command::new("apt-get")
            .args(["download", &format!("{real}={version}")])
            .current_dir(tmp.path()),
        &format!("downloading {real} {version}"),
    )?;
    let deb = fs::read_dir(tmp.path())
        .map_err(io(tmp.path()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| Error::Kernel(format!("apt-get download {real} left no .deb")))?;
    let tree = tmp.path().join("tree");
    tool::run(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree),
        &format!("extracting {}", deb.display()),
    )?;
    let kernel = in_tree(&tree)?;
    tool::run(
        Command::new("depmod")
            .arg("-b")
            .arg(&tree)
            .arg(&kernel.release),
        &format!("depmod for {}", kernel.release),
    )?;
    fs::remove_file(&deb).map_err(io(&deb))?;
    if let Err(e) = fs::rename(&tree, &dir) {
        // Another build fetched the same kernel meanwhile: theirs serves.
        if !dir.is_dir() {
            return Err(io(&dir)(e));
        }
    }
    in_tree(&dir)
}

/// The newest cached kernel of `package` (for a metapackage, of any
/// `linux-image-*` package), without asking apt or the network.
pub fn cached(package: &str) -> Option<Kernel> {
    newest_cached(&cache_root().join("kernels"), package)
}

/// [`cached`], else [`fetch`]. For callers that need a kernel of the
/// package rather than the archive's newest, such as tests booting QEMU:
/// `apt-cache` alone takes a second or two.
pub fn cached_or_fetch(package: &str) -> Result<Kernel> {
    match cached(package) {
        Some(k) => Ok(k),
        None => fetch(package),
    }
}

fn newest_cached(root: &Path, package: &str) -> Option<Kernel> {
    let prefix = if is_versioned(package) {
        format!("{package}_")
    } else {
        "linux-image-".to_owned()
    };
    let mut dirs: Vec<PathBuf> = fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    dirs.sort_by(|a, b| version_cmp(&a.to_string_lossy(), &b.to_string_lossy()));
    dirs.iter().rev().find_map(|d| in_tree(d).ok())
}

/// The kernel installed in the root (or extracted package) `root`: the
/// newest `boot/vmlinuz-<release>` that has `lib/modules/<release>`.
pub fn in_tree(root: &Path) -> Result<Kernel> {
    let boot = root.join("boot");
    let mut releases: Vec<String> = fs::read_dir(&boot)
        .map_err(io(&boot))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix("vmlinuz-")
                .map(str::to_owned)
        })
        .collect();
    releases.sort_by(|a, b| version_cmp(a, b));
    let release = releases
        .pop()
        .ok_or_else(|| Error::Kernel(format!("no vmlinuz-<release> in {}", boot.display())))?;
    let modules = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|m| root.join(m).join(&release))
        .find(|p| p.is_dir())
        .ok_or_else(|| {
            Error::Kernel(format!(
                "{}: no lib/modules/{release} for boot/vmlinuz-{release}",
                root.display()
            ))
        })?;
    Ok(Kernel {
        vmlinuz: boot.join(format!("vmlinuz-{release}")),
        release,
        modules,
    })
}

/// Orders version strings with numbers compared as numbers.
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn parts(s: &str) -> Vec<Result<u64, String>> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut digits = false;
        for c in s.chars() {
            if !cur.is_empty() && c.is_ascii_digit() != digits {
                out.push(if digits {
                    Ok(cur.parse().unwrap_or(u64::MAX))
                } else {
                    Err(cur.clone())
                });
                cur.clear();
            }
            digits = c.is_ascii_digit();
            cur.push(c);
        }
        if !cur.is_empty() {
            out.push(if digits {
                Ok(cur.parse().unwrap_or(u64::MAX))
            } else {
                Err(cur)
            });
        }
        out
    }
    parts(a).cmp(&parts(b))
}

/// One loadable module of the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Name with underscores (`dm_mod`).
    pub name: String,
    /// Path under `lib/modules/<release>/`, as modules.dep names it
    /// (possibly `.ko.xz` or `.ko.zst`).
    pub path: String,
}

impl Module {
    /// Path in the initramfs: compressed modules are stored decompressed.
    pub fn plain_path(&self) -> String {
        for ext in [".xz", ".zst", ".gz"] {
            if let Some(p) = self.path.strip_suffix(ext) {
                return p.to_owned();
            }
        }
        self.path.clone()
    }
}

/// `modules.dep` and `modules.builtin` of one kernel.
#[derive(Debug, Clone)]
pub struct ModuleIndex {
    pub release: String,
    /// Module name to (path, dependency names).
    deps: BTreeMap<String, (String, Vec<String>)>,
    builtin: BTreeSet<String>,
}

/// Module names compare with `-` and `_` alike; the kernel uses `_`.
pub fn canonical_name(name: &str) -> String {
    name.trim().replace('-', "_")
}

fn name_of(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    canonical_name(stem)
}

impl ModuleIndex {
    pub fn load(kernel: &Kernel) -> Result<ModuleIndex> {
        let dep = kernel.modules.join("modules.dep");
        let text = fs::read_to_string(&dep).map_err(io(&dep))?;
        let mut deps = BTreeMap::new();
        for line in text.lines() {
            let Some((m, rest)) = line.split_once(':') else {
                continue;
            };
            let ds = rest.split_whitespace().map(name_of).collect();
            deps.insert(name_of(m), (m.trim().to_owned(), ds));
        }
        let builtin_path = kernel.modules.join("modules.builtin");
        let builtin = match fs::read_to_string(&builtin_path) {
            Ok(t) => t.lines().map(name_of).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => return Err(io(&builtin_path)(e)),
        };
        Ok(ModuleIndex {
            release: kernel.release.clone(),
            deps,
            builtin,
        })
    }

    /// Every module of the kernel, in path order.
    pub fn all(&self) -> Vec<Module> {
        let mut v: Vec<Module> = self
            .deps
            .iter()
            .map(|(name, (path, _))| Module {
                name: name.clone(),
                path: path.clone(),
            })
            .collect();
        v.sort_by(|a, b| a.path.cmp(&b.path));
        v
    }

    /// Names of the modules `name` depends on (all of them, as modules.dep
    /// lists them).
    pub fn dependencies(&self, name: &str) -> &[String] {
        self.deps
            .get(name)
            .map(|(_, d)| d.as_slice())
            .unwrap_or(&[])
    }

    /// Whether the kernel has `name`, built in or as a module file.
    pub fn has(&self, name: &str) -> bool {
        let n = canonical_name(name);
        self.builtin.contains(&n) || self.deps.contains_key(&n)
    }

    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&canonical_name(name))
    }

    /// The modules `wanted` (name, and who needs it) with their
    /// dependencies, in load order (dependencies first). Built-in modules
    /// are skipped; a module that is neither built in nor in modules.dep is
    /// an error naming it and the kernel release.
    pub fn closure(&self, wanted: &[(String, String)]) -> Result<Vec<Module>> {
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        for (name, by) in wanted {
            let name = canonical_name(name);
            if self.builtin.contains(&name) {
                continue;
            }
            if !self.deps.contains_key(&name) {
                return Err(Error::MissingModule {
                    module: name,
                    release: self.release.clone(),
                    needed_by: by.clone(),
                });
            }
            self.visit(&name, &mut seen, &mut order, 0)?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<Module>,
        depth: usize,
    ) -> Result<()> {
        if seen.contains(name) || depth > 64 {
            return Ok(());
        }
        let (path, deps) = self.deps.get(name).ok_or_else(|| Error::MissingModule {
            module: name.to_owned(),
            release: self.release.clone(),
            needed_by: "modules.dep".into(),
        })?;
        for d in deps {
            self.visit(d, seen, order, depth + 1)?;
        }
        if seen.insert(name.to_owned()) {
            order.push(Module {
                name: name.to_owned(),
                path: path.clone(),
            });
        }
        Ok(())
    }
}

/// Files of `lib/modules/<release>/` that depmod does not make but reads.
const MODULE_INFO: &[&str] = &[
    "modules.builtin",
    "modules.builtin.modinfo",
    "modules.order",
];

/// Puts `kernel`'s modules (all, or the listed ones with their
/// dependencies) into the root at `root` under `/lib/modules/<release>/`
/// (through the root's own links, such as `lib -> usr/lib`, kept inside
/// the root), decompressed, files 0644 and folders 0755, with `depmod`'s
/// indexes so that `modprobe` there finds them by name and alias. Returns
/// how many.
///
/// The root may come from a tarball nobody here wrote, so neither these
/// writes nor `depmod` go through its paths: the release folder is built
/// and indexed in a folder of our own beside the root, then renamed into
/// the root's `lib/modules`, found beneath the root by handle. A release
/// folder the root already had is replaced (its links removed, never
/// followed).
pub fn install_in_root(
    root: &Path,
    kernel: &Kernel,
    which: &crate::profile::RootModules,
) -> Result<usize> {
    use std::os::unix::fs::PermissionsExt;
    let index = ModuleIndex::load(kernel)?;
    let modules = match which {
        crate::profile::RootModules::All => index.all(),
        crate::profile::RootModules::Only(list) => index.closure(
            &list
                .iter()
                .map(|m| (m.clone(), "kernel.root_modules of the profile".to_owned()))
                .collect::<Vec<_>>(),
        )?,
    };
    let beside = root.parent().unwrap_or(Path::new("."));
    let stage = tempfile::Builder::new()
        .prefix(".modules-")
        .tempdir_in(beside)
        .map_err(io(beside))?;
    let dest = stage.path().join("lib/modules").join(&kernel.release);
    let mkdir = |d: &Path| -> Result<()> {
        if d.is_dir() {
            return Ok(());
        }
        fs::create_dir_all(d).map_err(io(d))?;
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).map_err(io(d))
    };
    let write = |to: &Path, bytes: &[u8]| -> Result<()> {
        let mut parents = Vec::new();
        let mut p = to.parent();
        while let Some(d) = p.filter(|d| !d.is_dir()) {
            parents.push(d.to_owned());
            p = d.parent();
        }
        for d in parents.iter().rev() {
            mkdir(d)?;
        }
        fs::write(to, bytes).map_err(io(to))?;
        fs::set_permissions(to, fs::Permissions::from_mode(0o644)).map_err(io(to))
    };
    mkdir(&dest)?;
    for m in &modules {
        write(&dest.join(m.plain_path()), &module_bytes(kernel, m)?)?;
    }
    for f in MODULE_INFO {
        let from = kernel.modules.join(f);
        if from.is_file() {
            write(&dest.join(f), &fs::read(&from).map_err(io(&from))?)?;
        }
    }
    tool::run(
        Command::new("depmod")
            .arg("-b")
            .arg(stage.path())
            .arg(&kernel.release),
        &format!("depmod for {}", kernel.release),
    )?;
    let r = beneath::Root::open(root)?;
    let into = r.create_dirs(Path::new("lib/modules"), beneath::Links::InRoot, 0o755)?;
    let release = std::ffi::OsStr::new(&kernel.release);
    if into.stat(release)?.is_some() {
        into.remove_dir_all(release)?;
    }
    let from = beneath::Root::open(&stage.path().join("lib/modules"))?;
    into.rename_from(from.as_dir(), release, release)?;
    Ok(modules.len())
}

/// The module's bytes, decompressed when its file is `.ko.xz`/`.ko.zst`.
pub fn module_bytes(kernel: &Kernel, m: &Module) -> Result<Vec<u8>> {
    let src = kernel.modules.join(&m.path);
    let tool = if m.path.ends_with(".xz") {
        Some("xz")
    } else if m.path.ends_with(".zst") {
        Some("zstd")
    } else if m.path.ends_with(".gz") {
        Some("gzip")
    } else {
        None
    };
    match tool {
        None => fs::read(&src).map_err(io(&src)),
        Some(t) => Ok(tool::run(
            Command::new(t).args(["-d", "-c"]).arg(&src),
            &format!("decompressing {}", src.display()),
        )?
        .stdout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_kernel(dir: &Path) -> Kernel {
        let m = dir.join("lib/modules/6.1.0-9-test");
        fs::create_dir_all(m.join("kernel")).unwrap();
        fs::create_dir_all(dir.join("boot")).unwrap();
        fs::write(dir.join("boot/vmlinuz-6.1.0-9-test"), b"k").unwrap();
        fs::write(
            m.join("modules.dep"),
            "kernel/net/virtio_net.ko: kernel/net/net_failover.ko kernel/net/failover.ko\n\
             kernel/net/net_failover.ko: kernel/net/failover.ko\n\
             kernel/net/failover.ko:\n\
             kernel/dm/dm-snapshot.ko.xz: kernel/dm/dm-bufio.ko kernel/dm/dm-mod.ko\n\
             kernel/dm/dm-bufio.ko:\n\
             kernel/dm/dm-mod.ko:\n",
        )
        .unwrap();
        fs::write(m.join("modules.builtin"), "kernel/fs/ext4/ext4.ko\n").unwrap();
        in_tree(dir).unwrap()
    }

    #[test]
    fn closure_orders_dependencies_first_and_skips_builtins() {
        let d = tempfile::tempdir().unwrap();
        let k = fake_kernel(d.path());
        assert_eq!(k.release, "6.1.0-9-test");
        let idx = ModuleIndex::load(&k).unwrap();
        let want = |n: &str| (n.to_owned(), "test".to_owned());
        let mods = idx
            .closure(&[want("virtio_net"), want("ext4"), want("dm-snapshot")])
            .unwrap();
        let names: Vec<&str> = mods.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "failover",
                "net_failover",
                "virtio_net",
                "dm_bufio",
                "dm_mod",
                "dm_snapshot"
            ]
        );
        assert_eq!(mods[5].plain_path(), "kernel/dm/dm-snapshot.ko");
        let err = idx.closure(&[want("e1000")]).unwrap_err().to_string();
        assert!(
            err.contains("e1000") && err.contains("6.1.0-9-test"),
            "{err}"
        );
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(version_cmp("6.1.0-10-cloud", "6.1.0-9-cloud").is_gt());
        assert!(is_versioned("linux-image-6.1.0-26-cloud-amd64"));
        assert!(!is_versioned("linux-image-cloud-amd64"));
    }
}
