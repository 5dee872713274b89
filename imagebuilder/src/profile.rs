//! Host and guest image profiles: TOML, unknown keys refused, paths relative
//! to the profile's folder. `profiles/README.md` documents every key.
//!
//! Problems are told as the cluster profile's are (`cluster::typed`): every
//! one with the file, line, column and key, and what would be valid.

use std::path::{Path, PathBuf};

use cluster::typed::{self, Located};
use cluster::{Bytes, Diagnostic, Diagnostics, Source};
use serde::Deserialize;

use crate::error::{Error, Result, io};
use contracts::hash;

/// Where a root file system comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSource {
    /// `mmdebstrap`: a Debian suite, built from the archive.
    Mmdebstrap(Debootstrap),
    /// `host`: binaries of the build machine with their libraries.
    Host(HostRoot),
    /// `tarball`: a root tarball, pinned by sha256.
    Tarball { path: PathBuf, sha256: String },
    /// `directory`: an existing tree (guest profiles only).
    Directory(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Debootstrap {
    pub suite: String,
    pub variant: String,
    pub packages: Vec<String>,
    /// The suite's archive; `None`: the build machine's apt sources
    /// (`image::sources`).
    pub mirror: Option<String>,
    /// The archive of `<suite>-updates` (only with `mirror`).
    pub updates_mirror: Option<String>,
    /// The archive of `<suite>-security` (only with `mirror`).
    pub security_mirror: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoot {
    /// Program names (searched in the build machine's sbin/bin folders) or
    /// absolute paths; a missing one is an error.
    pub binaries: Vec<String>,
    /// Like `binaries`, but skipped when the build machine lacks them.
    pub optional_binaries: Vec<String>,
    /// Further files or folders (absolute paths) copied from the build
    /// machine as they are.
    pub files: Vec<PathBuf>,
    /// Empty folders to create (absolute paths), for daemons' state.
    pub dirs: Vec<PathBuf>,
}

/// SAN transports an initramfs can reach its SAN by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Disk,
    Iscsi,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostProfile {
    /// The profile file, as given.
    pub path: PathBuf,
    /// sha256 of the profile file's bytes.
    pub sha256: String,
    pub name: String,
    pub version: String,
    pub overlays: Vec<PathBuf>,
    /// `image.test_image`: an image for test rigs only (the tiny image);
    /// media and installs of it need an explicit acknowledgement.
    pub test_image: bool,
    /// `image.tools`: vlx executables the root carries in `/usr/sbin`
    /// (such as `vlx-vcd`), taken from the folder of the build's node
    /// agent.
    pub tools: Vec<String>,
    pub rootfs: RootSource,
    /// Free space left in `origin.ext4` beyond the content.
    pub headroom: Bytes,
    /// The Debian kernel package (host and tarball roots), fetched into the
    /// kernel cache; mmdebstrap roots install it and take /boot's kernel.
    pub kernel_package: String,
    /// Which of the kernel's modules a `host` or `tarball` root carries.
    pub root_modules: RootModules,
    pub transports: Vec<Transport>,
    /// Modules added to the initramfs beyond the transports' own.
    pub modules: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestProfile {
    pub path: PathBuf,
    pub sha256: String,
    pub name: String,
    pub distribution: String,
    pub vcpus: u32,
    pub memory: Bytes,
    pub disk: Bytes,
    /// Kernel and initramfs inside the tree (relative); found in /boot when
    /// not set.
    pub kernel: Option<String>,
    pub initramfs: Option<String>,
    pub rootfs: RootSource,
}

// Raw TOML shapes. Every table refuses unknown keys.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    image: RawImage,
    rootfs: RawRoot,
    kernel: RawKernel,
    #[serde(default)]
    initramfs: RawInitramfs,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    name: String,
    version: String,
    #[serde(default)]
    overlays: Vec<PathBuf>,
    #[serde(default)]
    test_image: bool,
    #[serde(default)]
    tools: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKernel {
    package: String,
    root_modules: Option<RootModulesRaw>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RootModulesRaw {
    Word(String),
    List(Vec<String>),
}

/// The kernel modules a root built from `host` or `tarball` gets under
/// `/lib/modules/<release>/` (mmdebstrap roots have the kernel package's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootModules {
    /// Every module of the kernel.
    All,
    /// These, with their dependencies.
    Only(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInitramfs {
    transports: Option<Vec<Transport>>,
    #[serde(default)]
    modules: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoot {
    source: String,
    // mmdebstrap
    suite: Option<String>,
    variant: Option<String>,
    packages: Option<Vec<String>>,
    mirror: Option<String>,
    updates_mirror: Option<String>,
    security_mirror: Option<String>,
    // host
    binaries: Option<Vec<String>>,
    optional_binaries: Option<Vec<String>>,
    files: Option<Vec<PathBuf>>,
    dirs: Option<Vec<PathBuf>>,
    // tarball
    tarball: Option<PathBuf>,
    sha256: Option<String>,
    // directory
    path: Option<PathBuf>,
    // host images
    headroom: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuestFile {
    guest: RawGuest,
    rootfs: RawRoot,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuest {
    name: String,
    distribution: String,
    #[serde(default = "default_vcpus")]
    vcpus: u32,
    #[serde(default = "default_memory")]
    memory: String,
    #[serde(default = "default_disk")]
    disk: String,
    kernel: Option<String>,
    initramfs: Option<String>,
}

fn default_vcpus() -> u32 {
    1
}
fn default_memory() -> String {
    "1GiB".into()
}
fn default_disk() -> String {
    "8GiB".into()
}

/// Default free space in a host image's ext4 root.
pub const DEFAULT_HEADROOM: Bytes = Bytes::mib(64);

fn read(path: &Path) -> Result<(String, String)> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let sha = hash::sha256_bytes(&bytes);
    let text = String::from_utf8(bytes).map_err(|_| Error::Profile {
        path: path.to_owned(),
        message: "not UTF-8 text".into(),
    })?;
    Ok((text, sha))
}

/// The profile's text as a [`Source`] named by its path as given.
fn source(path: &Path, text: &str) -> Source {
    Source::new(path.display().to_string(), text)
}

/// The problems found, or `value` when there are none.
fn done<T>(value: Option<T>, found: Vec<Diagnostic>) -> Result<T> {
    match value {
        Some(v) if found.is_empty() => Ok(v),
        _ => Err(Error::Diagnostics(Diagnostics(found))),
    }
}

/// Keeps the value of `r`, or records its problem.
fn keep<T>(found: &mut Vec<Diagnostic>, r: Result<T, Diagnostic>) -> Option<T> {
    r.map_err(|d| found.push(d)).ok()
}

fn base(path: &Path) -> PathBuf {
    path.parent().map(Path::to_owned).unwrap_or_default()
}

fn size(at: &Located<'_>, key: &str, s: &str) -> Result<Bytes, Diagnostic> {
    s.parse().map_err(|e| {
        at.error(
            key,
            format!("`{s}`: {e}"),
            Some("a size such as \"64MiB\" or \"8GiB\"".into()),
        )
    })
}

/// Resolves `[rootfs]`: the keys set must all belong to the chosen source.
fn root_source(
    path: &Path,
    at: &Located<'_>,
    r: RawRoot,
    allowed: &[&str],
) -> Result<RootSource, Diagnostic> {
    let err = |key: &str, message: String| at.error(&format!("rootfs.{key}"), message, None);
    if !allowed.contains(&r.source.as_str()) {
        return Err(at.error(
            "rootfs.source",
            format!("`{}` is not a source of this profile", r.source),
            Some(format!(
                "use one of: {}",
                allowed
                    .iter()
                    .map(|s| format!("\"{s}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        ));
    }
    let keys_of = |s: &str| -> &'static [&'static str] {
        match s {
            "mmdebstrap" => &[
                "suite",
                "variant",
                "packages",
                "mirror",
                "updates_mirror",
                "security_mirror",
                "headroom",
            ],
            "host" => &["binaries", "optional_binaries", "files", "dirs", "headroom"],
            "tarball" => &["tarball", "sha256", "headroom"],
            _ => &["path"],
        }
    };
    let set: Vec<&str> = [
        ("suite", r.suite.is_some()),
        ("variant", r.variant.is_some()),
        ("packages", r.packages.is_some()),
        ("mirror", r.mirror.is_some()),
        ("updates_mirror", r.updates_mirror.is_some()),
        ("security_mirror", r.security_mirror.is_some()),
        ("binaries", r.binaries.is_some()),
        ("optional_binaries", r.optional_binaries.is_some()),
        ("files", r.files.is_some()),
        ("dirs", r.dirs.is_some()),
        ("tarball", r.tarball.is_some()),
        ("sha256", r.sha256.is_some()),
        ("path", r.path.is_some()),
        ("headroom", r.headroom.is_some()),
    ]
    .into_iter()
    .filter(|(_, on)| *on)
    .map(|(k, _)| k)
    .collect();
    let mut valid: Vec<&str> = keys_of(&r.source).to_vec();
    if !allowed.contains(&"host") {
        valid.retain(|k| *k != "headroom");
    }
    for k in set {
        if !valid.contains(&k) {
            return Err(at.error(
                &format!("rootfs.{k}"),
                format!("not a key of source \"{}\"", r.source),
                Some(format!("its keys: {}", valid.join(", "))),
            ));
        }
    }
    let dir = base(path);
    let need = |v: Option<String>, k: &str| {
        v.ok_or_else(|| err(k, format!("required for source \"{}\"", r.source)))
    };
    Ok(match r.source.as_str() {
        "mmdebstrap" => RootSource::Mmdebstrap(Debootstrap {
            suite: need(r.suite, "suite")?,
            variant: r.variant.unwrap_or_else(|| "minbase".into()),
            packages: r.packages.unwrap_or_default(),
            mirror: r.mirror,
            updates_mirror: r.updates_mirror,
            security_mirror: r.security_mirror,
        }),
        "host" => {
            let files = r.files.unwrap_or_default();
            let dirs = r.dirs.unwrap_or_default();
            for (key, list) in [("files", &files), ("dirs", &dirs)] {
                if let Some(f) = list.iter().find(|f| !f.is_absolute()) {
                    return Err(err(
                        key,
                        format!("`{}` is not an absolute path", f.display()),
                    ));
                }
            }
            RootSource::Host(HostRoot {
                binaries: r.binaries.unwrap_or_default(),
                optional_binaries: r.optional_binaries.unwrap_or_default(),
                files,
                dirs,
            })
        }
        "tarball" => {
            let sha = need(r.sha256, "sha256")?.to_ascii_lowercase();
            if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err(
                    "sha256",
                    format!("`{sha}` is not 64 hexadecimal digits"),
                ));
            }
            RootSource::Tarball {
                path: dir.join(
                    r.tarball
                        .ok_or_else(|| err("tarball", "required for source \"tarball\"".into()))?,
                ),
                sha256: sha,
            }
        }
        _ => RootSource::Directory(
            dir.join(
                r.path
                    .ok_or_else(|| err("path", "required for source \"directory\"".into()))?,
            ),
        ),
    })
}

fn check_name(at: &Located<'_>, key: &str, name: &str) -> Result<(), Diagnostic> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(at.error(
            key,
            format!("`{name}` is not a file name"),
            Some("letters, digits, `-`, `_` or `.`, not starting with `.` (it names files)".into()),
        ))
    }
}

/// An `image.tools` entry: the file name of a vlx executable.
fn check_tool(at: &Located<'_>, name: &str) -> Result<(), Diagnostic> {
    let rest = name.strip_prefix("vlx-").unwrap_or_default();
    if !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Ok(())
    } else {
        Err(at.error(
            "image.tools",
            format!("`{name}` is not the name of a vlx executable"),
            Some("names such as \"vlx-vcd\" or \"vlx-vc\": `vlx-` and lower-case letters, digits or `-`".into()),
        ))
    }
}

impl HostProfile {
    pub fn load(path: &Path) -> Result<HostProfile> {
        let (text, sha256) = read(path)?;
        Self::parse(path, &text, sha256)
    }

    /// Reads a host profile; every problem comes back in one
    /// [`Error::Diagnostics`].
    pub fn parse(path: &Path, text: &str, sha256: String) -> Result<HostProfile> {
        let source = source(path, text);
        let (raw, at): (RawHost, _) = typed::parse(&source)?;
        let mut found = Vec::new();
        keep(&mut found, check_name(&at, "image.name", &raw.image.name));
        for t in &raw.image.tools {
            keep(&mut found, check_tool(&at, t));
        }
        let headroom = match &raw.rootfs.headroom {
            Some(s) => keep(&mut found, size(&at, "rootfs.headroom", s)),
            None => Some(DEFAULT_HEADROOM),
        };
        let rootfs = keep(
            &mut found,
            root_source(path, &at, raw.rootfs, &["mmdebstrap", "host", "tarball"]),
        );
        let mut transports = raw.initramfs.transports.unwrap_or(vec![Transport::Disk]);
        transports.sort();
        transports.dedup();
        let root_modules = match raw.kernel.root_modules {
            None => RootModules::All,
            Some(RootModulesRaw::Word(w)) if w == "all" => RootModules::All,
            Some(RootModulesRaw::Word(w)) => {
                found.push(at.error(
                    "kernel.root_modules",
                    format!("`{w}` is neither \"all\" nor a list of module names"),
                    Some("write \"all\", or a list such as [\"nfsd\"]".into()),
                ));
                RootModules::All
            }
            Some(RootModulesRaw::List(l)) => RootModules::Only(l),
        };
        if matches!(rootfs, Some(RootSource::Mmdebstrap(_))) && root_modules != RootModules::All {
            found.push(at.error(
                "kernel.root_modules",
                "an mmdebstrap root has all of its kernel package's modules",
                Some("leave root_modules out, or set it to \"all\"".into()),
            ));
        }
        let dir = base(path);
        let (Some(rootfs), Some(headroom)) = (rootfs, headroom) else {
            return done(None, found);
        };
        let profile = HostProfile {
            path: path.to_owned(),
            sha256,
            name: raw.image.name,
            version: raw.image.version,
            overlays: raw.image.overlays.iter().map(|o| dir.join(o)).collect(),
            test_image: raw.image.test_image,
            tools: raw.image.tools,
            rootfs,
            headroom,
            kernel_package: raw.kernel.package,
            root_modules,
            transports,
            modules: raw.initramfs.modules,
        };
        done(Some(profile), found)
    }
}

impl GuestProfile {
    pub fn load(path: &Path) -> Result<GuestProfile> {
        let (text, sha256) = read(path)?;
        Self::parse(path, &text, sha256)
    }

    /// Reads a guest profile; every problem comes back in one
    /// [`Error::Diagnostics`].
    pub fn parse(path: &Path, text: &str, sha256: String) -> Result<GuestProfile> {
        let source = source(path, text);
        let (raw, at): (RawGuestFile, _) = typed::parse(&source)?;
        let g = raw.guest;
        let mut found = Vec::new();
        keep(&mut found, check_name(&at, "guest.name", &g.name));
        if g.vcpus == 0 {
            found.push(at.error(
                "guest.vcpus",
                "must be at least 1",
                Some("a count of virtual CPUs, 1 or more".into()),
            ));
        }
        let memory = keep(&mut found, size(&at, "guest.memory", &g.memory));
        let disk = keep(&mut found, size(&at, "guest.disk", &g.disk));
        let rootfs = keep(
            &mut found,
            root_source(
                path,
                &at,
                raw.rootfs,
                &["mmdebstrap", "directory", "tarball"],
            ),
        );
        let (Some(memory), Some(disk), Some(rootfs)) = (memory, disk, rootfs) else {
            return done(None, found);
        };
        let profile = GuestProfile {
            path: path.to_owned(),
            sha256,
            memory,
            disk,
            name: g.name,
            distribution: g.distribution,
            vcpus: g.vcpus,
            kernel: g.kernel,
            initramfs: g.initramfs,
            rootfs,
        };
        done(Some(profile), found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(text: &str) -> Result<HostProfile> {
        HostProfile::parse(Path::new("p/h.toml"), text, String::new())
    }

    const HEAD: &str = "[image]\nname = \"t\"\nversion = \"1\"\noverlays = [\"../o\"]\n[kernel]\npackage = \"linux-image-cloud-amd64\"\n";

    #[test]
    fn host_sources() {
        let p = host(&format!(
            "{HEAD}[rootfs]\nsource = \"host\"\nbinaries = [\"busybox\"]\nheadroom = \"32MiB\"\n"
        ))
        .unwrap();
        assert_eq!(p.headroom, Bytes::mib(32));
        assert_eq!(p.overlays, vec![PathBuf::from("p/../o")]);
        assert_eq!(p.transports, vec![Transport::Disk]);
        assert_eq!(p.root_modules, RootModules::All);
        let p = host(&format!(
            "{HEAD}[rootfs]\nsource = \"tarball\"\ntarball = \"r.tar\"\nsha256 = \"{}\"\n[initramfs]\ntransports = [\"iscsi\", \"disk\"]\n",
            "A".repeat(64)
        ))
        .unwrap();
        assert_eq!(
            p.rootfs,
            RootSource::Tarball {
                path: "p/r.tar".into(),
                sha256: "a".repeat(64)
            }
        );
        assert_eq!(p.transports, vec![Transport::Disk, Transport::Iscsi]);
    }

    #[test]
    fn host_errors_name_the_key() {
        let cases = [
            (
                "[rootfs]\nsource = \"host\"\nsuite = \"x\"\n",
                "rootfs.suite",
            ),
            (
                "[rootfs]\nsource = \"directory\"\npath = \"x\"\n",
                "rootfs.source",
            ),
            (
                "[rootfs]\nsource = \"tarball\"\ntarball = \"x\"\nsha256 = \"12\"\n",
                "rootfs.sha256",
            ),
            ("[rootfs]\nsource = \"mmdebstrap\"\n", "rootfs.suite"),
            (
                "[rootfs]\nsource = \"host\"\nheadroom = \"lots\"\n",
                "rootfs.headroom",
            ),
            ("[rootfs]\nsource = \"host\"\nbogus = 1\n", "bogus"),
        ];
        for (tail, want) in cases {
            let err = host(&format!("{HEAD}{tail}")).unwrap_err().to_string();
            assert!(
                err.contains(want) && err.starts_with("p/h.toml"),
                "{tail}: {err}"
            );
        }
    }

    #[test]
    fn root_modules() {
        let text = |source: &str, modules: &str| {
            format!(
                "[image]\nname = \"t\"\nversion = \"1\"\n[kernel]\npackage = \"k\"\nroot_modules = {modules}\n[rootfs]\n{source}"
            )
        };
        let h = "source = \"host\"\n";
        assert_eq!(
            host(&text(h, "\"all\"")).unwrap().root_modules,
            RootModules::All
        );
        assert_eq!(
            host(&text(h, "[\"nfsd\"]")).unwrap().root_modules,
            RootModules::Only(vec!["nfsd".into()])
        );
        let err = host(&text(h, "\"some\"")).unwrap_err().to_string();
        assert!(err.contains("kernel.root_modules"), "{err}");
        let m = "source = \"mmdebstrap\"\nsuite = \"bookworm\"\n";
        let err = host(&text(m, "[\"nfsd\"]")).unwrap_err().to_string();
        assert!(err.contains("kernel.root_modules"), "{err}");
    }

    #[test]
    fn guest_defaults() {
        let g = GuestProfile::parse(
            Path::new("g.toml"),
            "[guest]\nname = \"deb\"\ndistribution = \"Debian 12\"\n[rootfs]\nsource = \"directory\"\npath = \"tree\"\n",
            String::new(),
        )
        .unwrap();
        assert_eq!(
            (g.vcpus, g.memory, g.disk),
            (1, Bytes::mib(1024), Bytes::mib(8192))
        );
        assert_eq!(g.rootfs, RootSource::Directory("tree".into()));
    }

    #[test]
    fn the_repository_profiles_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles");
        for name in ["tiny", "debian-bookworm"] {
            HostProfile::load(&root.join(format!("hosts/{name}.toml"))).unwrap();
        }
        GuestProfile::load(&root.join("guests/debian-bookworm.toml")).unwrap();
    }
}
