//! Node lists as pdsh, Slurm and ClusterShell write them:
//! `blade[01-04,07,10-12],login1` — names separated by commas, each with
//! any number of bracketed sets of numbers and ranges.
//!
//! A number is zero-padded to its own written width when written with a
//! leading zero (`[01-04]` gives `01` … `04`, `[8-10]` gives `8`, `9`,
//! `10`), as in a profile's node ranges ([`crate::name::NameRange`]).
//! Several bracketed sets multiply (`r[1-2]n[1-2]` is four names), as in
//! ClusterShell. [`fold`] writes a list back in this form.

use std::collections::BTreeMap;
use std::fmt::Write;

/// The most names one list may expand to: a typo such as `n[1-99999999]`
/// is refused instead of filling memory.
pub const MAX_NAMES: usize = 1 << 16;

/// Why a node list cannot be read, naming the part at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node list `{list}`: {what}")]
pub struct NodeListError {
    pub list: String,
    pub what: String,
}

/// Expands a node list into its names, in the order written (duplicates
/// dropped, the first kept).
pub fn expand(list: &str) -> Result<Vec<String>, NodeListError> {
    let err = |what: String| NodeListError {
        list: list.to_owned(),
        what,
    };
    let mut names = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for item in split_top(list).map_err(err)? {
        if item.is_empty() {
            return Err(err("an empty name (two commas, or one at an end)".into()));
        }
        for name in expand_item(item).map_err(err)? {
            if seen.insert(name.clone()) {
                names.push(name);
            }
            if names.len() > MAX_NAMES {
                return Err(err(format!("more than {MAX_NAMES} names")));
            }
        }
    }
    Ok(names)
}

/// Splits at the commas outside of brackets.
fn split_top(list: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0u32, 0);
    for (i, c) in list.char_indices() {
        match c {
            '[' if depth == 0 => depth = 1,
            '[' => return Err(format!("`[` inside brackets at byte {i}")),
            ']' if depth == 1 => depth = 0,
            ']' => return Err(format!("`]` without `[` at byte {i}")),
            ',' if depth == 0 => {
                parts.push(&list[start..i]);
                start = i + 1;
            }
            c if c.is_whitespace() => return Err(format!("a space at byte {i}")),
            _ => {}
        }
    }
    if depth != 0 {
        return Err("`[` is not closed by `]`".into());
    }
    parts.push(&list[start..]);
    Ok(parts)
}

/// One name with bracketed sets: every combination, the first set varying
/// slowest.
fn expand_item(item: &str) -> Result<Vec<String>, String> {
    let Some(open) = item.find('[') else {
        return Ok(vec![item.to_owned()]);
    };
    // split_top checked that brackets pair up.
    let close = item[open..]
        .find(']')
        .map(|i| i + open)
        .ok_or("`[` is not closed by `]`")?;
    let prefix = &item[..open];
    let numbers = numbers(&item[open + 1..close])?;
    let rest = expand_item(&item[close + 1..])?;
    if numbers.len().saturating_mul(rest.len()) > MAX_NAMES {
        return Err(format!("more than {MAX_NAMES} names"));
    }
    let mut out = Vec::with_capacity(numbers.len() * rest.len());
    for n in &numbers {
        for r in &rest {
            out.push(format!("{prefix}{n}{r}"));
        }
    }
    Ok(out)
}

/// `01-04,07` → `01`, `02`, `03`, `04`, `07`.
fn numbers(set: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for part in set.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let num = |t: &str| {
            if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
                Err(format!(
                    "`{part}` in `[{set}]` is not a number or a range such as 01-04"
                ))
            } else {
                t.parse::<u64>().map_err(|_| format!("`{t}` is too large"))
            }
        };
        let (first, last) = (num(a)?, num(b)?);
        if first > last {
            return Err(format!("`{part}` starts after its end"));
        }
        if last - first >= MAX_NAMES as u64 {
            return Err(format!("`{part}` is more than {MAX_NAMES} names"));
        }
        let width = if a.len() > 1 && a.starts_with('0') {
            a.len()
        } else {
            0
        };
        for n in first..=last {
            out.push(format!("{n:0width$}"));
        }
    }
    Ok(out)
}

/// Writes names as a node list: names that differ only in a trailing
/// number of the same width share brackets (`blade01`, `blade02`,
/// `blade04` → `blade[01-02,04]`). `expand(&fold(names))` gives the same
/// set of names back, sorted.
pub fn fold<S: AsRef<str>>(names: &[S]) -> String {
    // (prefix, digits' width) → numbers; names without a trailing number
    // stand alone.
    let mut groups: BTreeMap<(&str, usize), Vec<u64>> = BTreeMap::new();
    let mut plain: Vec<&str> = Vec::new();
    for name in names {
        let name = name.as_ref();
        let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (prefix, num) = name.split_at(name.len() - digits);
        match num.parse::<u64>() {
            // A number that does not print back as written (a width beyond
            // u64, or "0" padding of a single digit) stays plain.
            Ok(n) if format!("{n:0w$}", w = num.len()) == num => {
                groups.entry((prefix, num.len())).or_default().push(n)
            }
            _ => plain.push(name),
        }
    }
    let mut items: Vec<String> = plain.iter().map(|s| (*s).to_owned()).collect();
    for ((prefix, width), mut ns) in groups {
        ns.sort_unstable();
        ns.dedup();
        if let [n] = ns.as_slice() {
            items.push(format!("{prefix}{n:0width$}"));
            continue;
        }
        let mut set = String::new();
        let mut i = 0;
        while i < ns.len() {
            let mut j = i;
            while j + 1 < ns.len() && ns[j + 1] == ns[j] + 1 {
                j += 1;
            }
            if !set.is_empty() {
                set.push(',');
            }
            let _ = write!(set, "{:0width$}", ns[i]);
            if j > i {
                let _ = write!(set, "-{:0width$}", ns[j]);
            }
            i = j + 1;
        }
        items.push(format!("{prefix}[{set}]"));
    }
    items.sort();
    items.dedup();
    items.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names(list: &str) -> Vec<String> {
        expand(list).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn lists_expand_as_pdsh_writes_them() {
        assert_eq!(
            names("blade[01-04,07,10-12]"),
            [
                "blade01", "blade02", "blade03", "blade04", "blade07", "blade10", "blade11",
                "blade12"
            ]
        );
        assert_eq!(names("n[8-10]"), ["n8", "n9", "n10"]);
        assert_eq!(names("login1,n[1-2]"), ["login1", "n1", "n2"]);
        assert_eq!(names("r[1-2]n[1-2]"), ["r1n1", "r1n2", "r2n1", "r2n2"]);
        assert_eq!(
            names("blade03,blade[01-03]"),
            ["blade03", "blade01", "blade02"]
        );
        assert_eq!(names("x[7]-eth"), ["x7-eth"]);
    }

    #[test]
    fn bad_lists_say_what_is_wrong() {
        for (bad, what) in [
            ("b[1-", "not closed"),
            ("b[a-3]", "not a number"),
            ("b[3-1]", "starts after its end"),
            ("b1,,b2", "empty name"),
            ("b1,", "empty name"),
            ("b[1-2", "not closed"),
            ("b]1", "without `[`"),
            ("b[[1]]", "inside brackets"),
            ("b 1", "space"),
            ("b[1-99999999]", "more than"),
            ("r[1-300]n[1-300]", "more than"),
        ] {
            let e = expand(bad).expect_err(bad);
            assert!(e.to_string().contains(what), "{bad}: {e}");
            assert!(e.to_string().contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn fold_writes_a_list_back() {
        let n = names("blade[01-04,07,10-12],login1,n[8-10]");
        assert_eq!(fold(&n), "blade[01-04,07,10-12],login1,n10,n[8-9]");
        assert_eq!(fold(&["a"]), "a");
        assert_eq!(fold::<&str>(&[]), "");
    }

    proptest! {
        #[test]
        fn fold_then_expand_gives_the_names_back(
            names in proptest::collection::btree_set(
                ("[a-c]{1,3}", 0u64..300, 0usize..4, proptest::option::of("-[a-b]")),
                0..40,
            )
        ) {
            let names: std::collections::BTreeSet<String> = names
                .into_iter()
                .map(|(p, n, w, s)| match s {
                    // A suffix after the number keeps that name plain.
                    Some(s) => format!("{p}{n:0w$}{s}"),
                    None => format!("{p}{n:0w$}"),
                })
                .collect();
            let list: Vec<&String> = names.iter().collect();
            let folded = fold(&list);
            let back: std::collections::BTreeSet<String> = if names.is_empty() {
                Default::default()
            } else {
                expand(&folded).map_err(|e| TestCaseError::fail(e.to_string()))?.into_iter().collect()
            };
            prop_assert_eq!(back, names, "folded: {}", folded);
        }
    }
}
