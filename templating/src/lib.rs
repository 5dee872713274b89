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
//!
//! Rendering many contexts that share most of their data (a cluster's
//! nodes) goes through one [`Renderer`]: files are read and templates parsed
//! once, and a `{{#cluster_wide}}...{{/cluster_wide}}` block is rendered
//! once, from the shared data alone, and reused ([`CLUSTER_WIDE`]).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
    /// order (parents before children). `{{#cluster_wide}}` blocks see the
    /// same `context`.
    pub fn render(&self, context: &serde_json::Value) -> Result<Vec<Entry>, OverlayError> {
        self.renderer(context.clone())?
            .render(serde_json::Map::new())
    }

    /// A renderer for many contexts that share `shared` (a JSON object):
    /// the overlay's files are read and its templates parsed once, and
    /// each `{{#cluster_wide}}` block is rendered once, with `shared` alone
    /// as its context, and reused by every [`Renderer::render`].
    pub fn renderer(&self, shared: serde_json::Value) -> Result<Renderer<'_>, OverlayError> {
        if !shared.is_object() {
            return Err(OverlayError::Render {
                path: self.root.clone(),
                message: "the template context is not a JSON object".into(),
            });
        }
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        hb.register_helper(
            CLUSTER_WIDE,
            Box::new(ClusterWide {
                context: handlebars::Context::from(shared.clone()),
                cache: Mutex::new(HashMap::new()),
            }),
        );
        let mut sources = Vec::with_capacity(self.sources.len());
        for s in &self.sources {
            let (kind, default_mode) = match &s.kind {
                SourceKind::Dir => (Prepared::Dir, 0o755),
                SourceKind::File { executable } => (
                    Prepared::File(fs::read(&s.from).map_err(io(&s.from))?),
                    if *executable { 0o755 } else { 0o644 },
                ),
                SourceKind::Template => {
                    let text = fs::read_to_string(&s.from).map_err(io(&s.from))?;
                    let name = s.from.display().to_string();
                    let t = handlebars::Template::compile_with_name(&text, name.clone())
                        .map_err(|e| parse_error(&s.from, &e))?;
                    hb.register_template(&name, t);
                    (Prepared::Template(name), 0o644)
                }
                SourceKind::Symlink(t) => (Prepared::Symlink(t.clone()), 0o777),
            };
            let Attrs { mode, uid, gid } = self.meta.get(&s.path).copied().unwrap_or_default();
            sources.push((
                s,
                kind,
                Attrs {
                    mode: Some(mode.unwrap_or(default_mode)),
                    uid: Some(uid.unwrap_or(0)),
                    gid: Some(gid.unwrap_or(0)),
                },
            ));
        }
        Ok(Renderer {
            sources,
            hb,
            context: handlebars::Context::from(shared),
        })
    }
}

/// The block helper whose body is the same for every context of a
/// [`Renderer`]: `{{#cluster_wide}}...{{/cluster_wide}}`. It is rendered
/// once, with the renderer's shared context only (so that a reference to
/// anything else is a strict-mode error, not a stale value), and its text
/// reused. This is what keeps a cluster's tables (every node's DHCP and DNS
/// entries in every node's files) from costing nodes x nodes.
pub const CLUSTER_WIDE: &str = "cluster_wide";

struct ClusterWide {
    context: handlebars::Context,
    /// Rendered text by block: the address of the block's template, which
    /// the registry holding this helper owns and never moves.
    cache: Mutex<HashMap<usize, String>>,
}

impl handlebars::HelperDef for ClusterWide {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &handlebars::Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        _: &'rc handlebars::Context,
        _: &mut handlebars::RenderContext<'reg, 'rc>,
        out: &mut dyn handlebars::Output,
    ) -> handlebars::HelperResult {
        use handlebars::Renderable;
        let poisoned = || RenderErrorReason::Other("a cluster_wide block panicked".into());
        let t = h.template().ok_or_else(|| {
            RenderErrorReason::Other(format!(
                "{CLUSTER_WIDE} is a block: {{{{#{CLUSTER_WIDE}}}}}...{{{{/{CLUSTER_WIDE}}}}}"
            ))
        })?;
        let key = std::ptr::from_ref(t) as usize;
        if let Some(text) = self.cache.lock().map_err(|_| poisoned())?.get(&key) {
            out.write(text)?;
            return Ok(());
        }
        // Not under the lock: a block may hold another.
        let mut rc = handlebars::RenderContext::new(None);
        let mut s = handlebars::StringOutput::new();
        t.render(r, &self.context, &mut rc, &mut s)?;
        let text = s
            .into_string()
            .map_err(|e| RenderErrorReason::Other(e.to_string()))?;
        out.write(&text)?;
        self.cache.lock().map_err(|_| poisoned())?.insert(key, text);
        Ok(())
    }
}

/// A source ready to render: files read, templates parsed and registered.
#[derive(Debug)]
enum Prepared {
    Dir,
    File(Vec<u8>),
    /// The template's name in the registry.
    Template(String),
    Symlink(PathBuf),
}

/// Renders one overlay for many contexts that share most of their data;
/// made by [`Overlay::renderer`].
pub struct Renderer<'a> {
    /// Every source with its prepared form and final mode and owner.
    sources: Vec<(&'a Source, Prepared, Attrs)>,
    hb: Handlebars<'static>,
    /// The shared context; [`Renderer::render`] lays its keys over it for
    /// one render and takes them off again.
    context: handlebars::Context,
}

impl std::fmt::Debug for Renderer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("sources", &self.sources.len())
            .finish_non_exhaustive()
    }
}

impl Renderer<'_> {
    /// Renders every template with the shared context plus `own` (its keys
    /// replace the shared ones of the same name for this render only) and
    /// returns the entries in path order (parents before children). Costs
    /// what `own` and the templates' output cost, not what the shared
    /// context holds: nothing of it is copied.
    pub fn render(
        &mut self,
        own: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Vec<Entry>, OverlayError> {
        let mut displaced = Vec::with_capacity(own.len());
        if let Some(data) = self.context.data_mut().as_object_mut() {
            for (k, v) in own {
                let old = data.insert(k.clone(), v);
                displaced.push((k, old));
            }
        }
        let out = self.render_all();
        if let Some(data) = self.context.data_mut().as_object_mut() {
            for (k, old) in displaced.into_iter().rev() {
                match old {
                    Some(v) => data.insert(k, v),
                    None => data.remove(&k),
                };
            }
        }
        out
    }

    fn render_all(&self) -> Result<Vec<Entry>, OverlayError> {
        let mut out = Vec::with_capacity(self.sources.len());
        for (s, prepared, attrs) in &self.sources {
            let kind = match prepared {
                Prepared::Dir => Kind::Dir,
                Prepared::File(bytes) => Kind::File(bytes.clone()),
                Prepared::Template(name) => {
                    let text = self
                        .hb
                        .render_with_context(name, &self.context)
                        .map_err(|e| template_error(&s.from, &e))?;
                    Kind::File(text.into_bytes())
                }
                Prepared::Symlink(t) => Kind::Symlink(t.clone()),
            };
            out.push(Entry {
                path: s.path.clone(),
                kind,
                mode: attrs.mode.unwrap_or(0o644),
                uid: attrs.uid.unwrap_or(0),
                gid: attrs.gid.unwrap_or(0),
            });
        }
        Ok(out)
    }
}

fn parse_error(path: &Path, e: &handlebars::TemplateError) -> OverlayError {
    let (line, column) = e.pos().unwrap_or((0, 0));
    OverlayError::Template {
        path: path.to_owned(),
        line,
        column,
        message: format!("template does not parse: {}", e.reason()),
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

    #[test]
    fn cluster_wide_blocks_see_the_shared_context_only() {
        let d = tempfile::tempdir().unwrap();
        fs::write(
            d.path().join("hosts.hbs"),
            "# {{node.name}}\n{{#cluster_wide}}\n{{#each nodes}}\n{{this}}\n{{/each}}\n{{/cluster_wide}}\n",
        )
        .unwrap();
        let o = Overlay::load(d.path()).unwrap();
        let mut r = o
            .renderer(serde_json::json!({"nodes": ["a", "b"]}))
            .unwrap();
        let own = |name: &str| {
            serde_json::json!({"node": {"name": name}})
                .as_object()
                .unwrap()
                .clone()
        };
        let a = r.render(own("a")).unwrap();
        let b = r.render(own("b")).unwrap();
        assert_eq!(a[0].kind, Kind::File(b"# a\na\nb\n".to_vec()));
        assert_eq!(b[0].kind, Kind::File(b"# b\na\nb\n".to_vec()));

        // A node's own key is not there inside the block: strict mode says
        // so, instead of reusing the first node's value for every node.
        fs::write(
            d.path().join("hosts.hbs"),
            "{{#cluster_wide}}\n{{node.name}}\n{{/cluster_wide}}\n",
        )
        .unwrap();
        let o = Overlay::load(d.path()).unwrap();
        let mut r = o.renderer(serde_json::json!({"nodes": []})).unwrap();
        let err = r.render(own("a")).unwrap_err().to_string();
        assert!(err.contains("hosts.hbs:2:"), "{err}");
        assert!(err.contains("node.name"), "{err}");
    }

    #[test]
    fn own_keys_replace_shared_ones_for_one_render_only() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("x.hbs"), "{{x}}").unwrap();
        let o = Overlay::load(d.path()).unwrap();
        let mut r = o.renderer(serde_json::json!({"x": "shared"})).unwrap();
        let own = serde_json::json!({"x": "own"}).as_object().unwrap().clone();
        assert_eq!(r.render(own).unwrap()[0].kind, Kind::File(b"own".to_vec()));
        assert_eq!(
            r.render(serde_json::Map::new()).unwrap()[0].kind,
            Kind::File(b"shared".to_vec())
        );
        // A template that does not parse is named when the renderer is made.
        fs::write(d.path().join("x.hbs"), "a\n{{#if}}\n").unwrap();
        let err = Overlay::load(d.path())
            .unwrap()
            .renderer(serde_json::json!({}))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("x.hbs:") && err.contains("does not parse"),
            "{err}"
        );
    }
}
