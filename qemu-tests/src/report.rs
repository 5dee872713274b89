//! The rehearsal's report: per-blade timelines (JSON and an SVG picture),
//! the checks table (text and JSON), the plan, and the console logs the
//! blades wrote into the same directory.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::blade::Boot;

/// A check's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Passed,
    Failed,
    /// An earlier failure stopped the rehearsal before this check.
    NotRun,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "FAILED",
            Outcome::NotRun => "not run",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// The step of issue 5's list the check belongs to.
    pub step: u8,
    pub name: String,
    pub outcome: Outcome,
    /// What was seen: the evidence for a pass, the reason for a failure.
    pub detail: String,
}

/// Every check of a rehearsal, in the order they ran.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Checks(pub Vec<Check>);

impl Checks {
    pub fn pass(&mut self, step: u8, name: impl Into<String>, detail: impl Into<String>) {
        self.push(step, name, Outcome::Passed, detail);
    }

    pub fn fail(&mut self, step: u8, name: impl Into<String>, detail: impl Into<String>) {
        self.push(step, name, Outcome::Failed, detail);
    }

    pub fn not_run(&mut self, step: u8, name: impl Into<String>, detail: impl Into<String>) {
        self.push(step, name, Outcome::NotRun, detail);
    }

    /// Passes when `ok`, fails otherwise; returns `ok`.
    pub fn expect(
        &mut self,
        step: u8,
        name: impl Into<String>,
        ok: bool,
        detail: impl Into<String>,
    ) -> bool {
        let outcome = if ok { Outcome::Passed } else { Outcome::Failed };
        self.push(step, name, outcome, detail);
        ok
    }

    fn push(
        &mut self,
        step: u8,
        name: impl Into<String>,
        outcome: Outcome,
        detail: impl Into<String>,
    ) {
        self.0.push(Check {
            step,
            name: name.into(),
            outcome,
            detail: detail.into(),
        });
    }

    /// Names of the checks that failed.
    pub fn failed(&self) -> Vec<&str> {
        self.0
            .iter()
            .filter(|c| c.outcome == Outcome::Failed)
            .map(|c| c.name.as_str())
            .collect()
    }

    pub fn all_passed(&self) -> bool {
        !self.0.is_empty() && self.0.iter().all(|c| c.outcome == Outcome::Passed)
    }
}

impl fmt::Display for Checks {
    /// The table printed at the end of a rehearsal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name_w = self
            .0
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(5)
            .max(5);
        writeln!(f, "STEP  {:<name_w$}  RESULT   DETAIL", "CHECK")?;
        for c in &self.0 {
            let detail = table_detail(&c.detail);
            writeln!(
                f,
                "{:<4}  {:<name_w$}  {:<7}  {detail}",
                c.step,
                c.name,
                c.outcome.to_string()
            )?;
        }
        let passed = self
            .0
            .iter()
            .filter(|c| c.outcome == Outcome::Passed)
            .count();
        let failed = self.failed();
        let not_run = self
            .0
            .iter()
            .filter(|c| c.outcome == Outcome::NotRun)
            .count();
        write!(f, "{passed} of {} checks passed", self.0.len())?;
        if !failed.is_empty() {
            write!(f, "; failed: {}", failed.join(", "))?;
        }
        if not_run > 0 {
            write!(f, "; {not_run} not run")?;
        }
        writeln!(f)
    }
}

/// Longest detail shown in the table; the whole detail is in checks.json.
const DETAIL_WIDTH: usize = 150;

/// A detail's first line, cut to fit the table.
fn table_detail(detail: &str) -> String {
    let first = detail.lines().next().unwrap_or_default().trim_end();
    let mut out: String = first.chars().take(DETAIL_WIDTH).collect();
    if out.len() < first.len() || detail.lines().nth(1).is_some() {
        out.push_str(" …");
    }
    out
}

/// The boots of one blade.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BladeTimeline {
    pub blade: String,
    pub boots: Vec<Boot>,
}

/// Every blade's boots, and the phases of the whole rehearsal.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Timeline {
    pub cluster: String,
    /// The accelerator the blades ran under (`kvm`, `tcg`).
    pub accel: String,
    /// Seconds since the run started when the report was written.
    pub end: f64,
    pub phases: Vec<Phase>,
    pub blades: Vec<BladeTimeline>,
    /// What the rehearsal did to blades, besides booting them.
    pub marks: Vec<Mark>,
}

/// Something done to a blade at a moment of the rehearsal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mark {
    pub at: f64,
    pub blade: String,
    pub what: MarkKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MarkKind {
    /// Its power pulled while it served (a blade lost), not a clean stop.
    Killed,
    /// It took the cluster address over.
    VipTaken,
    /// `vlx-install reset-node` reset it.
    Reset,
}

/// One step of the rehearsal with its start and end (seconds since the
/// run started).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Phase {
    pub step: u8,
    pub name: String,
    pub start: f64,
    pub end: f64,
}

impl Timeline {
    pub fn add_boot(&mut self, blade: &str, boot: Boot) {
        match self.blades.iter_mut().find(|b| b.blade == blade) {
            Some(b) => b.boots.push(boot),
            None => self.blades.push(BladeTimeline {
                blade: blade.to_string(),
                boots: vec![boot],
            }),
        }
    }

    /// Power on to services ready of every boot that got there.
    pub fn ready_times(&self) -> Vec<f64> {
        self.blades
            .iter()
            .flat_map(|b| b.boots.iter().filter_map(Boot::to_ready))
            .collect()
    }
}

/// The colours and names of a boot's phases, in order.
const PHASES: &[(&str, &str)] = &[
    ("QEMU start", "#bbbbbb"),
    ("firmware + loader", "#5b8def"),
    ("kernel + agent", "#f0a030"),
    ("services start", "#a070d0"),
    ("up", "#6cc070"),
];

/// The timeline as an SVG picture that tells the story without hovering:
/// the accelerator in the title, the rehearsal's steps as bands named above
/// the rows, one row per blade with each boot's phases as coloured bars
/// (network boots outlined dashed), an axis in seconds, a legend, and the
/// failed checks in red.
pub fn svg(t: &Timeline, checks: &Checks) -> String {
    const LEFT: f64 = 110.0;
    const WIDTH: f64 = 980.0;
    const ROW: f64 = 30.0;
    const TOP: f64 = 50.0;
    let span = t.end.max(1.0);
    let step = tick_step(span);
    let plot = WIDTH - LEFT - 20.0;
    let x = |s: f64| LEFT + s / span * plot;
    let rows = t.blades.len().max(1) as f64;
    let axis_y = TOP + rows * ROW + 6.0;
    let failed: Vec<&Check> = checks
        .0
        .iter()
        .filter(|c| c.outcome == Outcome::Failed)
        .collect();
    let height = axis_y + 88.0 + 16.0 * failed.len() as f64;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">Rehearsal of cluster {}{} — blade timelines (seconds since start)</text>"#,
        esc(&t.cluster),
        if t.accel.is_empty() {
            String::new()
        } else {
            format!(" under {}", esc(&t.accel.to_uppercase()))
        }
    );
    // Rehearsal phases as shaded bands behind the rows.
    for (i, p) in t.phases.iter().enumerate() {
        let shade = if i % 2 == 0 { "#f4f4f4" } else { "#ffffff" };
        let _ = writeln!(
            o,
            r#"<rect x="{:.1}" y="{}" width="{:.1}" height="{}" fill="{shade}"><title>step {}: {} ({:.1}–{:.1} s)</title></rect>"#,
            x(p.start),
            TOP - 12.0,
            (x(p.end) - x(p.start)).max(0.5),
            rows * ROW + 12.0,
            p.step,
            esc(&p.name),
            p.start,
            p.end
        );
        // The step's name, cut to its band (about 5.5 px a character at
        // this size), on two alternating lines so neighbours do not overlap.
        let fit = ((x(p.end) - x(p.start)) / 5.5).floor().max(1.0) as usize;
        let label = format!("{} {}", p.step, p.name);
        let mut shown: String = label.chars().take(fit).collect();
        if shown.len() < label.len() && fit > 2 {
            shown = label.chars().take(fit - 1).collect::<String>() + "…";
        }
        let _ = writeln!(
            o,
            r##"<text x="{:.1}" y="{}" font-size="10" fill="#555">{}</text>"##,
            x(p.start) + 2.0,
            if i % 2 == 0 { TOP - 14.0 } else { TOP - 3.0 },
            esc(&shown)
        );
    }
    for (r, b) in t.blades.iter().enumerate() {
        let y = TOP + r as f64 * ROW + 6.0;
        let _ = writeln!(
            o,
            r#"<text x="8" y="{:.1}">{}</text>"#,
            y + 13.0,
            esc(&b.blade)
        );
        for boot in &b.boots {
            let end = boot.power_off.unwrap_or(t.end);
            let marks = [
                Some(boot.power_on),
                boot.firmware,
                boot.kernel,
                boot.agent_ready,
                boot.services_ready,
            ];
            for (i, (name, colour)) in PHASES.iter().enumerate() {
                let Some(start) = marks[i] else { continue };
                let stop = marks[i + 1..]
                    .iter()
                    .flatten()
                    .next()
                    .copied()
                    .unwrap_or(end)
                    .min(end);
                if stop <= start {
                    continue;
                }
                let outline = if boot.from == "disk" {
                    ""
                } else {
                    r##" stroke="#000" stroke-dasharray="3 2""##
                };
                let _ = writeln!(
                    o,
                    r#"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="18" fill="{colour}"{outline}><title>{}: {name} {start:.1}–{stop:.1} s (from {})</title></rect>"#,
                    x(start),
                    (x(stop) - x(start)).max(0.5),
                    esc(&b.blade),
                    esc(&boot.from),
                );
            }
            if boot.services_ready.is_none() {
                let _ = writeln!(
                    o,
                    r##"<text x="{:.1}" y="{:.1}" fill="#c00000" font-weight="bold">✗</text>"##,
                    x(end) + 2.0,
                    y + 13.0
                );
            }
            if let Some(off) = boot.power_off {
                let _ = writeln!(
                    o,
                    r##"<line x1="{0:.1}" x2="{0:.1}" y1="{1:.1}" y2="{2:.1}" stroke="#000" stroke-width="2"><title>power off {off:.1} s</title></line>"##,
                    x(off),
                    y - 2.0,
                    y + 20.0
                );
            }
        }
    }
    for m in &t.marks {
        let Some(r) = t.blades.iter().position(|b| b.blade == m.blade) else {
            continue;
        };
        let y = TOP + r as f64 * ROW + 6.0;
        let (colour, sign, what) = match m.what {
            MarkKind::Killed => ("#c00000", "✕", "killed"),
            MarkKind::VipTaken => ("#006400", "VIP", "took the cluster address"),
            MarkKind::Reset => ("#8a2be2", "reset", "reset to the golden image"),
        };
        let _ = writeln!(
            o,
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="{1:.1}" y2="{2:.1}" stroke="{colour}" stroke-width="3"><title>{3} {what} at {4:.1} s</title></line><text x="{5:.1}" y="{6:.1}" font-size="10" font-weight="bold" fill="{colour}">{sign}</text>"##,
            x(m.at),
            y - 4.0,
            y + 22.0,
            esc(&m.blade),
            m.at,
            x(m.at) + 3.0,
            y - 1.0
        );
    }
    let _ = writeln!(
        o,
        r##"<line x1="{LEFT}" x2="{:.1}" y1="{axis_y}" y2="{axis_y}" stroke="#000"/>"##,
        x(span)
    );
    let mut s = 0.0;
    while s <= span + 1e-9 {
        let _ = writeln!(
            o,
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="{axis_y}" y2="{1}" stroke="#000"/><text x="{0:.1}" y="{2}" text-anchor="middle">{s:.0}</text>"##,
            x(s),
            axis_y + 5.0,
            axis_y + 18.0
        );
        s += step;
    }
    let mut lx = LEFT;
    let ly = axis_y + 40.0;
    for (name, colour) in PHASES {
        let _ = writeln!(
            o,
            r#"<rect x="{lx}" y="{}" width="14" height="12" fill="{colour}"/><text x="{}" y="{ly}">{name}</text>"#,
            ly - 10.0,
            lx + 18.0
        );
        lx += 30.0 + name.len() as f64 * 7.0;
    }
    let _ = writeln!(
        o,
        r##"<text x="{lx}" y="{ly}">| power off  ✗ not ready  dashed: network boot</text><text x="{LEFT}" y="{0}" fill="#c00000" font-weight="bold">✕ killed</text><text x="{1}" y="{0}" fill="#006400" font-weight="bold">VIP taken over</text><text x="{2}" y="{0}" fill="#8a2be2" font-weight="bold">reset by vlx-install reset-node</text>"##,
        ly + 18.0,
        LEFT + 70.0,
        LEFT + 190.0
    );
    for (i, c) in failed.iter().enumerate() {
        let _ = writeln!(
            o,
            r##"<text x="8" y="{:.1}" fill="#c00000">failed (step {}): {}: {}</text>"##,
            ly + 38.0 + 16.0 * i as f64,
            c.step,
            esc(&c.name),
            esc(&table_detail(&c.detail))
        );
    }
    o.push_str("</svg>\n");
    o
}

/// A tick step that gives five to ten ticks over `span` seconds.
fn tick_step(span: f64) -> f64 {
    for s in [1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0] {
        if span / s <= 12.0 {
            return s;
        }
    }
    1200.0
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The files of a report.
#[derive(Debug, Clone)]
pub struct Files {
    pub dir: PathBuf,
    pub checks_text: PathBuf,
    pub checks_json: PathBuf,
    pub timeline_json: PathBuf,
    pub timeline_svg: PathBuf,
    pub plan: PathBuf,
}

impl Files {
    pub fn in_dir(dir: &Path) -> Files {
        Files {
            dir: dir.to_owned(),
            checks_text: dir.join("checks.txt"),
            checks_json: dir.join("checks.json"),
            timeline_json: dir.join("timeline.json"),
            timeline_svg: dir.join("timeline.svg"),
            plan: dir.join("plan.txt"),
        }
    }

    /// Where the blades' console logs go.
    pub fn consoles(&self) -> PathBuf {
        self.dir.join("consoles")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot write the report file {path}: {source}")]
pub struct WriteError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Writes the checks and timelines (the consoles are already there).
pub fn write(files: &Files, timeline: &Timeline, checks: &Checks) -> Result<(), WriteError> {
    let mut timeline = timeline.clone();
    timeline.blades.sort_by(|a, b| a.blade.cmp(&b.blade));
    let timeline = &timeline;
    let put = |path: &Path, text: String| {
        std::fs::write(path, text).map_err(|source| WriteError {
            path: path.to_owned(),
            source,
        })
    };
    put(&files.checks_text, checks.to_string())?;
    put(&files.checks_json, json(checks))?;
    put(&files.timeline_json, json(timeline))?;
    put(&files.timeline_svg, svg(timeline, checks))?;
    Ok(())
}

fn json<T: Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string_pretty(v)
        .unwrap_or_else(|e| unreachable!("report values always serialize: {e}"));
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline() -> Timeline {
        let mut t = Timeline {
            cluster: "demo".into(),
            accel: String::new(),
            marks: vec![Mark {
                at: 30.0,
                blade: "blade01".into(),
                what: MarkKind::Killed,
            }],
            end: 42.0,
            phases: vec![Phase {
                step: 3,
                name: "cold start".into(),
                start: 1.0,
                end: 20.0,
            }],
            blades: Vec::new(),
        };
        t.add_boot(
            "blade01",
            Boot {
                from: "disk".into(),
                power_on: 1.0,
                firmware: Some(1.5),
                kernel: Some(3.0),
                agent_ready: Some(8.0),
                services_ready: Some(12.0),
                power_off: Some(30.0),
            },
        );
        t.add_boot(
            "blade02",
            Boot {
                from: "network".into(),
                power_on: 2.0,
                firmware: Some(2.4),
                kernel: None,
                agent_ready: None,
                services_ready: None,
                power_off: None,
            },
        );
        t
    }

    #[test]
    fn the_svg_is_well_formed_with_a_bar_per_phase() {
        let mut checks = Checks::default();
        checks.pass(3, "hostname blade01", "blade01");
        checks.fail(3, "vip answers", "no reply from 10.77.0.250");
        let mut t = timeline();
        t.accel = "tcg".into();
        let text = svg(&t, &checks);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.svg");
        std::fs::write(&path, &text).unwrap();
        let out = std::process::Command::new("xmllint")
            .args(["--xpath", "count(//*[local-name()='rect'])"])
            .arg(&path)
            .output()
            .expect("xmllint (libxml2-utils) checks the SVG");
        assert!(
            out.status.success(),
            "not XML: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rects: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        // Background, a phase band, 5 phases of blade01, 2 of blade02 (to
        // the end: not ready), 5 legend boxes.
        assert_eq!(rects, 1 + 1 + 5 + 2 + 5, "{text}");
        assert!(text.contains(">blade01</text>") && text.contains(">blade02</text>"));
        assert!(text.contains("✗"), "blade02 never got ready");
        assert!(
            text.contains("Rehearsal of cluster demo under TCG"),
            "{text}"
        );
        assert!(text.contains(">3 cold start</text>"), "{text}");
        assert!(
            text.contains(
                r##"fill="#c00000">failed (step 3): vip answers: no reply from 10.77.0.250</text>"##
            ),
            "{text}"
        );
        assert!(
            !text.contains("hostname blade01"),
            "a passed check is drawn"
        );
        assert!(text.contains("blade01 killed at 30.0 s"), "{text}");
        // blade02 booted from the network: its bars, and only they, dashed.
        assert_eq!(text.matches("stroke-dasharray").count(), 2, "{text}");
    }

    #[test]
    fn the_table_names_failures() {
        let mut c = Checks::default();
        c.pass(5, "hostname blade01", "blade01");
        c.fail(5, "vip answers", "no reply from 10.77.0.250");
        c.not_run(6, "vip moves", "stopped after a failure");
        let text = c.to_string();
        assert!(
            text.contains("5     hostname blade01  passed   blade01"),
            "{text}"
        );
        assert!(
            text.contains("1 of 3 checks passed; failed: vip answers; 1 not run"),
            "{text}"
        );
        assert_eq!(c.failed(), ["vip answers"]);
        assert!(!c.all_passed());
    }

    #[test]
    fn ready_times_count_from_power_on() {
        assert_eq!(timeline().ready_times(), [11.0]);
    }
}
