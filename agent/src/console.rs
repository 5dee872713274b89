//! The console lines every step prints.
//!
//! Each line goes out in one `write` to standard output, which is
//! `/dev/console` for `/init` (the serial console the rig reads), so that a
//! kernel message cannot land in the middle of it.

use std::fmt::Display;
use std::io::Write;

/// The prefix of every line, which the rig and an administrator grep for.
pub const PREFIX: &str = contracts::console::AGENT;

/// Prints `vlx-node: <line>`.
pub fn say(line: impl Display) {
    let text = format!("{PREFIX} {line}\n");
    let mut out = std::io::stdout().lock();
    // Nothing useful is left to do when the console itself fails.
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}
