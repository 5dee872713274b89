//! The `vlx.*` words of the kernel command line: the one place their keys
//! are spelled, each with the parser its reader uses and the writer its
//! producer uses, so that the two cannot drift.
//!
//! - [`node`]: what every blade boots with (written from the cluster plan
//!   by `cluster`, read by the node agent);
//! - [`media`]: what the install media's boot entries carry (written by
//!   `vlx-image media`, read by the installer environment);
//! - [`san_url`]: `iscsi://PORTAL[:PORT]/IQN[/LUN]`, the SAN as an iSCSI
//!   LUN for `vlx-install --san` and the media's `vlx.target=`;
//! - [`iscsi`]: an iSCSI root in the spellings of dracut, Debian
//!   initramfs-tools, RFC 4173 and the iBFT, read by [`node::parse`]
//!   besides the `vlx.*` names.
//!
//! Words without the [`PREFIX`] belong to the kernel or to init and are
//! skipped by both parsers; a `vlx.` key a parser does not know is an error
//! (a typo in a hand-edited boot entry must stop with its name, not be
//! ignored). A key given twice takes its last value, as the kernel does for
//! its own parameters, so that a word typed at a boot prompt wins over the
//! stored line.

mod error;
pub mod iscsi;
pub mod media;
pub mod node;
pub mod san_url;

/// What every key of ours starts with.
pub const PREFIX: &str = "vlx.";

/// Whether a command-line word is one of ours (`vlx.` anything): profiles
/// may not set them by hand, vlx writes them.
pub fn is_ours(word: &str) -> bool {
    word.starts_with(PREFIX)
}

/// Splits a command line into words the way the kernel does: at spaces,
/// except inside double quotes, which are dropped.
pub fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            c => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(word);
    }
    out
}

/// The `vlx.` words of `line` as (key without the prefix, value), in
/// order; a word without `=` has an empty value.
fn ours(line: &str) -> Vec<(String, String)> {
    words(line)
        .into_iter()
        .filter_map(|w| {
            let rest = w.strip_prefix(PREFIX)?;
            let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
            Some((key.to_owned(), value.to_owned()))
        })
        .collect()
}

/// `vlx.KEY=VALUE`.
fn word(key: &str, value: impl std::fmt::Display) -> String {
    format!("{PREFIX}{key}={value}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_like_the_kernel() {
        assert_eq!(
            words("  a=1  b=\"x y\" \"c\"=2 "),
            vec!["a=1", "b=x y", "c=2"]
        );
        assert_eq!(words(""), Vec::<String>::new());
    }

    #[test]
    fn ours_are_the_prefixed_words() {
        assert_eq!(
            ours("quiet vlx.a=1 vlx.b console=ttyS0"),
            vec![("a".into(), "1".into()), ("b".into(), String::new())]
        );
        assert!(is_ours("vlx.x=1") && !is_ours("console=ttyS0"));
    }
}
