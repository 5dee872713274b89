//! `LICENSES/` on install media: the copyright file of every Debian
//! package whose files the media ship, the license texts those files refer
//! to, an index, and a written offer of the source code.
//!
//! | path | what |
//! |---|---|
//! | `LICENSES/README` | every shipped package: version, architecture, license, where on the media, its source package |
//! | `LICENSES/SOURCE-OFFER` | the written source offer: the Debian source packages, at their exact versions |
//! | `LICENSES/<package>/copyright` | the package's `/usr/share/doc/<package>/copyright` as Debian ships it |
//! | `LICENSES/common-licenses/<name>` | every `/usr/share/common-licenses/<name>` a copyright file refers to (the GPL's text, ...) |
//!
//! What ships: the packages of the host image (its SBOM), the packages of
//! the build machine whose files are in the installer environment (busybox,
//! e2fsprogs, mtools, syslinux, OpenSSH's ssh-keygen, glibc, ...) and the
//! boot loaders on the media and in the environment (systemd-boot,
//! syslinux, isolinux, iPXE). The media use no GRUB, so none is shipped.
//!
//! Where a copyright file is read: for an image package, from the image's
//! root (`origin.ext4`, read with debugfs), else from the kernel cache
//! (a kernel package the root does not record), else from the build
//! machine (a root of the build machine's binaries); for the environment
//! and the loaders, from the build machine. A package whose copyright file
//! is found nowhere fails the build, naming it: media must not ship
//! without their notices.
//!
//! Pure in its output: the same inputs give the same bytes (every list is
//! sorted, no time is written).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result, io};
use crate::image::kernel;
use crate::image::sbom;
use crate::image::tree::{Content, Node, Tree};
use crate::tool;

/// The folder on the media.
pub const DIR: &str = "LICENSES";

/// Where a shipped package's files are on the media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    /// The host image (`image/`).
    Image,
    /// The installer environment (`installer.img`).
    Installer,
    /// The boot loaders of the media (ESP, `isolinux/`, the MBR).
    Boot,
}

impl Part {
    fn word(self) -> &'static str {
        match self {
            Part::Image => "image",
            Part::Installer => "installer",
            Part::Boot => "boot",
        }
    }
}

/// A Debian package whose files the media ship.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipped {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// The source package and its version: what the source offer names.
    pub source: String,
    pub source_version: String,
    /// Further sources built into the package (its `Built-Using`: the C
    /// library of a static busybox, ...), `(source, version)`: the offer
    /// names them too.
    pub built_using: Vec<(String, String)>,
    /// The declared license (SPDX), `None` when nothing declares one.
    pub license: Option<String>,
    /// The copyright file to copy.
    pub copyright: PathBuf,
    pub parts: BTreeSet<Part>,
}

/// What the media ship besides the Debian packages' files: the installer.
#[derive(Debug, Clone)]
pub struct Own {
    pub name: String,
    pub version: String,
    pub license: String,
}

/// The installer binary, as this workspace licenses it.
pub fn own() -> Own {
    Own {
        name: "vlx-install".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        license: env!("CARGO_PKG_LICENSE").into(),
    }
}

/// The build machine's files the media ship: every host file of the
/// installer environment's tree but the kernel's modules (the image's
/// kernel package) and the installer itself, plus `boot` (loaders read
/// straight into the images).
pub fn host_files(env: &Tree, modules_dir: &Path, installer: &Path) -> Vec<PathBuf> {
    let mut out: BTreeSet<PathBuf> = BTreeSet::new();
    for (_, e) in env.iter() {
        if let Node::File(Content::Host(p)) = &e.node {
            if p.starts_with(modules_dir) || p == installer {
                continue;
            }
            out.insert(p.clone());
        }
    }
    out.into_iter().collect()
}

/// The image's root, as far as licenses need it: `usr/share/doc`,
/// `usr/share/common-licenses` and `var/lib/dpkg` dumped out of
/// `origin.ext4` into `staging/root` (absent in a root of the build
/// machine's binaries, which has no doc folders).
fn dump_root(image_dir: &Path, staging: &Path) -> Result<PathBuf> {
    let origin = image_dir.join("origin.ext4");
    let root = staging.join("root");
    for dir in ["usr/share/doc", "usr/share/common-licenses", "var/lib/dpkg"] {
        let to = root.join(dir);
        let parent = to.parent().unwrap_or(&root);
        fs::create_dir_all(parent).map_err(io(parent))?;
        // debugfs says on stderr when a folder is not there and exits 0
        // either way: the files read below are the check.
        tool::run(
            Command::new("debugfs")
                .arg("-R")
                .arg(format!("rdump /{dir} {}", parent.display()))
                .arg(&origin),
            &format!("reading /{dir} out of {}", origin.display()),
        )?;
    }
    Ok(root)
}

/// An image package as its SBOM lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    name: String,
    version: String,
    arch: String,
    license: Option<String>,
}

/// The Debian packages of an image's `sbom.spdx.json` (not the image's own
/// entry, not the files).
fn sbom_packages(path: &Path) -> Result<Vec<Listed>> {
    let text = fs::read_to_string(path).map_err(io(path))?;
    let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Verify {
        path: path.to_owned(),
        message: format!("is not JSON: {e}"),
    })?;
    let bad = |what: &str| Error::Verify {
        path: path.to_owned(),
        message: format!("is not the SPDX document vlx-image writes: {what}"),
    };
    let mut out = Vec::new();
    for p in doc["packages"]
        .as_array()
        .ok_or_else(|| bad("no packages"))?
    {
        if p["SPDXID"] == "SPDXRef-Image" {
            continue;
        }
        let s = |k: &str| p[k].as_str().map(str::to_owned);
        let name = s("name").ok_or_else(|| bad("a package without a name"))?;
        let version = s("versionInfo").ok_or_else(|| bad("a package without a version"))?;
        let arch = p["externalRefs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["referenceLocator"].as_str())
            .find_map(|l| l.split_once("?arch=").map(|(_, a)| a.to_owned()))
            .unwrap_or_default();
        let license = s("licenseDeclared").filter(|l| l != "NOASSERTION");
        out.push(Listed {
            name,
            version,
            arch,
            license,
        });
    }
    Ok(out)
}

/// Fields of installed packages by name, from `dpkg-query` (the build
/// machine's database, or the one at `admindir`): version, architecture,
/// source package, source version, `Built-Using`.
fn dpkg_fields(
    admindir: Option<&Path>,
    names: &BTreeSet<String>,
) -> Result<BTreeMap<String, [String; 5]>> {
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut cmd = Command::new("dpkg-query");
    if let Some(a) = admindir {
        cmd.arg(format!("--admindir={}", a.display()));
    }
    cmd.args([
        "-W",
        "-f",
        "${Package}\t${Version}\t${Architecture}\t${source:Package}\t${source:Version}\t${Built-Using}\n",
    ]);
    // dpkg-query exits 1 when a name is not installed: ask for all and
    // keep those wanted.
    let text = tool::stdout(&mut cmd, "reading the versions and sources of packages")?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let [n, v, a, s, sv, bu] = f.as_slice() else {
                return None;
            };
            names
                .contains(*n)
                .then(|| ((*n).to_owned(), [v, a, s, sv, bu].map(|x| (*x).to_owned())))
        })
        .collect())
}

/// The copyright file of a kernel package kept in the kernel cache
/// (`kernels/<package>_<version>/usr/share/doc/<package>/copyright`).
fn cached_kernel_copyright(name: &str, version: &str) -> Option<PathBuf> {
    let dir = kernel::cache_root()
        .join("kernels")
        .join(format!("{name}_{}", version.replace(':', "%3a")));
    let p = dir.join("usr/share/doc").join(name).join("copyright");
    p.is_file().then_some(p)
}

/// Everything the media ship, by package name.
pub fn shipped(image_dir: &Path, host: &[PathBuf], staging: &Path) -> Result<Vec<Shipped>> {
    let root = dump_root(image_dir, staging)?;
    let root_dpkg = root.join("var/lib/dpkg");
    let root_has_dpkg = root_dpkg.join("status").is_file();

    let listed = sbom_packages(&image_dir.join(sbom::FILE))?;
    let names: BTreeSet<String> = listed.iter().map(|l| l.name.clone()).collect();
    let in_root = if root_has_dpkg {
        dpkg_fields(Some(&root_dpkg), &names)?
    } else {
        BTreeMap::new()
    };

    // The build machine's packages: those the environment and loaders
    // come from, and the image's when its root is the build machine's.
    let wanted: Vec<String> = host.iter().map(|p| p.display().to_string()).collect();
    let owners = sbom::dpkg_owners(&wanted)?;
    let unowned: Vec<&String> = wanted.iter().filter(|p| !owners.contains_key(*p)).collect();
    if !unowned.is_empty() {
        return Err(Error::Other(format!(
            "licenses: no Debian package of the build machine owns {} (the media ship them, so their license must be known)",
            unowned
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut host_names: BTreeSet<String> = owners
        .values()
        .map(|o| o.split(':').next().unwrap_or(o).to_owned())
        .collect();
    if !root_has_dpkg {
        host_names.extend(names.iter().cloned());
    }
    let on_host = dpkg_fields(None, &host_names)?;

    // By name and version: the build machine's copy of a package may be
    // another version than the image's (both are shipped, both offered).
    let mut out: BTreeMap<(String, String), Shipped> = BTreeMap::new();
    let mut missing = Vec::new();
    for l in &listed {
        let fields = in_root.get(&l.name).or_else(|| on_host.get(&l.name));
        let built_using = fields.map(|f| built_using(&f[4])).unwrap_or_default();
        let (source, source_version) = match fields {
            Some([_, _, s, sv, _]) => (s.clone(), sv.clone()),
            // A cached kernel package, which no database records: Debian
            // builds every linux-image package from the source `linux`
            // (the signed ones copy those binaries).
            None if l.name.starts_with("linux-image-") => ("linux".into(), l.version.clone()),
            None => (l.name.clone(), l.version.clone()),
        };
        let copyright = [
            Some(sbom::copyright_path(&root, &l.name)).filter(|p| p.is_file()),
            cached_kernel_copyright(&l.name, &l.version),
            (!root_has_dpkg)
                .then(|| sbom::copyright_path(Path::new("/"), &l.name))
                .filter(|p| p.is_file()),
        ]
        .into_iter()
        .flatten()
        .next();
        let Some(copyright) = copyright else {
            missing.push(format!("{} {} (image)", l.name, l.version));
            continue;
        };
        out.insert(
            (l.name.clone(), l.version.clone()),
            Shipped {
                name: l.name.clone(),
                version: l.version.clone(),
                arch: l.arch.clone(),
                source,
                source_version,
                built_using,
                license: l.license.clone(),
                copyright,
                parts: BTreeSet::from([Part::Image]),
            },
        );
    }
    let loaders = boot_loader_paths();
    for (path, owner) in &owners {
        let name = owner.split(':').next().unwrap_or(owner).to_owned();
        let part = if loaders.iter().any(|l| l.as_os_str() == path.as_str()) {
            Part::Boot
        } else {
            Part::Installer
        };
        let Some([version, arch, source, source_version, using]) = on_host.get(&name) else {
            return Err(Error::Other(format!(
                "licenses: dpkg-query knows no version of package {name} (owner of {path})"
            )));
        };
        if let Some(s) = out.get_mut(&(name.clone(), version.clone())) {
            s.parts.insert(part);
            continue;
        }
        let copyright = sbom::copyright_path(Path::new("/"), &name);
        if !copyright.is_file() {
            missing.push(format!("{name} {version} (build machine)"));
            continue;
        }
        let text = fs::read(&copyright).map_err(io(&copyright))?;
        out.insert(
            (name.clone(), version.clone()),
            Shipped {
                name,
                version: version.clone(),
                arch: arch.clone(),
                source: source.clone(),
                source_version: source_version.clone(),
                built_using: built_using(using),
                license: sbom::copyright_license(&String::from_utf8_lossy(&text)),
                copyright,
                parts: BTreeSet::from([part]),
            },
        );
    }
    if !missing.is_empty() {
        missing.sort();
        missing.dedup();
        return Err(Error::Other(format!(
            "licenses: no copyright file (/usr/share/doc/PACKAGE/copyright) for {}; media must carry the notices of what they ship",
            missing.join(", ")
        )));
    }
    Ok(out.into_values().collect())
}

/// `Built-Using: glibc (= 2.36-9), gcc-12 (= 12.2.0-14)` as pairs.
pub fn built_using(field: &str) -> Vec<(String, String)> {
    field
        .split(',')
        .filter_map(|t| {
            let (name, rest) = t.trim().split_once(' ')?;
            let version = rest.trim().strip_prefix("(=")?.strip_suffix(')')?.trim();
            Some((name.to_owned(), version.to_owned()))
        })
        .collect()
}

/// The boot loaders: those of the media's images and those the installer
/// lays on the SAN.
pub fn boot_loader_paths() -> Vec<PathBuf> {
    let a = bootfs::Assets::default();
    let mut v = vec![
        a.systemd_boot,
        a.syslinux,
        a.gptmbr,
        a.pxelinux,
        a.ldlinux_c32,
        a.undionly,
        a.snponly,
        PathBuf::from(super::ISOLINUX_BIN),
        PathBuf::from(super::ISOHDPFX_BIN),
        PathBuf::from(super::LDLINUX_C32),
    ];
    v.sort();
    v.dedup();
    v
}

/// The `/usr/share/common-licenses/<name>` a copyright text refers to.
pub fn common_licenses(text: &str) -> BTreeSet<String> {
    const AT: &str = "/usr/share/common-licenses/";
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find(AT) {
        rest = &rest[i + AT.len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '+' | '_'))
            .collect();
        // A sentence may end right after the name.
        let name = name.trim_end_matches('.').to_owned();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

/// The files of `LICENSES/`, by path on the media, sorted.
pub fn files(image_dir: &Path, host: &[PathBuf], staging: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let shipped = shipped(image_dir, host, staging)?;
    let root = staging.join("root");
    let mut out: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut common = BTreeSet::new();
    for s in &shipped {
        let at = format!("{DIR}/{}/copyright", s.name);
        if out.contains_key(&at) {
            // Another version of the same package: its notice is there.
            continue;
        }
        let text = fs::read(&s.copyright).map_err(io(&s.copyright))?;
        common.extend(common_licenses(&String::from_utf8_lossy(&text)));
        out.insert(at, text);
    }
    // Some copyright files name a text Debian does not keep there (such
    // as GFDL-1.1); the README lists those.
    let mut absent = BTreeSet::new();
    let mut kept = BTreeSet::new();
    for name in common {
        let found = [
            root.join("usr/share/common-licenses").join(&name),
            Path::new("/usr/share/common-licenses").join(&name),
        ]
        .into_iter()
        .find(|p| p.is_file());
        match found {
            Some(p) => {
                out.insert(
                    format!("{DIR}/common-licenses/{name}"),
                    fs::read(&p).map_err(io(&p))?,
                );
                kept.insert(name);
            }
            None => {
                absent.insert(name);
            }
        }
    }
    out.insert(
        format!("{DIR}/README"),
        readme(&shipped, &own(), &kept, &absent).into_bytes(),
    );
    out.insert(
        format!("{DIR}/SOURCE-OFFER"),
        source_offer(&shipped).into_bytes(),
    );
    Ok(out.into_iter().collect())
}

/// The index: a table of every shipped package.
pub fn readme(
    shipped: &[Shipped],
    own: &Own,
    common: &BTreeSet<String>,
    absent: &BTreeSet<String>,
) -> String {
    let mut s = String::from(
        "Licenses of what these install media ship\n\
         \n\
         These media carry software of others, each under its own license. For\n\
         every Debian package whose files are on the media, LICENSES/<package>/copyright\n\
         is that package's /usr/share/doc/<package>/copyright as Debian ships it; the\n\
         license texts those files refer to (/usr/share/common-licenses/<name>) are in\n\
         LICENSES/common-licenses/. SOURCE-OFFER says how to obtain the source code.\n\
         The image's bill of materials is image/sbom.spdx.json (SPDX 2.3).\n\
         \n\
         Where: image = the host image (image/), installer = the installer\n\
         environment (installer.img), boot = the boot loaders of the media and\n\
         those the installer lays on the SAN (systemd-boot, syslinux, isolinux,\n\
         iPXE). The license is the SPDX form of the copyright file's License\n\
         fields; the copyright file is what counts.\n\
         \n",
    );
    for p in shipped {
        s.push_str(&format!(
            "{} {} ({}), in: {}\n  source package: {} {}\n  license: {}\n",
            p.name,
            p.version,
            p.arch,
            p.parts
                .iter()
                .map(|x| x.word())
                .collect::<Vec<_>>()
                .join(", "),
            p.source,
            p.source_version,
            p.license
                .as_deref()
                .unwrap_or("not machine-readable: see its copyright file"),
        ));
    }
    s.push_str(&format!(
        "\n{} {} (the installer, in installer.img) is vlx's own, under {}.\n",
        own.name, own.version, own.license
    ));
    if !common.is_empty() {
        s.push_str(&format!(
            "\nLicense texts in LICENSES/common-licenses/: {}.\n",
            common.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    if !absent.is_empty() {
        s.push_str(&format!(
            "Named by a copyright file but not among Debian's common licenses (the\n\
             copyright file holds or names the text): {}.\n",
            absent.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    s
}

/// The written offer of the source code.
pub fn source_offer(shipped: &[Shipped]) -> String {
    let mut sources: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for p in shipped {
        sources
            .entry((p.source.clone(), p.source_version.clone()))
            .or_default()
            .insert(format!("{} {}", p.name, p.version));
        for (s, v) in &p.built_using {
            sources
                .entry((s.clone(), v.clone()))
                .or_default()
                .insert(format!("{} {} (built with it)", p.name, p.version));
        }
    }
    let mut s = String::from(
        "Written offer for source code\n\
         \n\
         The programs on these media are Debian binary packages. Many of them are\n\
         under the GNU General Public License (GPL), the GNU Lesser General Public\n\
         License (LGPL) or other licenses that ask for the complete corresponding\n\
         source code to be available to whoever receives the binaries.\n\
         \n\
         For at least three years from the date these media were distributed, whoever\n\
         distributed them to you offers to give any third party, for a charge no more\n\
         than the cost of physically performing source distribution, a complete\n\
         machine-readable copy of the corresponding source code, on a medium\n\
         customarily used for software interchange.\n\
         \n\
         The corresponding source code is exactly the Debian source packages listed\n\
         below, each at the version listed: a source package is its .dsc file and the\n\
         tarballs it names, as `apt-get source PACKAGE=VERSION` fetches it from a Debian\n\
         archive or from an archive of past Debian releases that keeps every version.\n\
         \n\
         source package and version, then the binary packages on these media built\n\
         from it (or with it: Debian's Built-Using, such as the C library inside a\n\
         static program):\n\
         \n",
    );
    for ((src, ver), bins) in &sources {
        s.push_str(&format!("{src} {ver}\n"));
        for b in bins {
            s.push_str(&format!("    {b}\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_license_references() {
        let t = "On Debian systems, see /usr/share/common-licenses/GPL-2.\n\
                 and `/usr/share/common-licenses/LGPL-2.1' and\n\
                 /usr/share/common-licenses/Apache-2.0 too.";
        assert_eq!(
            common_licenses(t).into_iter().collect::<Vec<_>>(),
            ["Apache-2.0", "GPL-2", "LGPL-2.1"]
        );
    }

    #[test]
    fn offer_names_source_packages_with_their_binaries() {
        let p = |name: &str, version: &str, source: &str, sv: &str| Shipped {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            source: source.into(),
            source_version: sv.into(),
            built_using: built_using(if name == "busybox-static" {
                "glibc (= 2.36-9+deb12u14)"
            } else {
                ""
            }),
            license: Some("GPL-2.0-only".into()),
            copyright: PathBuf::from("/nonexistent"),
            parts: BTreeSet::from([Part::Installer]),
        };
        let shipped = [
            p("e2fsprogs", "1.47.0-2", "e2fsprogs", "1.47.0-2"),
            p("libext2fs2", "1.47.0-2", "e2fsprogs", "1.47.0-2"),
            p("busybox-static", "1:1.35.0-4+b3", "busybox", "1:1.35.0-4"),
        ];
        let o = source_offer(&shipped);
        assert!(
            o.contains("busybox 1:1.35.0-4\n    busybox-static 1:1.35.0-4+b3\n"),
            "{o}"
        );
        assert!(
            o.contains("glibc 2.36-9+deb12u14\n    busybox-static 1:1.35.0-4+b3 (built with it)\n"),
            "{o}"
        );
        assert!(
            o.contains("e2fsprogs 1.47.0-2\n    e2fsprogs 1.47.0-2\n    libext2fs2 1.47.0-2\n"),
            "{o}"
        );
        let r = readme(&shipped, &own(), &BTreeSet::new(), &BTreeSet::new());
        assert!(r.contains("busybox-static"), "{r}");
        assert!(r.contains("vlx-install"), "{r}");
    }
}
