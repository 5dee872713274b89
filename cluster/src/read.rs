//! A reader over a spanned TOML tree that collects every problem instead of
//! stopping at the first, as serde's `deny_unknown_fields` would.
//!
//! Each accessor returns `None` after recording a diagnostic, so that the
//! profile parser can go on and report the rest of the file in the same run.

use std::fmt::Display;
use std::rc::Rc;
use std::str::FromStr;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diag::{At, Report, Span};

/// A TOML table with its place in the file and its key path.
#[derive(Debug, Clone)]
pub(crate) struct Tbl<'a, 'i> {
    table: &'a DeTable<'i>,
    span: Span,
    path: Rc<str>,
}

/// What kind of TOML value a key holds, for "expected X, found Y" messages.
fn kind(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

fn int_value(i: &toml::de::DeInteger<'_>) -> Option<i64> {
    let digits = i.as_str().replace('_', "");
    let digits = digits
        .trim_start_matches("0x")
        .trim_start_matches("0o")
        .trim_start_matches("0b");
    i64::from_str_radix(digits, i.radix()).ok()
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl<'a, 'i> Tbl<'a, 'i> {
    pub(crate) fn root(table: &'a DeTable<'i>, span: Span) -> Tbl<'a, 'i> {
        Tbl {
            table,
            span,
            path: Rc::from(""),
        }
    }

    pub(crate) fn span(&self) -> Span {
        self.span.clone()
    }

    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    pub(crate) fn key_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Where the value of `key` is written, if it is.
    pub(crate) fn table_span(&self, key: &str) -> Option<Span> {
        self.raw(key).map(|v| v.span())
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.table.get(key).is_some()
    }

    /// Records every key of this table that is not in `known`.
    pub(crate) fn check_keys(&self, rep: &mut Report<'_>, known: &[&str]) {
        for (k, _) in self.table.iter() {
            let name: &str = k.get_ref();
            if !known.contains(&name) {
                let here = if self.path.is_empty() {
                    "at the top level".to_owned()
                } else {
                    format!("in [{}]", self.path)
                };
                rep.error(
                    &k.span(),
                    &self.key_path(name),
                    format!("unknown key `{name}` {here}"),
                    Some(format!("valid keys here: {}", known.join(", "))),
                );
            }
        }
    }

    fn raw(&self, key: &str) -> Option<&'a Spanned<DeValue<'i>>> {
        self.table.get(key)
    }

    fn wrong_type(&self, rep: &mut Report<'_>, key: &str, v: &Spanned<DeValue<'_>>, want: &str) {
        rep.error(
            &v.span(),
            &self.key_path(key),
            format!("expected {want}, found {}", kind(v.get_ref())),
            None,
        );
    }

    /// Records that a required key is missing (pointing at the table).
    pub(crate) fn missing(&self, rep: &mut Report<'_>, key: &str, help: &str) {
        let here = if self.path.is_empty() {
            "the profile".to_owned()
        } else {
            format!("[{}]", self.path)
        };
        rep.error(
            &self.span(),
            &self.key_path(key),
            format!("missing key `{key}` in {here}"),
            Some(help.to_owned()),
        );
    }

    pub(crate) fn string(&self, rep: &mut Report<'_>, key: &str) -> Option<At<String>> {
        let v = self.raw(key)?;
        match v.get_ref() {
            DeValue::String(s) => Some(At::new(s.to_string(), v.span(), self.key_path(key))),
            _ => {
                self.wrong_type(rep, key, v, "a string");
                None
            }
        }
    }

    pub(crate) fn req_string(
        &self,
        rep: &mut Report<'_>,
        key: &str,
        help: &str,
    ) -> Option<At<String>> {
        if !self.has(key) {
            self.missing(rep, key, help);
            return None;
        }
        self.string(rep, key)
    }

    pub(crate) fn boolean(&self, rep: &mut Report<'_>, key: &str) -> Option<At<bool>> {
        let v = self.raw(key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some(At::new(*b, v.span(), self.key_path(key))),
            _ => {
                self.wrong_type(rep, key, v, "true or false");
                None
            }
        }
    }

    /// The key's integer value, if it holds an integer; no diagnostic.
    pub(crate) fn peek_integer(&self, key: &str) -> Option<At<i64>> {
        let v = self.raw(key)?;
        match v.get_ref() {
            DeValue::Integer(i) => int_value(i).map(|n| At::new(n, v.span(), self.key_path(key))),
            _ => None,
        }
    }

    /// The key's string value, if it holds a string; no diagnostic.
    pub(crate) fn peek_string(&self, key: &str) -> Option<String> {
        match self.raw(key)?.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => None,
        }
    }

    pub(crate) fn integer(&self, rep: &mut Report<'_>, key: &str) -> Option<At<i64>> {
        let v = self.raw(key)?;
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => int_value(i),
            _ => {
                self.wrong_type(rep, key, v, "an integer");
                return None;
            }
        };
        match parsed {
            Some(n) => Some(At::new(n, v.span(), self.key_path(key))),
            None => {
                rep.error(&v.span(), &self.key_path(key), "integer out of range", None);
                None
            }
        }
    }

    /// A string parsed with `FromStr`; a parse error becomes the message.
    pub(crate) fn parsed<T>(&self, rep: &mut Report<'_>, key: &str) -> Option<At<T>>
    where
        T: FromStr,
        T::Err: Display,
    {
        let s = self.string(rep, key)?;
        match s.value.parse::<T>() {
            Ok(v) => Some(s.with(v)),
            Err(e) => {
                rep.error(&s.span, &s.key, e.to_string(), None);
                None
            }
        }
    }

    pub(crate) fn req_parsed<T>(&self, rep: &mut Report<'_>, key: &str, help: &str) -> Option<At<T>>
    where
        T: FromStr,
        T::Err: Display,
    {
        if !self.has(key) {
            self.missing(rep, key, help);
            return None;
        }
        self.parsed(rep, key)
    }

    /// A string that must be one of `choices`.
    pub(crate) fn choice(
        &self,
        rep: &mut Report<'_>,
        key: &str,
        choices: &[&str],
    ) -> Option<At<String>> {
        let s = self.string(rep, key)?;
        if choices.contains(&s.value.as_str()) {
            Some(s)
        } else {
            rep.error(
                &s.span,
                &s.key,
                format!("`{}` is not a valid value", s.value),
                Some(format!("use one of: {}", choices.join(", "))),
            );
            None
        }
    }

    pub(crate) fn table(&self, rep: &mut Report<'_>, key: &str) -> Option<Tbl<'a, 'i>> {
        let v = self.raw(key)?;
        match v.get_ref() {
            DeValue::Table(t) => Some(Tbl {
                table: t,
                span: v.span(),
                path: Rc::from(self.key_path(key)),
            }),
            _ => {
                self.wrong_type(rep, key, v, "a table");
                None
            }
        }
    }

    /// The elements of an array, each with its key path `key[i]`.
    pub(crate) fn array(&self, rep: &mut Report<'_>, key: &str) -> Option<Vec<Elem<'a, 'i>>> {
        let v = self.raw(key)?;
        match v.get_ref() {
            DeValue::Array(a) => Some(
                a.iter()
                    .enumerate()
                    .map(|(i, e)| Elem {
                        value: e,
                        path: Rc::from(format!("{}[{i}]", self.key_path(key))),
                    })
                    .collect(),
            ),
            _ => {
                self.wrong_type(rep, key, v, "an array");
                None
            }
        }
    }

    /// An array of strings, or a single string taken as a one-element array.
    pub(crate) fn strings(&self, rep: &mut Report<'_>, key: &str) -> Option<Vec<At<String>>> {
        let v = self.raw(key)?;
        if let DeValue::String(s) = v.get_ref() {
            return Some(vec![At::new(s.to_string(), v.span(), self.key_path(key))]);
        }
        let elems = self.array(rep, key)?;
        Some(elems.into_iter().filter_map(|e| e.string(rep)).collect())
    }

    /// Entries of a table whose keys are free names (e.g. overrides by node).
    pub(crate) fn entries(
        &self,
    ) -> impl Iterator<Item = (At<String>, &'a Spanned<DeValue<'i>>)> + '_ {
        self.table.iter().map(|(k, v)| {
            (
                At::new(
                    k.get_ref().to_string(),
                    k.span(),
                    self.key_path(k.get_ref()),
                ),
                v,
            )
        })
    }
}

/// One element of an array.
#[derive(Debug, Clone)]
pub(crate) struct Elem<'a, 'i> {
    value: &'a Spanned<DeValue<'i>>,
    path: Rc<str>,
}

impl<'a, 'i> Elem<'a, 'i> {
    pub(crate) fn string(&self, rep: &mut Report<'_>) -> Option<At<String>> {
        match self.value.get_ref() {
            DeValue::String(s) => Some(At::new(s.to_string(), self.value.span(), &*self.path)),
            other => {
                rep.error(
                    &self.value.span(),
                    &self.path,
                    format!("expected a string, found {}", kind(other)),
                    None,
                );
                None
            }
        }
    }

    pub(crate) fn parsed<T>(&self, rep: &mut Report<'_>) -> Option<At<T>>
    where
        T: FromStr,
        T::Err: Display,
    {
        let s = self.string(rep)?;
        match s.value.parse::<T>() {
            Ok(v) => Some(s.with(v)),
            Err(e) => {
                rep.error(&s.span, &s.key, e.to_string(), None);
                None
            }
        }
    }

    pub(crate) fn table(&self, rep: &mut Report<'_>) -> Option<Tbl<'a, 'i>> {
        match self.value.get_ref() {
            DeValue::Table(t) => Some(Tbl {
                table: t,
                span: self.value.span(),
                path: self.path.clone(),
            }),
            other => {
                rep.error(
                    &self.value.span(),
                    &self.path,
                    format!("expected a table, found {}", kind(other)),
                    None,
                );
                None
            }
        }
    }
}

/// Wraps a named table value (from [`Tbl::entries`]) as a table reader.
pub(crate) fn as_table<'a, 'i>(
    rep: &mut Report<'_>,
    key: &At<String>,
    v: &'a Spanned<DeValue<'i>>,
) -> Option<Tbl<'a, 'i>> {
    match v.get_ref() {
        DeValue::Table(t) => Some(Tbl {
            table: t,
            span: v.span(),
            path: Rc::from(key.key.as_str()),
        }),
        other => {
            rep.error(
                &v.span(),
                &key.key,
                format!("expected a table, found {}", kind(other)),
                None,
            );
            None
        }
    }
}
