//! The image's bill of materials: `sbom.spdx.json`, an SPDX 2.3 JSON
//! document.
//!
//! - A Debian root (mmdebstrap): every package dpkg's status in the root
//!   lists as installed, with its version, architecture and the license of
//!   its `/usr/share/doc/<package>/copyright` when that file is
//!   machine-readable (DEP-5), else `NOASSERTION`.
//! - A root of the build machine's binaries (`host`): every ELF file of the
//!   root, each under the Debian package of the build machine it came from
//!   (`dpkg -S`), with that package's version and license; the kernel
//!   package's modules under the kernel package; an ELF file no package
//!   owns is listed on its own, with `NOASSERTION`.
//!
//! The document is reproducible: its time is SOURCE_DATE_EPOCH, its
//! namespace derives from the profile's sha256 and the package list, and
//! every list is sorted. [`Sbom`] is plain data; [`Sbom::to_json`] writes
//! it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::error::{Error, Result, io};
use crate::tool;

/// The SBOM's file name in an image directory.
pub const FILE: &str = "sbom.spdx.json";

/// A Debian package of the image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// The declared license as an SPDX expression; `None`: NOASSERTION.
    pub license: Option<String>,
    /// Files of the image (absolute paths in the image) that came from
    /// this package; empty for a Debian root, where dpkg is the record.
    pub files: Vec<ImageFile>,
}

/// A file of the image with the checksums SPDX asks for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ImageFile {
    pub path: String,
    pub sha1: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sbom {
    pub image: String,
    pub version: String,
    pub profile_sha256: String,
    pub source_date_epoch: u64,
    pub packages: Vec<Package>,
    /// ELF files no package of the build machine owns.
    pub unowned: Vec<ImageFile>,
}

impl Sbom {
    /// `name -> version` of every package, for the image manifest.
    pub fn versions(&self) -> BTreeMap<String, String> {
        self.packages
            .iter()
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect()
    }

    /// The SPDX 2.3 JSON document (pretty, final newline).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(&self.spdx()).unwrap_or_default();
        s.push('\n');
        s
    }

    fn spdx(&self) -> Value {
        let mut refs: BTreeMap<String, String> = BTreeMap::new();
        let image_id = "SPDXRef-Image".to_owned();
        let mut packages = vec![json!({
            "SPDXID": image_id,
            "name": self.image,
            "versionInfo": self.version,
            "primaryPackagePurpose": "OPERATING-SYSTEM",
            "downloadLocation": "NOASSERTION",
            // SPDX: a package whose files are not analyzed contains none.
            "filesAnalyzed": !self.unowned.is_empty(),
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
        })];
        let mut files = Vec::new();
        let mut relationships = vec![json!({
            "spdxElementId": "SPDXRef-DOCUMENT",
            "relationshipType": "DESCRIBES",
            "relatedSpdxElement": image_id,
        })];
        let file_json = |f: &ImageFile, license: &str, files: &mut Vec<Value>| -> String {
            let id = format!("SPDXRef-File-{}", spdx_id_part(&f.path));
            files.push(json!({
                "SPDXID": id,
                "fileName": format!(".{}", f.path),
                "checksums": [
                    {"algorithm": "SHA1", "checksumValue": f.sha1},
                    {"algorithm": "SHA256", "checksumValue": f.sha256},
                ],
                "licenseConcluded": "NOASSERTION",
                "licenseInfoInFiles": ["NOASSERTION"],
                "copyrightText": "NOASSERTION",
                "comment": license,
            }));
            id
        };
        for p in &self.packages {
            let id = format!(
                "SPDXRef-Package-{}-{}",
                spdx_id_part(&p.name),
                spdx_id_part(&p.arch)
            );
            for r in p.license.iter().flat_map(|l| license_refs(l)) {
                refs.entry(r.clone()).or_insert_with(|| {
                    format!(
                        "The Debian license name `{}`, as /usr/share/doc/<package>/copyright of the packages naming it states it.",
                        r.trim_start_matches("LicenseRef-")
                    )
                });
            }
            packages.push(json!({
                "SPDXID": id,
                "name": p.name,
                "versionInfo": p.version,
                "supplier": "NOASSERTION",
                "downloadLocation": "NOASSERTION",
                "filesAnalyzed": !p.files.is_empty(),
                "licenseConcluded": "NOASSERTION",
                "licenseDeclared": p.license.as_deref().unwrap_or("NOASSERTION"),
                "copyrightText": "NOASSERTION",
                "externalRefs": [{
                    "referenceCategory": "PACKAGE-MANAGER",
                    "referenceType": "purl",
                    "referenceLocator": purl(p),
                }],
            }));
            relationships.push(json!({
                "spdxElementId": image_id,
                "relationshipType": "CONTAINS",
                "relatedSpdxElement": id,
            }));
            for f in &p.files {
                let fid = file_json(f, &format!("from Debian package {}", p.name), &mut files);
                relationships.push(json!({
                    "spdxElementId": id,
                    "relationshipType": "CONTAINS",
                    "relatedSpdxElement": fid,
                }));
            }
        }
        for f in &self.unowned {
            let fid = file_json(
                f,
                "owned by no Debian package of the build machine",
                &mut files,
            );
            relationships.push(json!({
                "spdxElementId": image_id,
                "relationshipType": "CONTAINS",
                "relatedSpdxElement": fid,
            }));
        }
        let mut doc = json!({
            "spdxVersion": "SPDX-2.3",
            "dataLicense": "CC0-1.0",
            "SPDXID": "SPDXRef-DOCUMENT",
            "name": format!("{} {}", self.image, self.version),
            "documentNamespace": self.namespace(),
            "creationInfo": {
                "created": rfc3339(self.source_date_epoch),
                "creators": [format!("Tool: vlx-image-{}", env!("CARGO_PKG_VERSION"))],
            },
            "documentDescribes": [image_id],
            "packages": packages,
            "relationships": relationships,
        });
        if !files.is_empty() {
            doc["files"] = Value::Array(files);
        }
        if !refs.is_empty() {
            doc["hasExtractedLicensingInfos"] = Value::Array(
                refs.into_iter()
                    .map(|(id, text)| {
                        json!({
                            "licenseId": id,
                            "name": id.trim_start_matches("LicenseRef-"),
                            "extractedText": text,
                        })
                    })
                    .collect(),
            );
        }
        doc
    }

    /// A URN from the profile and the content: the same image, the same
    /// namespace; no host name of anyone's.
    fn namespace(&self) -> String {
        let mut seed = format!(
            "vlx:sbom:{}:{}:{}",
            self.image, self.version, self.profile_sha256
        );
        for p in &self.packages {
            seed.push_str(&format!(":{}={}", p.name, p.version));
        }
        format!(
            "urn:uuid:{}",
            uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, seed.as_bytes())
        )
    }
}

/// `pkg:deb/debian/NAME@VERSION?arch=ARCH`, with the version's `:` and `+`
/// percent-encoded as the purl spec asks.
fn purl(p: &Package) -> String {
    let enc = |s: &str| {
        s.replace('%', "%25")
            .replace(':', "%3A")
            .replace('+', "%2B")
    };
    format!(
        "pkg:deb/debian/{}@{}?arch={}",
        p.name,
        enc(&p.version),
        p.arch
    )
}

/// SPDX ids allow letters, digits, `.` and `-`.
fn spdx_id_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// `YYYY-MM-DDThh:mm:ssZ` of a Unix time (proleptic Gregorian, UTC).
pub fn rfc3339(epoch: u64) -> String {
    let days = epoch / 86_400;
    let secs = epoch % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The `LicenseRef-` ids an expression uses.
fn license_refs(expr: &str) -> Vec<String> {
    expr.split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter(|w| w.starts_with("LicenseRef-"))
        .map(str::to_owned)
        .collect()
}

/// Debian's short license names (DEP-5) that differ from SPDX's.
const DEBIAN_TO_SPDX: &[(&str, &str)] = &[
    ("Expat", "MIT"),
    ("BSD-2-clause", "BSD-2-Clause"),
    ("BSD-3-clause", "BSD-3-Clause"),
    ("BSD-4-clause", "BSD-4-Clause"),
    ("Apache-2.0", "Apache-2.0"),
    ("Apache-2", "Apache-2.0"),
    ("MIT", "MIT"),
    ("ISC", "ISC"),
    ("Zlib", "Zlib"),
    ("MPL-1.1", "MPL-1.1"),
    ("MPL-2.0", "MPL-2.0"),
    ("Artistic", "Artistic-1.0-Perl"),
    ("Artistic-2.0", "Artistic-2.0"),
    ("CC0-1.0", "CC0-1.0"),
    ("CC0", "CC0-1.0"),
    ("OpenSSL", "OpenSSL"),
    ("X11", "X11"),
    ("curl", "curl"),
    ("BSL-1.0", "BSL-1.0"),
    ("PSF-2", "PSF-2.0"),
    ("Unicode-DFS-2016", "Unicode-DFS-2016"),
];

/// One Debian license name as an SPDX id (or a `LicenseRef-`).
fn license_id(name: &str) -> String {
    let name = name.trim();
    if let Some(id) = gnu_license(name) {
        return id;
    }
    if let Some((_, s)) = DEBIAN_TO_SPDX
        .iter()
        .find(|(d, _)| d.eq_ignore_ascii_case(name))
    {
        return (*s).to_owned();
    }
    format!("LicenseRef-{}", spdx_id_part(name))
}

/// The GNU licenses as Debian writes them (`GPL-2`, `GPL-2.0+`,
/// `LGPL-2.1+`, `GFDL-1.3`) in SPDX's form (`GPL-2.0-only`, ...).
fn gnu_license(name: &str) -> Option<String> {
    let (base, later) = match name.strip_suffix('+') {
        Some(b) => (b, true),
        None => (name, false),
    };
    let (family, version) = base.split_once('-')?;
    let family = ["GPL", "LGPL", "AGPL", "GFDL"]
        .into_iter()
        .find(|f| f.eq_ignore_ascii_case(family))?;
    let (major, minor) = match version.split_once('.') {
        Some((a, b)) => (a, b),
        None => (version, "0"),
    };
    if major.is_empty()
        || minor.is_empty()
        || !major
            .bytes()
            .chain(minor.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let version = format!("{major}.{minor}");
    // The versions SPDX lists for each family.
    let known: &[&str] = match family {
        "GPL" => &["1.0", "2.0", "3.0"],
        "LGPL" => &["2.0", "2.1", "3.0"],
        "AGPL" => &["1.0", "3.0"],
        _ => &["1.1", "1.2", "1.3"],
    };
    if !known.contains(&version.as_str()) {
        return None;
    }
    let suffix = if later { "or-later" } else { "only" };
    Some(format!("{family}-{version}-{suffix}"))
}

/// A DEP-5 `License:` short name (`GPL-2+ or Artistic`, `LGPL-2.1+ with
/// OpenSSL exception`) as an SPDX expression: `or`/`and` become `OR`/`AND`,
/// an exception makes the whole term one `LicenseRef-`.
fn license_expr(short: &str) -> String {
    let short = short.trim().trim_end_matches(',');
    let lower = short.to_ascii_lowercase();
    if lower.contains(" with ") {
        return license_id(short);
    }
    let mut out = Vec::new();
    for or_term in split_words(short, "or") {
        let ands: Vec<String> = split_words(&or_term, "and")
            .iter()
            .map(|t| license_id(t.trim_end_matches(',')))
            .collect();
        out.push(if ands.len() > 1 {
            format!("({})", ands.join(" AND "))
        } else {
            ands.concat()
        });
    }
    if out.len() > 1 {
        format!("({})", out.join(" OR "))
    } else {
        out.concat()
    }
}

/// Splits at the word `op` (any case), which stands alone between spaces.
fn split_words(s: &str, op: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    for w in s.split_whitespace() {
        if w.eq_ignore_ascii_case(op) {
            parts.push(String::new());
        } else if let Some(last) = parts.last_mut() {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(w);
        }
    }
    parts.retain(|p| !p.is_empty());
    parts
}

/// The declared license of a DEP-5 copyright file: the distinct `License:`
/// names of its `Files:` stanzas, as one SPDX expression joined with
/// `AND`; `None` when the file is not machine-readable or names none.
pub fn copyright_license(text: &str) -> Option<String> {
    let mut stanzas = text.split("\n\n");
    let header = stanzas.next()?;
    // The DEP-5 format URI ends in copyright-format/1.0/.
    if !header
        .lines()
        .any(|l| l.starts_with("Format:") && l.contains("copyright-format/1.0"))
    {
        return None;
    }
    let mut seen = BTreeSet::new();
    let mut exprs = Vec::new();
    for s in std::iter::once(header).chain(stanzas) {
        let has_files = s.lines().any(|l| l.starts_with("Files:"));
        if !has_files {
            continue;
        }
        if let Some(l) = s
            .lines()
            .find_map(|l| l.strip_prefix("License:"))
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            let e = license_expr(l);
            if seen.insert(e.clone()) {
                exprs.push(e);
            }
        }
    }
    match exprs.len() {
        0 => None,
        1 => exprs.pop(),
        _ => Some(
            exprs
                .iter()
                .map(|e| {
                    if e.contains(' ') && !e.starts_with('(') {
                        format!("({e})")
                    } else {
                        e.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(" AND "),
        ),
    }
}

/// The installed packages of dpkg's `status` text: `(name, version, arch)`.
pub fn dpkg_status(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let field = |k: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_owned())
        };
        let installed = field("Status:").is_some_and(|s| s.ends_with(" installed"));
        if let (true, Some(n), Some(v)) = (installed, field("Package:"), field("Version:")) {
            out.push((n, v, field("Architecture:").unwrap_or_default()));
        }
    }
    out.sort();
    out
}

/// Where `usr/share/doc/<package>/copyright` of the root at `root` is,
/// following a folder link inside `root` the way Debian links the doc
/// folders of a source's binary packages (the file need not exist).
pub fn copyright_path(root: &Path, package: &str) -> PathBuf {
    let mut dir = root.join("usr/share/doc").join(package);
    for _ in 0..8 {
        match fs::read_link(&dir) {
            Ok(t) if t.is_absolute() => dir = root.join(t.strip_prefix("/").unwrap_or(&t)),
            Ok(t) => dir = dir.parent().unwrap_or(root).join(t),
            Err(_) => break,
        }
    }
    dir.join("copyright")
}

/// The declared license of `package`'s copyright file in `root`.
fn doc_license(root: &Path, package: &str) -> Result<Option<String>> {
    let path = copyright_path(root, package);
    match fs::read(&path) {
        Ok(b) => Ok(copyright_license(&String::from_utf8_lossy(&b))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&path)(e)),
    }
}

/// The packages of a Debian root (dpkg's status in `root`).
pub fn debian_root(root: &Path) -> Result<Vec<Package>> {
    let status = root.join("var/lib/dpkg/status");
    let text = fs::read_to_string(&status).map_err(io(&status))?;
    let mut out = Vec::new();
    for (name, version, arch) in dpkg_status(&text) {
        out.push(Package {
            license: doc_license(root, &name)?,
            name,
            version,
            arch,
            files: Vec::new(),
        });
    }
    if out.is_empty() {
        return Err(Error::Other(format!(
            "{}: no installed package",
            status.display()
        )));
    }
    Ok(out)
}

/// Every regular ELF file under `root`, as absolute image paths, sorted.
pub fn elf_files(root: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let dir = root.join(&rel);
        for e in fs::read_dir(&dir).map_err(io(&dir))? {
            let e = e.map_err(io(&dir))?;
            let ft = e.file_type().map_err(io(&dir))?;
            let r = rel.join(e.file_name());
            if ft.is_dir() {
                todo.push(r);
            } else if ft.is_file() && crate::formats::elf::is_elf(&e.path())? {
                out.push(format!("/{}", r.display()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The owners of `paths` on the build machine by `dpkg -S`, trying each
/// path's merged-/usr twin too (`/usr/lib/x` is registered as `/lib/x` by
/// many bookworm packages). Paths no package owns are absent.
pub fn dpkg_owners(paths: &[String]) -> Result<BTreeMap<String, String>> {
    let twin = |p: &str| match p.strip_prefix("/usr") {
        Some(rest) => rest.to_owned(),
        None => format!("/usr{p}"),
    };
    let mut owners = BTreeMap::new();
    for round in 0..2 {
        let ask: Vec<(String, String)> = paths
            .iter()
            .filter(|p| !owners.contains_key(*p))
            .map(|p| (p.clone(), if round == 0 { p.clone() } else { twin(p) }))
            .collect();
        if ask.is_empty() {
            break;
        }
        for chunk in ask.chunks(200) {
            let o = Command::new("dpkg")
                .arg("-S")
                .args(chunk.iter().map(|(_, q)| q))
                .output()
                .map_err(|source| Error::Spawn {
                    program: "dpkg".into(),
                    source,
                })?;
            // dpkg -S exits 1 when some path is in no package; the lines
            // it found are still right.
            if !matches!(o.status.code(), Some(0 | 1)) {
                return Err(Error::Other(format!(
                    "dpkg -S failed ({}): {}",
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                )));
            }
            for line in String::from_utf8_lossy(&o.stdout).lines() {
                // "pkg[:arch][, pkg2]: /path"; diversions start otherwise.
                let Some((pkgs, path)) = line.split_once(": ") else {
                    continue;
                };
                if pkgs.starts_with("diversion by") {
                    continue;
                }
                let pkg = pkgs.split(", ").next().unwrap_or(pkgs).trim();
                if let Some((orig, _)) = chunk.iter().find(|(_, q)| q == path) {
                    owners.insert(orig.clone(), pkg.to_owned());
                }
            }
        }
    }
    Ok(owners)
}

/// `Version` and `Architecture` of installed packages of the build machine.
fn dpkg_versions(packages: &BTreeSet<String>) -> Result<BTreeMap<String, (String, String)>> {
    if packages.is_empty() {
        return Ok(BTreeMap::new());
    }
    let text = tool::stdout(
        Command::new("dpkg-query")
            .args([
                "-W",
                "-f",
                "${binary:Package}\t${Version}\t${Architecture}\n",
            ])
            .args(packages),
        "reading versions of the build machine's packages",
    )?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((
                f.next()?.to_owned(),
                (f.next()?.to_owned(), f.next()?.to_owned()),
            ))
        })
        .collect())
}

/// sha1 and sha256 of a file.
fn checksums(path: &Path) -> Result<(String, String)> {
    let bytes = fs::read(path).map_err(io(path))?;
    let sha1 = sha1_smol::Sha1::from(&bytes).digest().to_string();
    Ok((sha1, crate::hash::sha256_bytes(&bytes)))
}

/// The kernel package `(name, version)` of a cached kernel folder
/// `<cache>/kernels/<package>_<version>/` holding `vmlinuz`.
pub fn kernel_package_of(vmlinuz: &Path) -> Option<(String, String)> {
    let dir = vmlinuz.parent()?.parent()?.file_name()?.to_str()?;
    let (name, version) = dir.split_once('_')?;
    Some((name.to_owned(), version.replace("%3a", ":")))
}

/// The packages of a root built from the build machine's binaries: every
/// ELF file of `root` under its owner; files under `/lib/modules/` and
/// `/usr/lib/modules/` under `kernel` (`name`, `version`) when given.
pub fn host_root(
    root: &Path,
    kernel: Option<(String, String)>,
) -> Result<(Vec<Package>, Vec<ImageFile>)> {
    let elves = elf_files(root)?;
    let (modules, programs): (Vec<String>, Vec<String>) = elves
        .into_iter()
        .partition(|p| p.starts_with("/lib/modules/") || p.starts_with("/usr/lib/modules/"));
    let owners = dpkg_owners(&programs)?;
    let names: BTreeSet<String> = owners.values().cloned().collect();
    let versions = dpkg_versions(&names)?;
    let mut by_pkg: BTreeMap<String, Vec<ImageFile>> = BTreeMap::new();
    let mut unowned = Vec::new();
    let file = |p: &str| -> Result<ImageFile> {
        let (sha1, sha256) = checksums(&root.join(p.trim_start_matches('/')))?;
        Ok(ImageFile {
            path: p.to_owned(),
            sha1,
            sha256,
        })
    };
    for p in &programs {
        match owners.get(p) {
            Some(o) => by_pkg.entry(o.clone()).or_default().push(file(p)?),
            None => unowned.push(file(p)?),
        }
    }
    let mut out = Vec::new();
    for (pkg, files) in by_pkg {
        let (version, arch) = versions
            .get(&pkg)
            .cloned()
            .ok_or_else(|| Error::Other(format!("dpkg-query knows no version of package {pkg}")))?;
        let name = pkg.split(':').next().unwrap_or(&pkg).to_owned();
        out.push(Package {
            license: doc_license(Path::new("/"), &name)?,
            name,
            version,
            arch,
            files,
        });
    }
    if !modules.is_empty() {
        match kernel {
            Some((name, version)) => out.push(Package {
                // Linux is GPL-2.0-only; the cached package has no doc
                // folder of its own to read it from.
                license: Some("GPL-2.0-only".to_owned()),
                name,
                version,
                arch: "amd64".to_owned(),
                files: modules.iter().map(|p| file(p)).collect::<Result<_>>()?,
            }),
            None => {
                for p in &modules {
                    unowned.push(file(p)?);
                }
            }
        }
    }
    out.sort();
    Ok((out, unowned))
}

/// A root of unknown origin without dpkg's records (a tarball): its ELF
/// files, each on its own.
pub fn unowned_only(root: &Path) -> Result<Vec<ImageFile>> {
    elf_files(root)?
        .iter()
        .map(|p| {
            let (sha1, sha256) = checksums(&root.join(p.trim_start_matches('/')))?;
            Ok(ImageFile {
                path: p.clone(),
                sha1,
                sha256,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn licenses_from_dep5() {
        let text = "Format: https://www.example.invalid/doc/packaging-manuals/copyright-format/1.0/\n\
Upstream-Name: x\n\n\
Files: *\nCopyright: 2000 A\nLicense: GPL-2+\n\n\
Files: lib/*\nCopyright: B\nLicense: LGPL-2.1+ or BSD-3-clause\n\n\
Files: debian/*\nLicense: GPL-2+\n\n\
License: GPL-2+\n text\n";
        assert_eq!(
            copyright_license(text).as_deref(),
            Some("GPL-2.0-or-later AND (LGPL-2.1-or-later OR BSD-3-Clause)")
        );
        assert_eq!(copyright_license("This is free software.\n"), None);
        assert_eq!(
            license_expr("GPL-2+ with OpenSSL exception"),
            "LicenseRef-GPL-2--with-OpenSSL-exception"
        );
        assert_eq!(license_expr("public-domain"), "LicenseRef-public-domain");
        for (debian, spdx) in [
            ("GPL-2", "GPL-2.0-only"),
            ("GPL-2.0+", "GPL-2.0-or-later"),
            ("lgpl-2.1+", "LGPL-2.1-or-later"),
            ("GFDL-1.3", "GFDL-1.3-only"),
            ("Expat", "MIT"),
            ("GPL", "LicenseRef-GPL"),
        ] {
            assert_eq!(license_id(debian), spdx, "{debian}");
        }
    }

    #[test]
    fn dpkg_status_keeps_installed_only() {
        let text = "Package: a\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:2.0+b1\n\n\
Package: b\nStatus: deinstall ok config-files\nVersion: 1\n\n\
Package: c\nStatus: install ok installed\nArchitecture: all\nVersion: 3\n";
        assert_eq!(
            dpkg_status(text),
            [
                ("a".into(), "1:2.0+b1".into(), "amd64".into()),
                ("c".into(), "3".into(), "all".into())
            ]
        );
    }

    #[test]
    fn dates_and_purls() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        let p = Package {
            name: "a".into(),
            version: "1:2.0+b1".into(),
            arch: "amd64".into(),
            license: None,
            files: vec![],
        };
        assert_eq!(purl(&p), "pkg:deb/debian/a@1%3A2.0%2Bb1?arch=amd64");
    }

    #[test]
    fn document_is_stable_and_refs_are_defined() {
        let s = Sbom {
            image: "t".into(),
            version: "1".into(),
            profile_sha256: "00".into(),
            source_date_epoch: 1_700_000_000,
            packages: vec![Package {
                name: "a".into(),
                version: "1".into(),
                arch: "amd64".into(),
                license: Some("LicenseRef-public-domain".into()),
                files: vec![ImageFile {
                    path: "/usr/bin/a".into(),
                    sha1: "1".repeat(40),
                    sha256: "2".repeat(64),
                }],
            }],
            unowned: vec![],
        };
        assert_eq!(s.to_json(), s.clone().to_json());
        let v: Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(v["spdxVersion"], "SPDX-2.3");
        assert_eq!(
            v["hasExtractedLicensingInfos"][0]["licenseId"],
            "LicenseRef-public-domain"
        );
        assert_eq!(v["files"][0]["fileName"], "./usr/bin/a");
        assert!(
            v["documentNamespace"]
                .as_str()
                .unwrap()
                .starts_with("urn:uuid:")
        );
    }
}
