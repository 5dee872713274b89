//! The payload of install media: the host image, the guest tarballs, the
//! cluster profiles with everything they name (host profile, overlays),
//! and `vlx-media.json` describing all of it.
//!
//! | path | what |
//! |---|---|
//! | `vlx-media.json` | the manifest ([`super::manifest`]) |
//! | `image/` | the image directory: `origin.ext4`, `vmlinuz`, `initramfs.img`, `manifest.json` |
//! | `guests/<name>/` | `guest.toml` and its tarball |
//! | `config/...` | the cluster profiles, the host profiles they name and their overlay folders, at their paths relative to the folder that holds them all, so that the profiles' relative paths still hold |
//! | `LICENSES/...` | the license texts and the source offer ([`super::licenses`]) |
//! | `iscsi-chap` | unattended media for an iSCSI target whose profile names `unattended.chap`: the installer's CHAP file (`contracts::media::CHAP_FILE`) |
//!
//! Collecting reads the big files' sizes and trusts the sha256 their own
//! manifests record; [`verify`] hashes them (the build runs it while the
//! images are written, and fails if any differs). Small files are hashed
//! here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::profile::MediaProfile;
use crate::error::{Error, Result, io};
use crate::formats::iso::{IsoTree, Source};
use crate::image::guest::{self, GuestMeta};
use contracts::hash;
use contracts::image::Manifest;
use contracts::media::{self as manifest, ImageRef, MediaManifest, Named, PayloadFile};

/// Files of the image directory the installer needs.
pub const IMAGE_FILES: &[&str] = &contracts::image::ARTIFACTS;

/// A big file whose sha256 is taken on trust until [`verify`] checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub source: PathBuf,
    pub size: u64,
    pub sha256: String,
    /// Whose record it is, for the error: `image out/tiny (manifest.json)`.
    pub recorded_in: String,
}

#[derive(Debug, Clone)]
pub struct Payload {
    pub tree: IsoTree,
    pub manifest: MediaManifest,
    /// `vlx-media.json` as written.
    pub manifest_json: String,
    /// Its sha256: the `vlx.media=` of the boot entries.
    pub manifest_sha256: String,
    pub checks: Vec<Check>,
    /// The image directory's kernel.
    pub vmlinuz: PathBuf,
    pub image: Manifest,
    /// Bytes of every payload file.
    pub bytes: u64,
}

/// Collects the payload of `profile` from the image directory and guest
/// folders, with `more` files (by payload path) besides.
pub fn collect(
    profile: &MediaProfile,
    image_dir: &Path,
    guest_dirs: &[PathBuf],
    epoch: u64,
    more: &[(String, Vec<u8>)],
) -> Result<Payload> {
    let mut files: BTreeMap<String, (Source, u64, String)> = BTreeMap::new();
    let mut checks = Vec::new();
    let add_bytes =
        |files: &mut BTreeMap<String, (Source, u64, String)>, path: String, bytes: Vec<u8>| {
            let sha = hash::sha256_bytes(&bytes);
            let len = bytes.len() as u64;
            files.insert(path, (Source::Bytes(bytes), len, sha));
        };

    // The image directory.
    let image = Manifest::read(image_dir)?;
    let manifest_path = image_dir.join(contracts::image::FILE);
    let manifest_bytes = std::fs::read(&manifest_path).map_err(io(&manifest_path))?;
    let manifest_sha256 = hash::sha256_bytes(&manifest_bytes);
    let recorded = format!("image {} ({})", image_dir.display(), contracts::image::FILE);
    for need in IMAGE_FILES {
        if image.artifact(need).is_none() {
            return Err(Error::Verify {
                path: manifest_path.clone(),
                message: format!("lists no {need}, which the installer needs"),
            });
        }
    }
    for a in &image.artifacts {
        let src = image_dir.join(&a.file);
        big(
            &mut files,
            &mut checks,
            format!("image/{}", a.file),
            &src,
            a.size,
            &a.sha256,
            &recorded,
        )?;
    }
    add_bytes(
        &mut files,
        format!("image/{}", contracts::image::FILE),
        manifest_bytes,
    );

    // Guests.
    let mut found: BTreeMap<String, (PathBuf, GuestMeta)> = BTreeMap::new();
    for d in guest_dirs {
        let mut candidates = vec![d.join(guest::META_FILE)];
        if let Ok(rd) = std::fs::read_dir(d) {
            let mut subs: Vec<PathBuf> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.path().join(guest::META_FILE))
                .collect();
            subs.sort();
            candidates.extend(subs);
        } else {
            return Err(Error::Other(format!(
                "--guests {}: not a folder",
                d.display()
            )));
        }
        for c in candidates.into_iter().filter(|c| c.is_file()) {
            let meta = GuestMeta::read(&c)?;
            let dir = c.parent().map(Path::to_owned).unwrap_or_default();
            found.entry(meta.name.clone()).or_insert((dir, meta));
        }
    }
    let mut guests = Vec::new();
    for g in &profile.guests {
        let Some((dir, meta)) = found.get(g) else {
            return Err(Error::Profile {
                path: profile.path.clone(),
                message: format!(
                    "media.guests: no guest `{g}` in the --guests folders (found: {})",
                    if found.is_empty() {
                        "none".to_owned()
                    } else {
                        found.keys().cloned().collect::<Vec<_>>().join(", ")
                    }
                ),
            });
        };
        let at = format!("guests/{g}");
        let meta_path = dir.join(guest::META_FILE);
        let text = std::fs::read(&meta_path).map_err(io(&meta_path))?;
        add_bytes(&mut files, format!("{at}/{}", guest::META_FILE), text);
        big(
            &mut files,
            &mut checks,
            format!("{at}/{}", meta.tarball),
            &dir.join(&meta.tarball),
            meta.tarball_size,
            &meta.tarball_sha256,
            &format!("guest {}", meta_path.display()),
        )?;
        guests.push(Named {
            name: g.clone(),
            path: at,
        });
    }

    // Cluster profiles and what they name.
    let config = config_files(profile, &image)?;
    let mut clusters = Vec::new();
    for (rel, host) in &config.files {
        let bytes = std::fs::read(host).map_err(io(host))?;
        add_bytes(&mut files, format!("config/{rel}"), bytes);
    }
    for (name, rel) in &config.clusters {
        clusters.push(Named {
            name: name.clone(),
            path: format!("config/{rel}"),
        });
    }

    // The installer's CHAP for an unattended iSCSI install: a file of the
    // payload, never a word of the command line.
    if let Some(c) = profile.unattended.as_ref().and_then(|u| u.chap.as_ref()) {
        let bytes = std::fs::read(c).map_err(io(c))?;
        add_bytes(&mut files, manifest::CHAP_FILE.to_owned(), bytes);
    }

    for (path, bytes) in more {
        add_bytes(&mut files, path.clone(), bytes.clone());
    }

    let list: Vec<PayloadFile> = files
        .iter()
        .map(|(path, (_, size, sha))| PayloadFile {
            path: path.clone(),
            size: *size,
            sha256: sha.clone(),
        })
        .collect();
    let bytes = list.iter().map(|f| f.size).sum();
    let manifest = MediaManifest {
        format: manifest::FORMAT,
        name: profile.name.clone(),
        source_date_epoch: epoch,
        image: ImageRef {
            name: image.name.clone(),
            version: image.version.clone(),
            kernel_release: image.kernel_release.clone(),
            manifest_sha256,
        },
        clusters,
        guests,
        files: list,
    };
    let json = manifest.to_json();
    let mut tree = IsoTree::new();
    for (path, (source, _, _)) in files {
        tree.add(&path, source)?;
    }
    tree.add(manifest::FILE, Source::Bytes(json.clone().into_bytes()))?;
    Ok(Payload {
        tree,
        manifest_sha256: hash::sha256_bytes(json.as_bytes()),
        manifest_json: json,
        manifest,
        checks,
        vmlinuz: image_dir.join("vmlinuz"),
        image,
        bytes,
    })
}

/// A big file: its size now, its sha256 as recorded, checked later.
fn big(
    files: &mut BTreeMap<String, (Source, u64, String)>,
    checks: &mut Vec<Check>,
    path: String,
    src: &Path,
    size: u64,
    sha256: &str,
    recorded_in: &str,
) -> Result<()> {
    let have = std::fs::metadata(src).map_err(io(src))?.len();
    if have != size {
        return Err(Error::Verify {
            path: src.to_owned(),
            message: format!("is {have} bytes, but {recorded_in} says {size}"),
        });
    }
    files.insert(
        path,
        (
            Source::File {
                path: src.to_owned(),
                len: size,
            },
            size,
            sha256.to_owned(),
        ),
    );
    checks.push(Check {
        source: src.to_owned(),
        size,
        sha256: sha256.to_owned(),
        recorded_in: recorded_in.to_owned(),
    });
    Ok(())
}

/// Hashes every checked file; the first that differs from its record is
/// the error. One file at a time: the build runs this beside the writers.
pub fn verify(checks: &[Check]) -> Result<()> {
    for c in checks {
        let (size, sha) = hash::sha256_file(&c.source)?;
        if size != c.size || sha != c.sha256 {
            return Err(Error::Verify {
                path: c.source.clone(),
                message: format!(
                    "is {size} bytes with sha256 {sha}, but {} says {} bytes with sha256 {}",
                    c.recorded_in, c.size, c.sha256
                ),
            });
        }
    }
    Ok(())
}

/// Config files by payload path under `config/`, and the clusters by name.
struct Config {
    files: BTreeMap<String, PathBuf>,
    clusters: Vec<(String, String)>,
}

/// The cluster profiles, their host profiles and overlay folders, checked:
/// each profile is valid, and names the host image the payload carries.
fn config_files(profile: &MediaProfile, image: &Manifest) -> Result<Config> {
    let mut roots: Vec<PathBuf> = Vec::new();
    let mut singles: Vec<PathBuf> = Vec::new();
    let mut clusters = Vec::new();
    for path in &profile.clusters {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let source = cluster::Source::new(path.display().to_string(), text);
        let base = path.parent().map(Path::to_owned).unwrap_or_default();
        let p = cluster::Profile::load(&source, &cluster::FsEnv { base: base.clone() }).map_err(
            |d| Error::Profile {
                path: path.clone(),
                message: format!("is not a valid cluster profile:\n{d}"),
            },
        )?;
        let host = base.join(&p.image.host.value);
        let named = host_image_name(&host)?;
        if named != image.name {
            return Err(Error::Profile {
                path: path.clone(),
                message: format!(
                    "image.host {} is host image `{named}`, but the image directory holds `{}`",
                    p.image.host.value, image.name
                ),
            });
        }
        singles.push(canonical(path)?);
        singles.push(canonical(&host)?);
        for o in &p.image.overlays {
            roots.push(canonical(&base.join(&o.value))?);
        }
        clusters.push((MediaProfile::cluster_name(path), canonical(path)?));
    }
    let mut all: Vec<&Path> = singles.iter().map(|p| p.parent().unwrap_or(p)).collect();
    all.extend(roots.iter().map(PathBuf::as_path));
    let top = common_ancestor(&all);
    let rel = |p: &Path| -> Result<String> {
        p.strip_prefix(&top)
            .map(|r| r.to_string_lossy().into_owned())
            .map_err(|_| Error::Other(format!("{} is outside {}", p.display(), top.display())))
    };
    let mut files = BTreeMap::new();
    for s in &singles {
        files.insert(rel(s)?, s.clone());
    }
    for r in &roots {
        walk(r, &mut |f| {
            files.insert(rel(f)?, f.to_owned());
            Ok(())
        })?;
    }
    let clusters = clusters
        .into_iter()
        .map(|(n, p)| Ok((n, rel(&p)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Config { files, clusters })
}

fn canonical(p: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(p).map_err(io(p))
}

/// The host profile's `[image] name`.
fn host_image_name(host: &Path) -> Result<String> {
    let text = std::fs::read_to_string(host).map_err(io(host))?;
    let v: toml::Table = toml::from_str(&text).map_err(|e| Error::Profile {
        path: host.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    v.get("image")
        .and_then(|i| i.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_owned)
        .ok_or_else(|| Error::Profile {
            path: host.to_owned(),
            message: "image.name: missing".into(),
        })
}

fn common_ancestor(paths: &[&Path]) -> PathBuf {
    let mut top: PathBuf = paths.first().map(|p| p.to_path_buf()).unwrap_or_default();
    for p in paths.iter().skip(1) {
        while !p.starts_with(&top) {
            if !top.pop() {
                return PathBuf::from("/");
            }
        }
    }
    top
}

/// Every regular file under `dir`, in name order; a link or special file
/// is an error (the payload holds files only).
fn walk(dir: &Path, f: &mut dyn FnMut(&Path) -> Result<()>) -> Result<()> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::result::Result<_, _>>()
        .map_err(io(dir))?;
    names.sort();
    for p in names {
        let m = std::fs::symlink_metadata(&p).map_err(io(&p))?;
        if m.is_dir() {
            walk(&p, f)?;
        } else if m.is_file() {
            f(&p)?;
        } else {
            return Err(Error::Other(format!(
                "{}: only files and folders can go on install media",
                p.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_ancestor_of_siblings() {
        let a = Path::new("/r/profiles/clusters");
        let b = Path::new("/r/profiles/hosts");
        let c = Path::new("/r/overlays/node");
        assert_eq!(common_ancestor(&[a, b, c]), Path::new("/r"));
        assert_eq!(common_ancestor(&[a]), a);
    }
}
