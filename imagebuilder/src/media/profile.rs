//! Install-media profiles (`isos/*.toml`): which cluster profiles and
//! guests the media carry, how the installer boots, and, for vendors who
//! ship unattended media, what it installs without asking. Unknown keys
//! are errors; paths are relative to the profile's folder; `isos/README.md`
//! documents every key. Problems are told as the cluster profile's are:
//! every one with the file, line, column and key.

use std::path::{Path, PathBuf};

use cluster::typed;
use cluster::{Bytes, Diagnostic, Diagnostics, Source};
use serde::Deserialize;

use crate::error::{Error, Result, io};
use contracts::cmdline::media::{StorageNic, Target};
use contracts::hash;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaProfile {
    /// The profile file, as given.
    pub path: PathBuf,
    pub sha256: String,
    /// Names the outputs: `NAME.img`, `NAME.iso`.
    pub name: String,
    /// The ISO 9660 volume id (the label blkid shows).
    pub label: String,
    /// What the boot menus show.
    pub title: String,
    /// Cluster profiles the media carry (resolved paths).
    pub clusters: Vec<PathBuf>,
    /// Guest names, each found in a `--guests` folder.
    pub guests: Vec<String>,
    /// `console=` arguments; the last is `/dev/console`, where the
    /// installer asks its questions.
    pub console: Vec<String>,
    pub kernel_args: Vec<String>,
    /// Modules the installer's initramfs adds to its own list.
    pub modules: Vec<String>,
    /// The USB image's size, the stick it is for; `None`: what it holds.
    pub size: Option<Bytes>,
    /// `media.test_image`: the media may carry a test image (as
    /// `vlx-image media --test-image` says; either is enough).
    pub test_image: bool,
    pub unattended: Option<Unattended>,
}

/// What unattended media install, without a question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unattended {
    /// A carried cluster profile, by its file stem (`demo`).
    pub profile: String,
    /// The SAN: a disk (`/dev/NAME`, `NAME`, `serial:SERIAL`, ...) or an
    /// iSCSI LUN (`iscsi://PORTAL[:PORT]/IQN[/LUN]`).
    pub target: Target,
    /// The storage NIC of an iSCSI target (`sif`, `sifip`, `sifnm`,
    /// `sifm`).
    pub storage: Option<StorageNic>,
    /// A CHAP file for the iSCSI login (the `vlx-install --chap` format),
    /// carried in the payload as [`contracts::media::CHAP_FILE`].
    pub chap: Option<PathBuf>,
    /// Overwrite a target that holds something else.
    pub wipe: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    media: RawMedia,
    unattended: Option<RawUnattended>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMedia {
    name: String,
    label: Option<String>,
    title: Option<String>,
    clusters: Vec<PathBuf>,
    #[serde(default)]
    guests: Vec<String>,
    console: Option<Vec<String>>,
    #[serde(default)]
    kernel_args: Vec<String>,
    #[serde(default)]
    modules: Vec<String>,
    size: Option<String>,
    #[serde(default)]
    test_image: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUnattended {
    profile: String,
    target: String,
    sif: Option<String>,
    sifip: Option<String>,
    sifnm: Option<String>,
    #[serde(default)]
    sifm: Vec<String>,
    chap: Option<PathBuf>,
    #[serde(default)]
    wipe: bool,
}

/// The console of the installer when the profile names none: the screen
/// and the first serial port, questions on the serial port.
pub const DEFAULT_CONSOLE: &[&str] = &["tty0", "ttyS0,115200"];

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !s.starts_with('.')
}

impl MediaProfile {
    /// Reads a media profile; every problem comes back in one
    /// [`Error::Diagnostics`], each with its line, column and key.
    pub fn load(path: &Path) -> Result<MediaProfile> {
        let bytes = std::fs::read(path).map_err(io(path))?;
        let sha256 = hash::sha256_bytes(&bytes);
        let text = String::from_utf8(bytes).map_err(|_| Error::Profile {
            path: path.to_owned(),
            message: "not UTF-8 text".into(),
        })?;
        let source = Source::new(path.display().to_string(), text);
        let (raw, at): (Raw, _) = typed::parse(&source)?;
        let mut found: Vec<Diagnostic> = Vec::new();
        let mut err = |key: &str, message: String, help: &str| {
            found.push(at.error(key, message, (!help.is_empty()).then(|| help.to_owned())));
        };
        let m = raw.media;
        if !is_name(&m.name) {
            err(
                "media.name",
                format!("`{}` is not a file name", m.name),
                "letters, digits, -, _ and ., not starting with . (it names the outputs)",
            );
        }
        let label = match m.label {
            Some(l) => l,
            None => m
                .name
                .to_ascii_uppercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .take(32)
                .collect(),
        };
        if label.is_empty()
            || label.len() > 32
            || !label
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            err(
                "media.label",
                format!("`{label}` is not an ISO 9660 volume id"),
                "1 to 32 of A-Z, 0-9 and _",
            );
        }
        if m.clusters.is_empty() {
            err(
                "media.clusters",
                "names no cluster profile".into(),
                "name at least one cluster profile (paths relative to this file)",
            );
        }
        let base = path.parent().map(Path::to_owned).unwrap_or_default();
        let clusters: Vec<PathBuf> = m.clusters.iter().map(|c| base.join(c)).collect();
        let mut stems = std::collections::BTreeSet::new();
        for (i, (c, raw)) in clusters.iter().zip(&m.clusters).enumerate() {
            let key = format!("media.clusters[{i}]");
            if !c.is_file() {
                err(
                    &key,
                    format!("{} is not a file", raw.display()),
                    "a cluster profile, relative to this file's folder",
                );
                continue;
            }
            let stem = c
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !is_name(&stem) || !stems.insert(stem.clone()) {
                err(
                    &key,
                    format!(
                        "{} must have a file name of its own (the installer offers profiles by name: `{stem}`)",
                        raw.display()
                    ),
                    "",
                );
            }
        }
        for (i, g) in m.guests.iter().enumerate() {
            if !is_name(g) {
                err(
                    &format!("media.guests[{i}]"),
                    format!("`{g}` is not a guest name"),
                    "letters, digits, -, _ and .",
                );
            }
        }
        let line_ok = |s: &str| !s.is_empty() && !s.chars().any(|c| c.is_whitespace());
        let console: Vec<String> = m
            .console
            .unwrap_or_else(|| DEFAULT_CONSOLE.iter().map(|s| (*s).to_owned()).collect());
        if console.is_empty() || !console.iter().all(|c| line_ok(c)) {
            err(
                "media.console",
                "not one or more console= values without spaces".into(),
                "such as [\"tty0\", \"ttyS0,115200\"]",
            );
        }
        for (i, a) in m.kernel_args.iter().enumerate() {
            if !line_ok(a) || contracts::cmdline::is_ours(a) || a.starts_with("console=") {
                err(
                    &format!("media.kernel_args[{i}]"),
                    format!("`{a}` is not an argument of yours"),
                    "one argument without spaces; vlx.* and console= are set by vlx",
                );
            }
        }
        let size = m.size.and_then(|s| match s.parse::<Bytes>() {
            Ok(b) => Some(b),
            Err(e) => {
                err(
                    "media.size",
                    format!("`{s}`: {e}"),
                    "a size such as \"4GiB\"",
                );
                None
            }
        });
        let unattended = raw.unattended.map(|u| {
            if !stems.contains(&u.profile) {
                err(
                    "unattended.profile",
                    format!("`{}` is none of the carried profiles", u.profile),
                    &format!(
                        "one of: {}",
                        stems.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
            // The words the boot entry will carry, read by the installer
            // environment's own parser: what it refuses is refused here.
            let mut words = vec![format!("vlx.media={}", "0".repeat(64))];
            let mut push = |key: &str, v: &Option<String>| {
                if let Some(v) = v {
                    words.push(format!("vlx.{key}={v}"));
                }
            };
            push("target", &Some(u.target.clone()));
            push("sif", &u.sif);
            push("sifip", &u.sifip);
            push("sifnm", &u.sifnm);
            push("sifm", &(!u.sifm.is_empty()).then(|| u.sifm.join(",")));
            let line_ok_all = words.iter().all(|w| line_ok(w));
            let parsed = contracts::cmdline::media::parse(&words.join(" "));
            let (target, storage) = match parsed {
                Ok(a) if line_ok_all => (a.target, a.storage),
                Ok(_) => {
                    err(
                        "unattended.target",
                        "a value has spaces".into(),
                        "no spaces in target, sif, sifip, sifnm, sifm",
                    );
                    (None, None)
                }
                Err(e) => {
                    err(
                        "unattended.target",
                        e.to_string(),
                        "a disk (/dev/NAME, NAME, serial:SERIAL, wwn:WWN, by-id:ID), or \
                         iscsi://PORTAL[:PORT]/IQN[/LUN] with sif, sifip (an address with sifnm, \
                         or dhcp) and sifm",
                    );
                    (None, None)
                }
            };
            let chap = u.chap.map(|c| base.join(c));
            if let Some(c) = &chap {
                if storage.is_none() {
                    err(
                        "unattended.chap",
                        "CHAP is for an iSCSI target".into(),
                        "drop it, or name an iscsi:// target",
                    );
                } else if !c.is_file() {
                    err(
                        "unattended.chap",
                        format!("{} is not a file", c.display()),
                        "a CHAP file (username=, password=, username_in=, password_in=), \
                         relative to this file's folder",
                    );
                }
            }
            Unattended {
                profile: u.profile,
                target: target.unwrap_or(Target::Disk(u.target)),
                storage,
                chap,
                wipe: u.wipe,
            }
        });
        if !found.is_empty() {
            return Err(Error::Diagnostics(Diagnostics(found)));
        }
        Ok(MediaProfile {
            path: path.to_owned(),
            sha256,
            title: m
                .title
                .unwrap_or_else(|| format!("Install vlx ({})", m.name)),
            name: m.name,
            label,
            clusters,
            guests: m.guests,
            console,
            kernel_args: m.kernel_args,
            modules: m.modules,
            size,
            test_image: m.test_image,
            unattended,
        })
    }

    /// The cluster profile's name the installer knows it by (file stem).
    pub fn cluster_name(path: &Path) -> String {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<MediaProfile> {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("demo.toml"), "x").unwrap();
        std::fs::write(d.path().join("m.toml"), text).unwrap();
        MediaProfile::load(&d.path().join("m.toml"))
    }

    #[test]
    fn defaults_and_unattended() {
        let p = load(
            "[media]\nname = \"vlx-installer\"\nclusters = [\"demo.toml\"]\n\
             [unattended]\nprofile = \"demo\"\ntarget = \"/dev/vdb\"\n",
        )
        .unwrap();
        assert_eq!(p.label, "VLX_INSTALLER");
        assert_eq!(p.console, ["tty0", "ttyS0,115200"]);
        assert_eq!(
            p.unattended,
            Some(Unattended {
                profile: "demo".into(),
                target: Target::Disk("/dev/vdb".into()),
                storage: None,
                chap: None,
                wipe: false
            })
        );
    }

    #[test]
    fn unattended_through_iscsi() {
        let p = load(
            "[media]\nname = \"m\"\nclusters = [\"demo.toml\"]\n\
             [unattended]\nprofile = \"demo\"\ntarget = \"iscsi://10.10.0.250/iqn.2007-01.x:san0/1\"\n\
             sif = \"52:54:00:AA:00:01\"\nsifip = \"10.10.0.1\"\nsifnm = \"255.255.255.0\"\n\
             sifm = [\"virtio_net\"]\nchap = \"demo.toml\"\n",
        )
        .unwrap();
        let u = p.unattended.unwrap();
        assert!(
            matches!(&u.target, Target::Iscsi(url) if url.lun == Some(1)),
            "{:?}",
            u.target
        );
        let s = u.storage.unwrap();
        assert_eq!(s.modules, ["virtio_net"]);
        assert_eq!(
            s.nic,
            contracts::cmdline::media::Nic::Mac("52:54:00:aa:00:01".into())
        );
        assert!(u.chap.unwrap().ends_with("demo.toml"));
    }

    #[test]
    fn errors_name_the_key() {
        for (text, key) in [
            (
                "[media]\nname = \"a b\"\nclusters = [\"demo.toml\"]\n",
                "media.name",
            ),
            (
                "[media]\nname = \"a\"\nclusters = [\"nope.toml\"]\n",
                "media.clusters",
            ),
            ("[media]\nname = \"a\"\nclusters = []\n", "media.clusters"),
            (
                "[media]\nname = \"a\"\nclusters = [\"demo.toml\"]\nkernel_args = [\"vlx.x=1\"]\n",
                "media.kernel_args",
            ),
            (
                "[media]\nname = \"a\"\nclusters = [\"demo.toml\"]\n[unattended]\nprofile = \"x\"\ntarget = \"vda\"\n",
                "unattended.profile",
            ),
            (
                "[media]\nname = \"a\"\nclusters = [\"demo.toml\"]\nbogus = 1\n",
                "bogus",
            ),
            (
                "[media]\nname = \"a\"\nclusters = [\"demo.toml\"]\n[unattended]\nprofile = \"demo\"\n\
                 target = \"iscsi://10.0.0.1/iqn.x\"\nsif = \"eth1\"\n",
                "unattended.target: vlx.target=iscsi://10.0.0.1:3260/iqn.x is an iSCSI LUN: the kernel \
                 command line needs vlx.sifip=<address or dhcp> too",
            ),
            (
                "[media]\nname = \"a\"\nclusters = [\"demo.toml\"]\n[unattended]\nprofile = \"demo\"\n\
                 target = \"vdb\"\nsif = \"eth1\"\n",
                "unattended.target: vlx.sif is for an iSCSI target",
            ),
            (
                "[media]\nname = \"a\"\nclusters = [\"demo.toml\"]\n[unattended]\nprofile = \"demo\"\n\
                 target = \"vdb\"\nchap = \"demo.toml\"\n",
                "unattended.chap",
            ),
            (
                "[media]\nname = \"a\"\nclusters = [\"demo.toml\"]\n[unattended]\nprofile = \"demo\"\n\
                 target = \"\"\n",
                "unattended.target",
            ),
            (
                "[media]\nname = \"a\"\nclusters = [\"demo.toml\"]\nsize = \"lots\"\n",
                "media.size",
            ),
        ] {
            let e = load(text).unwrap_err().to_string();
            assert!(e.contains(key), "{key}: {e}");
        }
    }
}
