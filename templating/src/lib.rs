//! Overlays: file trees laid over a root file system.
//!
//! An overlay is a folder. Its files are copied; a file named `*.hbs` is a
//! handlebars template, rendered in strict mode (a missing variable is an
//! error naming the template, line and variable) without HTML escaping, and
//! lands without the `.hbs` suffix. Symbolic links stay links.
//!
//! Owners and modes come from the overlay, never from the checkout it was
//! read from: directories are 0755, files 0644 (0755 when the checkout's copy
//! is executable, the one bit git keeps), all owned by 0:0, unless the
//! optional `overlay.toml` at the overlay's top says otherwise:
//!
//! ```toml
//! [paths."etc/ssh/ssh_host_ed25519_key"]
//! mode = "0600"
//! [paths."var/lib/chrony"]
//! uid = 100
//! gid = 101
//! ```
//!
//! Keys of `paths` are output paths (without `.hbs`), and must exist.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use handlebars::{Handlebars, RenderErrorReason};
use serde::Deserialize;

/// The overlay's own description file; not copied.
pub const META_FILE: &str = "overlay.toml";
const TEMPLATE_SUFFIX: &str = ".hbs";

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("reading overlay {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Meta { path: PathBuf, message: String },
    #[error("{path}:{line}:{column}: {message}")]
    Template {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Render { path: PathBuf, message: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OverlayError + '_ {
    move |source| OverlayError::Io {
        path: path.to_owned(),
        source,
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    #[serde(default)]
    paths: BTreeMap<String, PathMeta>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PathMeta {
    mode: Option<String>,
    uid: Option<u32>,
    gid: Option<u32>,
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(PathBuf),
}

/// One path of the rendered overlay, relative to the root it lands on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    pub kind: Kind,
    /// Permission bits (including setuid/setgid/sticky), not the file type.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// A source file of the overlay, before rendering.
#[derive(Debug, Clone)]
struct Source {
    /// Path in the checkout.
    from: PathBuf,
    /// Output path, relative.
    path: PathBuf,
    kind: SourceKind,
}

#[derive(Debug, Clone)]
enum SourceKind {
    Dir,
    File { executable: bool },
    Template,
    Symlink(PathBuf),
}

/// Mode, uid and gid set by `overlay.toml`; `None` takes the default.
#[derive(Debug, Clone, Copy, Default)]
struct Attrs {
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
}

/// An overlay folder, read and checked but not yet rendered.
#[derive(Debug, Clone)]
pub struct Overlay {
    root: PathBuf,
    sources: Vec<Source>,
    /// Parsed modes and owners by output path.
    meta: BTreeMap<PathBuf, Attrs>,
}

impl Overlay {
    /// Reads the overlay at `root`: its tree and `overlay.toml`.
    pub fn load(root: &Path) -> Result<Overlay, OverlayError> {
        let mut sources = Vec::new();
        walk(root, Path::new(""), &mut sources)?;
        sources.sort_by(|a, b| a.path.cmp(&b.path));
        let meta_path = root.join(META_FILE);
        let meta: Meta = match fs::read_to_string(&meta_path) {
            Ok(text) => toml::from_str(&text).map_err(|e| OverlayError::Meta {
                path: meta_path.clone(),
                message: toml_error(&text, &e),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Meta::default(),
            Err(e) => return Err(io(&meta_path)(e)),
        };
        let mut parsed = BTreeMap::new();
        for (p, m) in meta.paths {
            let path = PathBuf::from(&p);
            if !sources.iter().any(|s| s.path == path) {
                return Err(OverlayError::Meta {
                    path: meta_path,
                    message: format!("paths.\"{p}\": no such file or folder in the overlay"),
                });
            }
            let mode = match m.mode {
                Some(s) => Some(
                    u32::from_str_radix(s.trim_start_matches("0o"), 8)
                        .ok()
                        .filter(|v| *v <= 0o7777)
                        .ok_or_else(|| OverlayError::Meta {
                            path: meta_path.clone(),
                            message: format!(
                                "paths.\"{p}\".mode: `{s}` is not an octal mode such as \"0644\""
                            ),
                        })?,
                ),
                None => None,
            };
            parsed.insert(
                path,
                Attrs {
                    mode,
                    uid: m.uid,
                    gid: m.gid,
                },
            );
        }
        Ok(Overlay {
            root: root.to_owned(),
            sources,
            meta: parsed,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Renders every template with `context` and returns the entries in path
    /// order (parents before children).
    pub fn render(&self, context: &serde_json::Value) -> Result<Vec<Entry>, OverlayError> {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        let mut out = Vec::with_capacity(self.sources.len());
        for s in &self.sources {
            let (kind, default_mode) = match &s.kind {
                SourceKind::Dir => (Kind::Dir, 0o755),
                SourceKind::File { executable } => (
                    Kind::File(fs::read(&s.from).map_err(io(&s.from))?),
                    if *executable { 0o755 } else { 0o644 },
                ),
                SourceKind::Template => {
                    let text = fs::read_to_string(&s.from).map_err(io(&s.from))?;
                    let rendered = hb.render_template_with_context(
                        &text,
                        &handlebars::Context::wraps(context).map_err(|e| OverlayError::Render {
                            path: s.from.clone(),
                            message: e.to_string(),
                        })?,
                    );
                    let rendered = rendered.map_err(|e| template_error(&s.from, &e))?;
                    (Kind::File(rendered.into_bytes()), 0o644)
                }
                SourceKind::Symlink(t) => (Kind::Symlink(t.clone()), 0o777),
            };
            let Attrs { mode, uid, gid } = self.meta.get(&s.path).copied().unwrap_or_default();
            out.push(Entry {
                path: s.path.clone(),
                kind,
                mode: mode.unwrap_or(default_mode),
                uid: uid.unwrap_or(0),
                gid: gid.unwrap_or(0),
            });
        }
        Ok(out)
    }
}

fn template_error(path: &Path, e: &handlebars::RenderError) -> OverlayError {
    let message = match e.reason() {
        RenderErrorReason::MissingVariable(Some(v)) => {
            format!("template needs variable `{v}`, which is not defined")
        }
        RenderErrorReason::MissingVariable(None) => {
            "template needs a variable that is not defined".to_owned()
        }
        RenderErrorReason::TemplateError(t) => format!("template does not parse: {}", t.reason()),
        other => other.to_string(),
    };
    let (line, column) = match e.reason() {
        RenderErrorReason::TemplateError(t) => t.pos().unwrap_or((0, 0)),
        _ => (e.line_no.unwrap_or(0), e.column_no.unwrap_or(0)),
    };
    OverlayError::Template {
        path: path.to_owned(),
        line,
        column,
        message,
    }
}

fn toml_error(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {}", e.message())
        }
        None => e.message().to_owned(),
    }
}

fn walk(root: &Path, rel: &Path, out: &mut Vec<Source>) -> Result<(), OverlayError> {
    let dir = root.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(io(&dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io(&dir))?;
    names.sort();
    for name in names {
        let rel_path = rel.join(&name);
        if rel.as_os_str().is_empty() && (name == META_FILE || name == ".keep") {
            continue;
        }
        if name == ".keep" {
            continue;
        }
        let from = root.join(&rel_path);
        let md = fs::symlink_metadata(&from).map_err(io(&from))?;
        let ft = md.file_type();
        if ft.is_symlink() {
            let target = fs::read_link(&from).map_err(io(&from))?;
            out.push(Source {
                from,
                path: rel_path,
                kind: SourceKind::Symlink(target),
            });
        } else if ft.is_dir() {
            out.push(Source {
                from: from.clone(),
                path: rel_path.clone(),
                kind: SourceKind::Dir,
            });
            walk(root, &rel_path, out)?;
        } else if ft.is_file() {
            let name = name.to_string_lossy();
            if let Some(stem) = name.strip_suffix(TEMPLATE_SUFFIX) {
                out.push(Source {
                    from,
                    path: rel.join(stem),
                    kind: SourceKind::Template,
                });
            } else {
                let executable = md.permissions().mode() & 0o111 != 0;
                out.push(Source {
                    from,
                    path: rel_path,
                    kind: SourceKind::File { executable },
                });
            }
        } else {
            return Err(OverlayError::Meta {
                path: from,
                message: "only files, folders and symbolic links belong in an overlay".into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("etc/ssh")).unwrap();
        fs::write(r.join("etc/motd"), "hello\n").unwrap();
        fs::write(r.join("etc/hostname.hbs"), "{{node.name}}\n").unwrap();
        fs::write(r.join("etc/ssh/key"), "secret").unwrap();
        fs::write(r.join("etc/run.sh"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(r.join("etc/run.sh"), fs::Permissions::from_mode(0o775)).unwrap();
        // What the checkout says about this file must not matter.
        fs::set_permissions(r.join("etc/ssh/key"), fs::Permissions::from_mode(0o666)).unwrap();
        symlink("motd", r.join("etc/motd.link")).unwrap();
        fs::write(r.join(META_FILE), "[paths.\"etc/ssh/key\"]\nmode = \"0600\"\n[paths.\"etc/ssh\"]\nmode = \"0700\"\nuid = 5\n").unwrap();
        d
    }

    #[test]
    fn renders_and_takes_modes_from_the_overlay() {
        let d = tree();
        let o = Overlay::load(d.path()).unwrap();
        let entries = o
            .render(&serde_json::json!({"node": {"name": "blade01", "x": "a=b"}}))
            .unwrap();
        let get = |p: &str| entries.iter().find(|e| e.path == Path::new(p)).unwrap();
        assert_eq!(get("etc/hostname").kind, Kind::File(b"blade01\n".to_vec()));
        assert_eq!(get("etc/ssh/key").mode, 0o600);
        assert_eq!((get("etc/ssh").mode, get("etc/ssh").uid), (0o700, 5));
        assert_eq!(get("etc/motd").mode, 0o644);
        assert_eq!(get("etc/run.sh").mode, 0o755);
        assert_eq!(get("etc/motd.link").kind, Kind::Symlink("motd".into()));
        assert!(!entries.iter().any(|e| e.path == Path::new(META_FILE)));
        let paths: Vec<_> = entries.iter().map(|e| e.path.clone()).collect();
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted);
    }

    #[test]
    fn does_not_escape_html() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("cmdline.hbs"), "{{args}}").unwrap();
        let o = Overlay::load(d.path()).unwrap();
        let e = o
            .render(&serde_json::json!({"args": "console=ttyS0 a<b & 'c'"}))
            .unwrap();
        assert_eq!(e[0].kind, Kind::File(b"console=ttyS0 a<b & 'c'".to_vec()));
    }

    #[test]
    fn missing_variable_names_template_line_and_variable() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("a.conf.hbs"), "x\ny = {{node.nope}}\n").unwrap();
        let o = Overlay::load(d.path()).unwrap();
        let err = o
            .render(&serde_json::json!({"node": {}}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("a.conf.hbs:2:"), "{err}");
        assert!(err.contains("node.nope"), "{err}");
    }

    #[test]
    fn meta_for_a_missing_path_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        fs::write(
            d.path().join(META_FILE),
            "[paths.\"etc/nope\"]\nmode = \"0600\"\n",
        )
        .unwrap();
        let err = Overlay::load(d.path()).unwrap_err().to_string();
        assert!(err.contains("etc/nope"), "{err}");
        fs::write(d.path().join(META_FILE), "[paths.x]\nmod = \"0600\"\n").unwrap();
        let err = Overlay::load(d.path()).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }
}
