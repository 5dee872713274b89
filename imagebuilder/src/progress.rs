//! What a build reports while it runs. The library sends events; the binary
//! shows them (indicatif on a terminal, plain lines, or JSON lines).

/// One thing a build reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    /// Step `index` (from 1) of `total` begins.
    Step {
        index: usize,
        total: usize,
        what: &'a str,
    },
    /// A fact worth a line: a resolved kernel, a skipped optional binary.
    Info(&'a str),
    /// Bytes done of a long step (total when known).
    Bytes { done: u64, total: Option<u64> },
}

/// Receives events; implementations must be cheap (they run inline).
pub trait Progress: Sync {
    fn event(&self, e: Event<'_>);
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Progress for Quiet {
    fn event(&self, _: Event<'_>) {}
}

/// Numbered steps over a fixed total.
pub(crate) struct Steps<'a> {
    pub progress: &'a dyn Progress,
    pub total: usize,
    pub index: usize,
}

impl Steps<'_> {
    pub fn next(&mut self, what: &str) {
        self.index += 1;
        self.progress.event(Event::Step {
            index: self.index,
            total: self.total.max(self.index),
            what,
        });
    }
    pub fn info(&self, msg: &str) {
        self.progress.event(Event::Info(msg));
    }
}
