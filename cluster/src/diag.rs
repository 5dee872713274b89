//! Diagnostics that a person can act on: each names the file, the line and
//! column, the key path, what is wrong, and what would be valid.

use std::fmt;
use std::ops::Range;

use serde::Serialize;

/// A byte range in a profile's text.
pub type Span = Range<usize>;

/// The text of one profile and where it came from, with a line index so that
/// byte offsets turn into line and column numbers.
#[derive(Debug, Clone)]
pub struct Source {
    name: String,
    text: String,
    line_starts: Vec<usize>,
}

impl Source {
    /// `name` is how the file is shown in messages (usually the path as the
    /// user gave it).
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Source {
        let text = text.into();
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Source {
            name: name.into(),
            text,
            line_starts,
        }
    }

    /// A source from a file's bytes; text that is not UTF-8 (TOML is UTF-8)
    /// is one diagnostic naming the line, column and byte offset of the
    /// first byte that is not.
    pub fn from_bytes(name: impl Into<String>, bytes: Vec<u8>) -> Result<Source, Diagnostics> {
        let name = name.into();
        match String::from_utf8(bytes) {
            Ok(text) => Ok(Source::new(name, text)),
            Err(e) => {
                let bad = e.utf8_error().valid_up_to();
                let bytes = e.into_bytes();
                let valid = String::from_utf8_lossy(&bytes[..bad]).into_owned();
                let (line, column) = Source::new("", valid).line_col(bad);
                Err(Diagnostics(vec![Diagnostic {
                    file: name,
                    line,
                    column,
                    key: "(file)".into(),
                    message: format!(
                        "the file is not UTF-8: byte 0x{:02x} at byte offset {bad}",
                        bytes[bad]
                    ),
                    help: Some(
                        "profiles are TOML, which is UTF-8 text; convert it (iconv -t UTF-8)"
                            .into(),
                    ),
                }]))
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// One-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line + 1, col + 1)
    }
}

/// One problem in a profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Dotted key path, e.g. `nodes[1].mac`.
    pub key: String,
    pub message: String,
    /// What would be valid instead.
    pub help: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.key, self.message
        )?;
        if let Some(help) = &self.help {
            write!(f, "\n    help: {help}")?;
        }
        Ok(())
    }
}

/// Every problem found in one run, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        let n = self.0.len();
        write!(
            f,
            "{n} error{} in the profile",
            if n == 1 { "" } else { "s" }
        )
    }
}

/// Collects diagnostics against one [`Source`].
#[derive(Debug)]
pub struct Report<'s> {
    source: &'s Source,
    found: Vec<(usize, Diagnostic)>,
}

impl<'s> Report<'s> {
    pub fn new(source: &'s Source) -> Report<'s> {
        Report {
            source,
            found: Vec::new(),
        }
    }

    pub fn source(&self) -> &'s Source {
        self.source
    }

    /// Records a problem at `span` under `key`.
    pub fn error(
        &mut self,
        span: &Span,
        key: &str,
        message: impl Into<String>,
        help: impl Into<Option<String>>,
    ) {
        let (line, column) = self.source.line_col(span.start);
        self.found.push((
            span.start,
            Diagnostic {
                file: self.source.name.clone(),
                line,
                column,
                key: key.to_owned(),
                message: message.into(),
                help: help.into(),
            },
        ));
    }

    pub fn has_errors(&self) -> bool {
        !self.found.is_empty()
    }

    /// The diagnostics in file order (stable for problems at the same place).
    pub fn finish(mut self) -> Result<(), Diagnostics> {
        if self.found.is_empty() {
            return Ok(());
        }
        self.found.sort_by_key(|(offset, _)| *offset);
        self.found.dedup_by(|a, b| a.1 == b.1);
        Err(Diagnostics(
            self.found.into_iter().map(|(_, d)| d).collect(),
        ))
    }
}

/// A value from the profile with the place it was written and its key path,
/// so that checks after parsing can still point at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At<T> {
    pub value: T,
    pub span: Span,
    pub key: String,
}

impl<T> At<T> {
    pub fn new(value: T, span: Span, key: impl Into<String>) -> At<T> {
        At {
            value,
            span,
            key: key.into(),
        }
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> At<U> {
        At {
            value: f(self.value),
            span: self.span,
            key: self.key,
        }
    }

    /// A sibling value at the same place (for values derived from this one).
    pub fn with<U>(&self, value: U) -> At<U> {
        At {
            value,
            span: self.span.clone(),
            key: self.key.clone(),
        }
    }
}

impl<T> std::ops::Deref for At<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        let s = Source::new("x.toml", "a = 1\nbé = 2\n\nc = 3");
        assert_eq!(s.line_col(0), (1, 1));
        assert_eq!(s.line_col(4), (1, 5));
        assert_eq!(s.line_col(6), (2, 1));
        // `=` after a two-byte character is the fourth character.
        assert_eq!(s.line_col(10), (2, 4));
        assert_eq!(s.line_col(15), (4, 1));
        assert_eq!(s.line_col(999), (4, 6));
    }

    #[test]
    fn report_sorts_by_position() {
        let s = Source::new("x.toml", "a = 1\nb = 2\n");
        let mut r = Report::new(&s);
        r.error(&(6..7), "b", "second", None);
        r.error(&(0..1), "a", "first", Some("fix it".into()));
        let d = r.finish().unwrap_err();
        assert_eq!(d.0[0].key, "a");
        assert_eq!(d.0[1].line, 2);
        assert!(
            d.to_string()
                .contains("x.toml:1:1: a: first\n    help: fix it")
        );
        assert!(d.to_string().ends_with("2 errors in the profile"));
    }
}
