//! The apt sources a Debian root is built from.
//!
//! By default they are the build machine's own: `/etc/apt/sources.list` and
//! `/etc/apt/sources.list.d/*.list` (one-line style) and `*.sources`
//! (deb822), so a local mirror or proxy the machine uses works for image
//! builds too, and no archive host name is written in this project. From
//! them the build takes the suite's entry and, when listed, its `-updates`
//! and `-security` entries: an image gets the same security fixes the build
//! machine's apt sees. A profile that names `rootfs.mirror` (and optionally
//! `rootfs.updates_mirror`, `rootfs.security_mirror`) gets exactly those
//! instead, and the build machine's sources are not read.
//!
//! Parsing and planning are pure; [`read_dir`] is the one function that
//! reads files.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, io};
use crate::profile::Debootstrap;

/// One `deb` entry of an apt sources file: a URI with its suites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub uri: String,
    pub suites: Vec<String>,
    pub components: Vec<String>,
    /// The `signed-by` option / `Signed-By` field when it names a keyring
    /// file (an inline key block is left to apt's default keyrings).
    pub signed_by: Option<String>,
    /// `trusted=yes`: apt accepts the archive unsigned.
    pub trusted: bool,
    /// `file:line` the entry was read from, for messages.
    pub origin: String,
}

/// One line of the chroot's sources.list, as mmdebstrap takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptLine {
    pub uri: String,
    pub suite: String,
    pub components: Vec<String>,
    pub signed_by: Option<String>,
    pub trusted: bool,
}

impl fmt::Display for AptLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deb ")?;
        let mut opts = Vec::new();
        if let Some(k) = &self.signed_by {
            opts.push(format!("signed-by={k}"));
        }
        if self.trusted {
            opts.push("trusted=yes".to_owned());
        }
        if !opts.is_empty() {
            write!(f, "[{}] ", opts.join(" "))?;
        }
        write!(
            f,
            "{} {} {}",
            self.uri,
            self.suite,
            self.components.join(" ")
        )
    }
}

/// What a profile says about its archive (all `None`: the build machine's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorChoice {
    /// `rootfs.mirror`: the suite's archive.
    pub mirror: Option<String>,
    /// `rootfs.updates_mirror`: the archive of `<suite>-updates`.
    pub updates_mirror: Option<String>,
    /// `rootfs.security_mirror`: the archive of `<suite>-security`.
    pub security_mirror: Option<String>,
}

impl MirrorChoice {
    pub fn is_named(&self) -> bool {
        self.mirror.is_some() || self.updates_mirror.is_some() || self.security_mirror.is_some()
    }
}

/// The suites a root of `suite` is built from, in sources.list order.
pub fn suites_of(suite: &str) -> [String; 3] {
    [
        suite.to_owned(),
        format!("{suite}-updates"),
        format!("{suite}-security"),
    ]
}

/// Parses one-line-style text (`sources.list`, `*.list`).
pub fn parse_one_line(path: &Path, text: &str) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let origin = format!("{}:{}", path.display(), i + 1);
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let bad = |why: &str| Error::Profile {
            path: path.to_owned(),
            message: format!("line {}: {why}: `{line}`", i + 1),
        };
        let (kind, rest) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| bad("not a sources.list entry"))?;
        if kind == "deb-src" {
            continue;
        }
        if kind != "deb" {
            return Err(bad("the type is neither `deb` nor `deb-src`"));
        }
        let rest = rest.trim_start();
        let (options, rest) = match rest.strip_prefix('[') {
            Some(r) => {
                let (o, r) = r.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
                (o, r)
            }
            None => ("", rest),
        };
        let mut words = rest.split_whitespace();
        let uri = words.next().ok_or_else(|| bad("no URI"))?.to_owned();
        let suite = words.next().ok_or_else(|| bad("no suite"))?.to_owned();
        let components: Vec<String> = words.map(str::to_owned).collect();
        let mut signed_by = None;
        let mut trusted = false;
        for opt in options.split_whitespace() {
            if let Some((k, v)) = opt.split_once('=') {
                match k.to_ascii_lowercase().as_str() {
                    "signed-by" => signed_by = keyring(v),
                    "trusted" => trusted = v == "yes",
                    _ => {}
                }
            }
        }
        out.push(Entry {
            uri,
            suites: vec![suite],
            components,
            signed_by,
            trusted,
            origin,
        });
    }
    Ok(out)
}

/// Parses deb822 text (`*.sources`): stanzas of `Field: value` lines,
/// continuation lines start with a space, stanzas part at an empty line.
pub fn parse_deb822(path: &Path, text: &str) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut start = 0usize;
    let mut flush = |fields: &mut Vec<(String, String)>, start: usize| -> Result<()> {
        if fields.is_empty() {
            return Ok(());
        }
        let get = |k: &str| {
            fields
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.as_str())
        };
        let bad = |why: String| Error::Profile {
            path: path.to_owned(),
            message: format!("stanza at line {start}: {why}"),
        };
        let enabled = get("Enabled").is_none_or(|v| !v.trim().eq_ignore_ascii_case("no"));
        let types: Vec<&str> = get("Types")
            .ok_or_else(|| bad("no Types field".into()))?
            .split_whitespace()
            .collect();
        if enabled && types.contains(&"deb") {
            let list = |k: &str| -> Vec<String> {
                get(k)
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect()
            };
            let uris = list("URIs");
            let suites = list("Suites");
            if uris.is_empty() || suites.is_empty() {
                return Err(bad("a `deb` stanza needs URIs and Suites".into()));
            }
            let signed_by = get("Signed-By").and_then(|v| keyring(v.trim()));
            let trusted = get("Trusted").is_some_and(|v| v.trim() == "yes");
            for uri in uris {
                out.push(Entry {
                    uri,
                    suites: suites.clone(),
                    components: list("Components"),
                    signed_by: signed_by.clone(),
                    trusted,
                    origin: format!("{}:{start}", path.display()),
                });
            }
        }
        fields.clear();
        Ok(())
    };
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            flush(&mut fields, start)?;
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match fields.last_mut() {
                Some((_, v)) => {
                    v.push('\n');
                    v.push_str(line.trim());
                }
                None => {
                    return Err(Error::Profile {
                        path: path.to_owned(),
                        message: format!("line {}: a continuation line with no field", i + 1),
                    });
                }
            }
            continue;
        }
        let (k, v) = line.split_once(':').ok_or_else(|| Error::Profile {
            path: path.to_owned(),
            message: format!("line {}: not `Field: value`: `{line}`", i + 1),
        })?;
        if fields.is_empty() {
            start = i + 1;
        }
        fields.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    flush(&mut fields, start)?;
    Ok(out)
}

/// A `signed-by` value that names a keyring file; an inline key (several
/// lines) or a fingerprint list is left to apt's defaults.
fn keyring(v: &str) -> Option<String> {
    (v.starts_with('/') && !v.contains(char::is_whitespace)).then(|| v.to_owned())
}

/// Reads the apt sources under `etc_apt` (normally `/etc/apt`):
/// `sources.list`, then `sources.list.d/*.list` and `*.sources` in name
/// order, as apt does. Other names in the folder (`*.disabled`, backups)
/// are not sources.
pub fn read_dir(etc_apt: &Path) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    let main = etc_apt.join("sources.list");
    match std::fs::read_to_string(&main) {
        Ok(t) => out.extend(parse_one_line(&main, &t)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&main)(e)),
    }
    let d = etc_apt.join("sources.list.d");
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&d) {
        Ok(rd) => rd
            .map(|e| e.map(|e| e.path()).map_err(io(&d)))
            .collect::<Result<_>>()?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(&d)(e)),
    };
    files.sort();
    for f in files {
        let ext = f.extension().and_then(|e| e.to_str());
        if !matches!(ext, Some("list" | "sources")) {
            continue;
        }
        let t = std::fs::read_to_string(&f).map_err(io(&f))?;
        out.extend(if ext == Some("list") {
            parse_one_line(&f, &t)?
        } else {
            parse_deb822(&f, &t)?
        });
    }
    Ok(out)
}

/// The lines a root of `suite` is built from: the profile's mirrors when it
/// names any, else the first entry of `system` for the suite (required) and
/// for `-updates` and `-security` (each when listed).
pub fn plan(suite: &str, system: &[Entry], choice: &MirrorChoice) -> Result<Vec<AptLine>> {
    let [main, updates, security] = suites_of(suite);
    if choice.is_named() {
        let Some(m) = &choice.mirror else {
            return Err(Error::Other(
                "rootfs.updates_mirror and rootfs.security_mirror need rootfs.mirror too".into(),
            ));
        };
        let mut lines = vec![profile_line(m, &main)];
        if let Some(u) = &choice.updates_mirror {
            lines.push(profile_line(u, &updates));
        }
        if let Some(s) = &choice.security_mirror {
            lines.push(profile_line(s, &security));
        }
        return Ok(lines);
    }
    let find = |s: &str| {
        system
            .iter()
            .find(|e| e.suites.iter().any(|x| x == s))
            .map(|e| AptLine {
                uri: e.uri.clone(),
                suite: s.to_owned(),
                components: if e.components.is_empty() {
                    vec!["main".to_owned()]
                } else {
                    e.components.clone()
                },
                signed_by: e.signed_by.clone(),
                trusted: e.trusted,
            })
    };
    let first = find(&main).ok_or_else(|| {
        Error::Other(format!(
            "the build machine's apt sources list no `deb` entry for suite {main} \
             (read: /etc/apt/sources.list, /etc/apt/sources.list.d/*.list and *.sources); \
             add one there or name an archive with rootfs.mirror"
        ))
    })?;
    let mut lines = vec![first];
    lines.extend(find(&updates));
    lines.extend(find(&security));
    Ok(lines)
}

/// A profile mirror: `trusted=yes` for a local `file:` or `copy:` archive
/// (nothing signs one made from a package cache), apt's keyrings otherwise.
fn profile_line(uri: &str, suite: &str) -> AptLine {
    AptLine {
        uri: uri.to_owned(),
        suite: suite.to_owned(),
        components: vec!["main".to_owned()],
        signed_by: None,
        trusted: uri.starts_with("file:") || uri.starts_with("copy:"),
    }
}

/// The sources an mmdebstrap root of `spec` is built from: its mirrors,
/// or the build machine's apt sources for its suite.
pub fn for_build(spec: &Debootstrap) -> Result<Vec<AptLine>> {
    let choice = MirrorChoice {
        mirror: spec.mirror.clone(),
        updates_mirror: spec.updates_mirror.clone(),
        security_mirror: spec.security_mirror.clone(),
    };
    if choice.is_named() {
        return plan(&spec.suite, &[], &choice);
    }
    plan(&spec.suite, &read_dir(Path::new(SYSTEM))?, &choice)
}

/// The build machine's apt configuration folder.
pub const SYSTEM: &str = "/etc/apt";

#[cfg(test)]
mod tests {
    use super::*;

    const DEB822: &str = "Types: deb\n\
# a comment\n\
URIs: http://127.0.0.1:3142/debian\n\
Suites: bookworm bookworm-updates\n\
Components: main contrib\n\
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\
\n\
Types: deb deb-src\n\
URIs: http://127.0.0.1:3142/debian-security\n\
Suites: bookworm-security\n\
Components: main\n\
\n\
Types: deb\n\
Enabled: no\n\
URIs: http://127.0.0.2/mirror\n\
Suites: bookworm\n\
\n\
Types: deb\n\
URIs: http://127.0.0.3/x\n\
Suites: nodistro\n\
Signed-By:\n\
\x20-----BEGIN PGP PUBLIC KEY BLOCK-----\n\
\x20.\n\
\x20abc\n";

    #[test]
    fn deb822_stanzas() {
        let e = parse_deb822(Path::new("d.sources"), DEB822).unwrap();
        assert_eq!(e.len(), 3, "{e:?}");
        assert_eq!(e[0].uri, "http://127.0.0.1:3142/debian");
        assert_eq!(e[0].suites, ["bookworm", "bookworm-updates"]);
        assert_eq!(e[0].components, ["main", "contrib"]);
        assert_eq!(
            e[0].signed_by.as_deref(),
            Some("/usr/share/keyrings/debian-archive-keyring.gpg")
        );
        assert_eq!(e[0].origin, "d.sources:1");
        assert_eq!(e[1].origin, "d.sources:8");
        // An inline key is no keyring path.
        assert_eq!(e[2].signed_by, None);
    }

    #[test]
    fn one_line_entries() {
        let text = "# comment\n\
deb-src http://127.0.0.4/mirror bookworm main\n\
deb [arch=amd64 signed-by=/k.gpg] http://127.0.0.5/mirror bookworm main # tail\n\
deb [trusted=yes] file:///srv/mirror bookworm-security main\n";
        let e = parse_one_line(Path::new("s.list"), text).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].signed_by.as_deref(), Some("/k.gpg"));
        assert_eq!(e[0].components, ["main"]);
        assert_eq!(e[0].origin, "s.list:3");
        assert!(e[1].trusted && e[1].uri == "file:///srv/mirror");
        let err = parse_one_line(Path::new("s.list"), "\ndeb http://x\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("s.list") && err.contains("line 2") && err.contains("no suite"),
            "{err}"
        );
        let err = parse_one_line(Path::new("s.list"), "rpm http://x a b\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn plan_takes_suite_updates_and_security() {
        let e = parse_deb822(Path::new("d.sources"), DEB822).unwrap();
        let lines: Vec<String> = plan("bookworm", &e, &MirrorChoice::default())
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            [
                "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://127.0.0.1:3142/debian bookworm main contrib",
                "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://127.0.0.1:3142/debian bookworm-updates main contrib",
                "deb http://127.0.0.1:3142/debian-security bookworm-security main",
            ]
        );
        // A suite the sources do not list is an error that says what to do.
        let err = plan("trixie", &e, &MirrorChoice::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("trixie") && err.contains("rootfs.mirror"),
            "{err}"
        );
    }

    #[test]
    fn a_profile_mirror_replaces_the_system_sources() {
        let e = parse_deb822(Path::new("d.sources"), DEB822).unwrap();
        let choice = MirrorChoice {
            mirror: Some("file:///srv/mirror".into()),
            ..MirrorChoice::default()
        };
        let lines: Vec<String> = plan("bookworm", &e, &choice)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            ["deb [trusted=yes] file:///srv/mirror bookworm main"]
        );
        let choice = MirrorChoice {
            mirror: Some("http://127.0.0.6:3142/debian".into()),
            security_mirror: Some("http://127.0.0.6:3142/debian-security".into()),
            ..MirrorChoice::default()
        };
        let lines: Vec<String> = plan("bookworm", &[], &choice)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            [
                "deb http://127.0.0.6:3142/debian bookworm main",
                "deb http://127.0.0.6:3142/debian-security bookworm-security main"
            ]
        );
        let only_security = MirrorChoice {
            security_mirror: Some("http://x/y".into()),
            ..MirrorChoice::default()
        };
        let err = plan("bookworm", &[], &only_security)
            .unwrap_err()
            .to_string();
        assert!(err.contains("rootfs.mirror"), "{err}");
    }

    #[test]
    fn read_dir_takes_list_and_sources_only() {
        let d = tempfile::tempdir().unwrap();
        let list = d.path().join("sources.list.d");
        std::fs::create_dir(&list).unwrap();
        std::fs::write(list.join("b.sources"), DEB822).unwrap();
        std::fs::write(
            list.join("a.list"),
            "deb http://127.0.0.7/mirror bookworm main\n",
        )
        .unwrap();
        std::fs::write(
            list.join("c.list.disabled"),
            "deb http://127.0.0.8/mirror bookworm main\n",
        )
        .unwrap();
        let e = read_dir(d.path()).unwrap();
        let uris: Vec<&str> = e.iter().map(|e| e.uri.as_str()).collect();
        assert_eq!(
            uris,
            [
                "http://127.0.0.7/mirror",
                "http://127.0.0.1:3142/debian",
                "http://127.0.0.1:3142/debian-security",
                "http://127.0.0.3/x"
            ]
        );
    }
}
