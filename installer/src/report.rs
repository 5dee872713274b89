//! Progress of an install for people and for tools: a bar on a terminal,
//! plain rate-limited lines in logs, one JSON object per line with `--json`.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::apply::{Event, Reporter};
use crate::journal::Step;

/// Reports to standard error for people.
#[derive(Debug)]
pub struct Console {
    tty: bool,
    state: Mutex<ConsoleState>,
}

#[derive(Debug, Default)]
struct ConsoleState {
    bar: Option<ProgressBar>,
    last_line: Option<Instant>,
}

/// Plain lines about bytes copied at most this often, so logs stay short.
const LOG_EVERY: Duration = Duration::from_secs(5);

impl Console {
    pub fn new() -> Console {
        Console {
            tty: std::io::stderr().is_terminal(),
            state: Mutex::new(ConsoleState::default()),
        }
    }
}

impl Console {
    /// Plain lines even on a terminal: for a serial console, where a
    /// redrawn bar would scroll, and for logs read by machines.
    pub fn lines() -> Console {
        Console {
            tty: false,
            state: Mutex::new(ConsoleState::default()),
        }
    }
}

impl Default for Console {
    fn default() -> Self {
        Console::new()
    }
}

impl Reporter for Console {
    fn event(&self, event: Event<'_>) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        match event {
            Event::Bytes { step, done, total } => {
                // The bar stays full while the step syncs and reads back:
                // say so instead of "100 % eta 0s".
                let phase = if done >= total {
                    "written; syncing and reading back"
                } else {
                    "writing"
                };
                if self.tty {
                    let bar = st.bar.get_or_insert_with(|| {
                        let b = ProgressBar::new(total);
                        if let Ok(style) = ProgressStyle::with_template(
                            "  {msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                        ) {
                            b.set_style(style.progress_chars("=> "));
                        }
                        b
                    });
                    bar.set_message(format!("{}: {phase}", step_label(step)));
                    bar.set_position(done);
                } else if st.last_line.is_none_or(|t| t.elapsed() >= LOG_EVERY) || done == total {
                    st.last_line = Some(Instant::now());
                    eprintln!(
                        "vlx-install: {}: {} of {} ({}%), {phase}",
                        step_label(step),
                        human(done),
                        human(total),
                        done * 100 / total.max(1)
                    );
                }
            }
            other => {
                if let Some(bar) = st.bar.take() {
                    bar.finish_and_clear();
                }
                match other {
                    Event::Start(s) => eprintln!("vlx-install: {} ...", step_label(s)),
                    Event::Verified(s) => eprintln!("vlx-install: {s}: verified, already done"),
                    Event::Redo(s, why) => {
                        eprintln!("vlx-install: {s}: does not verify ({why}); doing it again")
                    }
                    Event::Done(s, detail) => eprintln!("vlx-install: {s}: done, {detail}"),
                    Event::Note(n) => eprintln!("vlx-install: {n}"),
                    Event::Bytes { .. } => {}
                }
            }
        }
    }
}

/// `step 3/8: origin`: where an install is among its steps.
pub fn step_label(step: Step) -> String {
    let n = Step::ALL.len();
    match Step::ALL.iter().position(|s| *s == step) {
        Some(i) => format!("step {}/{n}: {step}", i + 1),
        None => step.to_string(),
    }
}

/// A byte count for people, in binary units with one decimal: `1.5 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// Reports one JSON object per line on standard error (progress goes to
/// standard error in every binary; standard output holds the result).
#[derive(Debug, Default)]
pub struct JsonLines {
    last: Mutex<Option<Instant>>,
}

impl Reporter for JsonLines {
    fn event(&self, event: Event<'_>) {
        let v = match event {
            Event::Start(s) => json!({"event": "start", "step": s}),
            Event::Verified(s) => json!({"event": "verified", "step": s}),
            Event::Redo(s, why) => json!({"event": "redo", "step": s, "why": why}),
            Event::Done(s, detail) => json!({"event": "done", "step": s, "detail": detail}),
            Event::Note(n) => json!({"event": "note", "message": n}),
            Event::Bytes { step, done, total } => {
                let Ok(mut last) = self.last.lock() else {
                    return;
                };
                if last.is_some_and(|t| t.elapsed() < Duration::from_millis(500)) && done != total {
                    return;
                }
                *last = Some(Instant::now());
                json!({"event": "bytes", "step": step, "done": done, "total": total})
            }
        };
        let mut out = std::io::stderr().lock();
        let _ = writeln!(out, "{v}");
    }
}

/// Says nothing (tests and benchmarks).
#[derive(Debug, Default)]
pub struct Quiet;

impl Reporter for Quiet {
    fn event(&self, _: Event<'_>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_units_for_people() {
        assert_eq!(step_label(Step::Gpt), "step 1/8: gpt");
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
    }
}
