//! Watching the node's own snapshot store: what `dmsetup status vlx-root`
//! says, and when that is worth a warning.
//!
//! A persistent dm-snapshot whose store fills is invalidated by the kernel
//! and the node loses its root, so the owner is warned at 80 % and again at
//! 95 % (each level once per boot), on the console and in
//! [`FILL_FILE`] on the node's root. The kernel's status line for a
//! snapshot target is `<start> <length> snapshot <allocated>/<total>
//! <metadata>` in 512-byte sectors, or `Invalid` once the store overflowed
//! (Documentation/admin-guide/device-mapper/snapshot.rst).

/// Where the node keeps its store's last reported fill, on its own root.
pub const FILL_FILE: &str = "var/lib/vlx/store-fill";
/// The warning levels, in percent of the store.
pub const LEVELS: [u8; 2] = [80, 95];

/// One reading of the snapshot's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// Sectors allocated (data and metadata) of the store's total.
    Used { allocated: u64, total: u64 },
    /// The store overflowed; the snapshot is gone.
    Invalid,
}

impl Usage {
    /// Percent of the store allocated, rounded down; 100 when invalid.
    pub fn percent(self) -> u8 {
        match self {
            Usage::Used { allocated, total } => {
                (u128::from(allocated) * 100 / u128::from(total.max(1))).min(100) as u8
            }
            Usage::Invalid => 100,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{line}` is not the status of a snapshot target: {why}")]
pub struct StatusError {
    pub line: String,
    pub why: &'static str,
}

/// Parses the one line `dmsetup status <name>` prints for a snapshot.
pub fn parse_status(line: &str) -> Result<Usage, StatusError> {
    let err = |why| StatusError {
        line: line.trim().to_owned(),
        why,
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [_, _, "snapshot", "Invalid", ..] | [_, _, "snapshot", "Overflow", ..] => {
            Ok(Usage::Invalid)
        }
        [_, _, "snapshot", usage, ..] => {
            let (a, t) = usage
                .split_once('/')
                .ok_or_else(|| err("no allocated/total"))?;
            let allocated = a.parse().map_err(|_| err("allocated is not a number"))?;
            let total: u64 = t.parse().map_err(|_| err("total is not a number"))?;
            if total == 0 || allocated > total {
                return Err(err("allocated is not within a nonzero total"));
            }
            Ok(Usage::Used { allocated, total })
        }
        [_, _, target, ..] if *target != "snapshot" => Err(err("another target")),
        _ => Err(err("too few fields")),
    }
}

/// The levels already reported this boot.
#[derive(Debug, Clone, Default)]
pub struct Watcher {
    reported: u8,
}

impl Watcher {
    /// The warning `usage` calls for, if it crosses a level not yet
    /// reported: the highest such level (an invalid store is 100).
    pub fn check(&mut self, usage: Usage) -> Option<u8> {
        let p = usage.percent();
        let level = match usage {
            Usage::Invalid => 100,
            Usage::Used { .. } => LEVELS.iter().rev().find(|l| p >= **l).copied()?,
        };
        (level > self.reported).then(|| {
            self.reported = level;
            level
        })
    }
}

/// The console line (and the file's content) of a warning.
pub fn warning(node: &str, usage: Usage) -> String {
    match usage {
        Usage::Invalid => format!(
            "warning: the snapshot store of {node} overflowed and is invalid: this root is lost; \
             power the node off and run vlx-install reset-node {node}"
        ),
        Usage::Used { allocated, total } => format!(
            "warning: the snapshot store of {node} is {}% full ({} of {} MiB); at 100% the kernel \
             invalidates it and the node loses its root: move growing data to the shared volume \
             and plan vlx-install reset-node {node}",
            usage.percent(),
            allocated / 2048,
            total / 2048
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_kernels_status_lines() {
        let cases: &[(&str, Result<Usage, &str>)] = &[
            (
                "0 131072 snapshot 24/32768 16\n",
                Ok(Usage::Used {
                    allocated: 24,
                    total: 32768,
                }),
            ),
            ("0 131072 snapshot Invalid", Ok(Usage::Invalid)),
            ("0 131072 snapshot Overflow", Ok(Usage::Invalid)),
            ("0 131072 linear", Err("another target")),
            (
                "0 131072 snapshot 9/8 16",
                Err("allocated is not within a nonzero total"),
            ),
            ("0 131072 snapshot x/8 16", Err("allocated is not a number")),
            ("0 131072 snapshot 24 16", Err("no allocated/total")),
            ("", Err("too few fields")),
        ];
        for (line, want) in cases {
            match (parse_status(line), want) {
                (Ok(got), Ok(w)) => assert_eq!(got, *w, "{line}"),
                (Err(e), Err(w)) => assert_eq!(e.why, *w, "{line}"),
                (got, _) => panic!("{line}: {got:?}"),
            }
        }
    }

    #[test]
    fn warns_once_per_level_at_80_and_95() {
        let mut w = Watcher::default();
        let at = |p: u64| Usage::Used {
            allocated: p * 10,
            total: 1000,
        };
        let seen: Vec<_> = [10, 79, 80, 85, 94, 95, 99, 96]
            .iter()
            .map(|p| w.check(at(*p)))
            .collect();
        assert_eq!(
            seen,
            [None, None, Some(80), None, None, Some(95), None, None]
        );
        assert_eq!(w.check(Usage::Invalid), Some(100));
        assert_eq!(w.check(Usage::Invalid), None);
        // A jump past both levels warns once, at the higher.
        let mut w = Watcher::default();
        assert_eq!(w.check(at(97)), Some(95));
        assert!(warning("n2", at(97)).contains("97% full"));
        assert!(warning("n2", Usage::Invalid).contains("reset-node n2"));
    }
}
