//! TOML files read with serde (the host, guest and media profiles), their
//! problems told in the cluster profile's voice: each [`Diagnostic`] names
//! the file, line, column and key, and says what would be valid.
//!
//! serde stops at the first problem; [`parse`] goes on past unknown keys
//! (the usual typo), so that one run names every one of them: each is
//! recorded, blanked out of a working copy of the text (offsets kept, so
//! lines and columns stay true), and the copy is read again. The first
//! problem of another kind (a wrong type, a missing key) ends the run.
//! Checks made after parsing point at their key with [`Located::error`].

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diag::{Diagnostic, Diagnostics, Source, Span};

/// More unknown keys than this in one file: the rest wait for the next run.
const MAX_UNKNOWN: usize = 64;

/// A parsed file with the place of every key, for diagnostics that come
/// after serde (checks of values).
#[derive(Debug)]
pub struct Located<'s> {
    source: &'s Source,
    /// Every key path with the span of its key and of its value, in file
    /// order; array elements as `key[i]`.
    keys: Vec<(String, Span, Span)>,
}

impl<'s> Located<'s> {
    /// A diagnostic at `key` (a dotted path, `rootfs.sha256`): at its value
    /// when the file sets it, else at the table that should hold it, else
    /// at the top of the file.
    pub fn error(&self, key: &str, message: impl Into<String>, help: Option<String>) -> Diagnostic {
        let span = self
            .value_span(key)
            .or_else(|| {
                let mut k = key;
                while let Some((up, _)) = k.rsplit_once('.') {
                    if let Some(s) = self.key_span(up) {
                        return Some(s);
                    }
                    k = up;
                }
                None
            })
            .unwrap_or(0..0);
        at(self.source, &span, key, message, help)
    }

    fn value_span(&self, key: &str) -> Option<Span> {
        self.keys
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, v)| v.clone())
    }

    fn key_span(&self, key: &str) -> Option<Span> {
        self.keys
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, k, _)| k.clone())
    }

    /// The deepest key whose key or value covers `span`.
    fn key_at(&self, span: &Span) -> Option<&(String, Span, Span)> {
        let covers = |s: &Span| s.start <= span.start && span.end <= s.end.max(s.start + 1);
        self.keys
            .iter()
            .filter(|(_, k, v)| covers(k) || covers(v))
            .max_by_key(|(k, _, _)| k.matches(['.', '[']).count())
    }
}

fn at(
    source: &Source,
    span: &Span,
    key: &str,
    message: impl Into<String>,
    help: Option<String>,
) -> Diagnostic {
    let (line, column) = source.line_col(span.start);
    Diagnostic {
        file: source.name().to_owned(),
        line,
        column,
        key: key.to_owned(),
        message: message.into(),
        help,
    }
}

fn walk(prefix: &str, t: &DeTable<'_>, out: &mut Vec<(String, Span, Span)>) {
    for (k, v) in t.iter() {
        let path = crate::read::join(prefix, k.get_ref());
        out.push((path.clone(), k.span(), v.span()));
        walk_value(&path, v, out);
    }
}

fn walk_value(path: &str, v: &Spanned<DeValue<'_>>, out: &mut Vec<(String, Span, Span)>) {
    match v.get_ref() {
        DeValue::Table(t) => walk(path, t, out),
        DeValue::Array(a) => {
            for (i, e) in a.iter().enumerate() {
                let p = format!("{path}[{i}]");
                out.push((p.clone(), e.span(), e.span()));
                walk_value(&p, e, out);
            }
        }
        _ => {}
    }
}

/// Reads `source` into `T` (whose tables should `deny_unknown_fields`):
/// every unknown key, or the first other problem, as [`Diagnostics`].
/// Also returns where each key is, for the checks that follow.
pub fn parse<T: DeserializeOwned>(source: &Source) -> Result<(T, Located<'_>), Diagnostics> {
    let text = source.text();
    let (root, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        return Err(Diagnostics(
            errors
                .iter()
                .map(|e| {
                    let span = e.span().unwrap_or(0..0);
                    at(
                        source,
                        &span,
                        "(syntax)",
                        format!("not valid TOML: {}", e.message().trim_end()),
                        None,
                    )
                })
                .collect(),
        ));
    }
    let mut keys = Vec::new();
    walk("", root.get_ref(), &mut keys);
    let located = Located { source, keys };

    let mut work = text.to_owned();
    let mut found: Vec<Diagnostic> = Vec::new();
    loop {
        let e = match toml::from_str::<T>(&work) {
            Ok(v) if found.is_empty() => return Ok((v, located)),
            Ok(_) => return Err(Diagnostics(found)),
            Err(e) => e,
        };
        let message = e.message().trim_end();
        let span = e.span().unwrap_or(0..0);
        if let Some(rest) = message.strip_prefix("unknown field `")
            && found.len() < MAX_UNKNOWN
            && let Some((name, expected)) = rest.split_once('`')
            && let Some((key, kspan, vspan)) = located.key_at(&span).cloned()
            && key.rsplit(['.', ']']).next() == Some(name)
        {
            let table = key.strip_suffix(name).unwrap_or("").trim_end_matches('.');
            let here = if table.is_empty() {
                "at the top level".to_owned()
            } else {
                format!("in [{table}]")
            };
            let valid = expected
                .trim_start_matches(", ")
                .trim_start_matches("expected one of ")
                .trim_start_matches("expected ")
                .replace('`', "")
                .replace(" or ", ", ");
            let help = (!valid.is_empty() && valid != "there are no fields")
                .then(|| format!("valid keys here: {valid}"));
            found.push(at(
                source,
                &kspan,
                &key,
                format!("unknown key `{name}` {here}"),
                help,
            ));
            // Blank the key and its value, and for a table every key in it
            // (a `[table]` header's value holds none of the lines below
            // it); keep line breaks so that the lines of what follows stay
            // where they are.
            let inner = [format!("{key}."), format!("{key}[")];
            let spans: Vec<Span> = std::iter::once(kspan.start..vspan.end.max(kspan.end))
                .chain(
                    located
                        .keys
                        .iter()
                        .filter(|(k, _, _)| inner.iter().any(|p| k.starts_with(p.as_str())))
                        .map(|(_, k, v)| k.start.min(v.start)..v.end.max(k.end)),
                )
                .collect();
            for span in spans {
                blank(&mut work, span);
            }
            continue;
        }
        let (key, message) = match message
            .strip_prefix("missing field `")
            .and_then(|r| r.split_once('`'))
        {
            Some((name, _)) => {
                // serde points at the table that lacks the key (or at the
                // whole file for the top level).
                let table = located
                    .key_at(&span)
                    .map(|(k, _, _)| k.clone())
                    .filter(|_| span.start > 0 || span.end < text.len());
                match table {
                    Some(t) => (
                        format!("{t}.{name}"),
                        format!("missing key `{name}` in [{t}]"),
                    ),
                    None => (
                        name.to_owned(),
                        format!("missing key `{name}` in the profile"),
                    ),
                }
            }
            None => (
                located
                    .key_at(&span)
                    .map_or_else(|| "(file)".to_owned(), |(k, _, _)| k.clone()),
                message.to_owned(),
            ),
        };
        found.push(at(source, &span, &key, message, None));
        found.sort_by_key(|d| (d.line, d.column));
        return Err(Diagnostics(found));
    }
}

/// Replaces `span` of `work` by spaces, line breaks kept, and the `[`
/// before it and `]` after it when only spaces stand between (the header
/// of a table).
fn blank(work: &mut String, span: Span) {
    let Some(cut) = work.get(span.clone()) else {
        return;
    };
    let spaces: String = cut
        .chars()
        .map(|c| if c == '\n' { '\n' } else { ' ' })
        .collect();
    work.replace_range(span.clone(), &spaces);
    let open = work[..span.start].trim_end_matches([' ', '[']).len();
    if work[open..span.start].contains('[') {
        let n = span.start - open;
        work.replace_range(open..span.start, &" ".repeat(n));
    }
    let close = work.len() - work[span.end..].trim_start_matches([' ', ']']).len();
    if work[span.end..close].contains(']') {
        let n = close - span.end;
        work.replace_range(span.end..close, &" ".repeat(n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // read by serde only
    struct File {
        image: Image,
        #[serde(default)]
        extra: Option<Extra>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Image {
        name: String,
        #[serde(default)]
        size: u32,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Extra {
        on: bool,
    }

    fn errors(text: &str) -> Vec<String> {
        let s = Source::new("p.toml", text);
        match parse::<File>(&s) {
            Ok(_) => Vec::new(),
            Err(d) => d.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn every_unknown_key_with_its_place() {
        let e = errors(
            "[image]\nname = \"a\"\nnmae = \"b\"\nsise = [\n  1,\n]\n[extra]\non = true\nof = 1\n",
        );
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(
            e[0].starts_with("p.toml:3:1: image.nmae: unknown key `nmae` in [image]"),
            "{e:?}"
        );
        assert!(e[0].contains("valid keys here: name, size"), "{e:?}");
        assert!(e[1].starts_with("p.toml:4:1: image.sise:"), "{e:?}");
        assert!(e[2].starts_with("p.toml:9:1: extra.of:"), "{e:?}");
    }

    #[test]
    fn unknown_tables_and_other_problems() {
        let e = errors("[image]\nname = \"a\"\n[imgae]\nname = \"b\"\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("p.toml:3:2: imgae: unknown key `imgae` at the top level"),
            "{e:?}"
        );
        let e = errors("[image]\nname = 3\n");
        assert!(e[0].starts_with("p.toml:2:8: image.name:"), "{e:?}");
        let e = errors("[image]\nsize = 3\n");
        assert!(
            e[0].starts_with("p.toml:1:1: image.name: missing key `name` in [image]"),
            "{e:?}"
        );
        let e = errors("[image\n");
        assert!(e[0].contains("(syntax): not valid TOML"), "{e:?}");
        assert!(errors("[image]\nname = \"a\"\n").is_empty());
    }

    #[test]
    fn checks_after_parsing_point_at_their_key() {
        let s = Source::new("p.toml", "[image]\nname = \"a\"\n");
        let (_, at) = parse::<File>(&s).unwrap();
        let d = at.error("image.name", "bad", None);
        assert_eq!((d.line, d.column), (2, 8));
        let d = at.error("image.size", "bad", None);
        assert_eq!((d.line, d.column), (1, 2));
    }
}
