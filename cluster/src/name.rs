//! Node names and node ranges such as `blade[01-16]`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest node name: `vlx-swap-<name>` must fit the 36 UTF-16 code units of
/// a GPT partition name (UEFI 2.10, table 5.6), and `vlx-swap-` takes nine.
pub const MAX_NODE_NAME: usize = 36 - contracts::names::label::SWAP_PREFIX.len();

/// A node's host name: one DNS label (RFC 1123) in lower case, short enough
/// for its partition labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeName(String);

impl NodeName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks one DNS label: letters, digits and inner hyphens, 1 to `max` long.
pub fn check_label(s: &str, max: usize) -> Result<(), String> {
    if s.is_empty() {
        return Err("it is empty".into());
    }
    if s.len() > max {
        return Err(format!(
            "it is {} characters long; at most {max} fit",
            s.len()
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "`{c}` is not allowed; use lower-case letters, digits and hyphens"
        ));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("it starts or ends with a hyphen".into());
    }
    Ok(())
}

/// Checks a DNS domain: dot-separated labels, 253 characters at most.
pub fn check_domain(s: &str) -> Result<(), String> {
    if s.len() > 253 {
        return Err(format!(
            "it is {} characters long; at most 253 fit",
            s.len()
        ));
    }
    for label in s.split('.') {
        check_label(label, 63).map_err(|e| format!("label `{label}`: {e}"))?;
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{name}` is not a valid host name: {reason}")]
pub struct NodeNameError {
    name: String,
    reason: String,
}

impl FromStr for NodeName {
    type Err = NodeNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| NodeNameError {
            name: s.to_owned(),
            reason,
        };
        check_label(s, MAX_NODE_NAME).map_err(err)?;
        // Every node resolves its own name: `localhost` is the loopback
        // address on every machine (RFC 6761), and an all-digit name is
        // read as an IPv4 number by inet_aton (`1234` is 0.0.4.210).
        if s == "localhost" {
            return Err(err(
                "it names the loopback address on every machine; give the node its own name".into(),
            ));
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err(
                "it is all digits, which resolvers read as an IPv4 address; start it with a letter"
                    .into(),
            ));
        }
        Ok(NodeName(s.to_owned()))
    }
}

impl TryFrom<String> for NodeName {
    type Error = NodeNameError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<NodeName> for String {
    fn from(n: NodeName) -> String {
        n.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A name pattern with one numeric range, `prefix[first-last]suffix`.
///
/// The numbers are zero-padded to the width of `first` when it is written
/// with a leading zero (`blade[01-16]` gives `blade01` … `blade16`), and
/// printed plainly otherwise (`n[8-10]` gives `n8`, `n9`, `n10`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRange {
    prefix: String,
    suffix: String,
    first: u64,
    last: u64,
    width: usize,
}

impl NameRange {
    /// `Ok(None)` when `s` holds no `[`: a plain name, not a range.
    pub fn parse(s: &str) -> Result<Option<NameRange>, String> {
        let Some(open) = s.find('[') else {
            return Ok(None);
        };
        let close = s[open..]
            .find(']')
            .map(|i| i + open)
            .ok_or("`[` is not closed by `]`")?;
        let (prefix, suffix) = (&s[..open], &s[close + 1..]);
        if suffix.contains(['[', ']']) {
            return Err("only one `[first-last]` range is allowed in a name".into());
        }
        let inner = &s[open + 1..close];
        let (a, b) = inner
            .split_once('-')
            .ok_or("write the range as `[first-last]`, e.g. `blade[01-16]`")?;
        let num = |t: &str| {
            if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
                Err(format!("`{t}` is not a number"))
            } else {
                t.parse::<u64>().map_err(|_| format!("`{t}` is too large"))
            }
        };
        let (first, last) = (num(a)?, num(b)?);
        if first > last {
            return Err(format!("the range starts at {first}, after its end {last}"));
        }
        let width = if a.len() > 1 && a.starts_with('0') {
            a.len()
        } else {
            0
        };
        Ok(Some(NameRange {
            prefix: prefix.to_owned(),
            suffix: suffix.to_owned(),
            first,
            last,
            width,
        }))
    }

    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `i`-th name of the range (0-based).
    pub fn name(&self, i: u64) -> String {
        format!(
            "{}{:0w$}{}",
            self.prefix,
            self.first + i,
            self.suffix,
            w = self.width
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_expand() {
        let r = NameRange::parse("blade[01-16]").unwrap().unwrap();
        assert_eq!(r.len(), 16);
        assert_eq!(r.name(0), "blade01");
        assert_eq!(r.name(15), "blade16");
        let r = NameRange::parse("n[8-10]x").unwrap().unwrap();
        assert_eq!(
            (r.name(0), r.name(2)),
            ("n8x".to_owned(), "n10x".to_owned())
        );
        let r = NameRange::parse("r[001-100]").unwrap().unwrap();
        assert_eq!(r.name(99), "r100");
        assert!(NameRange::parse("blade01").unwrap().is_none());
        for bad in ["b[1-", "b[a-3]", "b[3-1]", "b[1-2][3-4]", "b[12]", "b[-2]"] {
            assert!(NameRange::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_names() {
        assert!("blade01".parse::<NodeName>().is_ok());
        for bad in [
            "",
            "Blade01",
            "-a",
            "a-",
            "a_b",
            "a.b",
            "abcdefghijklmnopqrstuvwxyz0123",
        ] {
            assert!(bad.parse::<NodeName>().is_err(), "{bad}");
        }
        assert!(check_domain("cluster.example.org").is_ok());
        assert!(check_domain("bad..org").is_err());
    }
}
