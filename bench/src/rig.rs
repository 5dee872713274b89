//! The rig: a 4-blade rehearsal of the demo cluster, steps 1–5 with the
//! image already built, phase by phase; the median of blade power-on to
//! `vlx: services ready`, and the same on the Debian host image beside it;
//! and how the rehearsal grows with 2, 4, 8 and 16
//! blades, powered on 6 s apart. Goals: steps 1–5 of 4 blades under 90 s
//! on 2 cores under TCG, power-on to ready under 20 s (median) (issue 5);
//! steps 1–5 of 16 blades under 120 s, and the ready median flat from 2 to
//! 16 blades (issue 16).
//!
//! `VLX_BENCH_RIG_BLADES=2,4` (sizes, comma-separated) runs only the
//! scaling table at those sizes, for a quick look on a busy machine.
//! `VLX_BENCH_RIG_ROUNDS=3` runs the scaling table's sizes in turn three
//! times and judges its goals on the medians: on a shared host one run
//! of a size differs from the next by more than the goals' margins.
//!
//! Reference, measured in the same run: one bare blade of the same QEMU
//! machine booting the same kernel straight into a busybox initramfs that
//! prints the ready lines at once, so that the ratio shows what the
//! firmware, the node agent and the services add. For scale, the seeds
//! report 58 s to boot one KVM guest and 45 minutes to install one virtual
//! cluster.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use qemu_tests::blade::{self, Logs};
use qemu_tests::plan::{Options, Timeouts};
use qemu_tests::qemu::BootFrom;
use qemu_tests::rehearse::{self, Outcome, Request};
use qemu_tests::run::Run;
use qemu_tests::switch::Switch;
use qemu_tests::{accel, testkit, tools};

/// Steps 1–5 of a 4-blade rehearsal should take less than this.
const GOAL_TOTAL: Duration = Duration::from_secs(90);
/// Median blade power-on to services ready should be less than this.
const GOAL_READY: f64 = 20.0;
/// Steps 1–5 of the largest size should take less than this.
const GOAL_SCALED_TOTAL: f64 = 120.0;
/// The sizes of the scaling table.
const SIZES: [usize; 4] = [2, 4, 8, 16];
/// "Flat": the ready median of any size within this factor of the
/// smallest size's.
const FLAT: f64 = 1.25;

pub fn run() -> anyhow::Result<()> {
    let ws = tools::workspace_root().context("no workspace root")?;
    let demo = ws.join("profiles/clusters/demo.toml");
    let scratch = tempfile::tempdir()?;
    // Read before anything runs: a bad value is said at once.
    let rounds = rounds_from_env()?;

    let image = scratch.path().join("image");
    let t = Instant::now();
    let host = ws.join("profiles/hosts/tiny.toml");
    tools::build_image(&host, &image, &scratch.path().join("vlx-image.log"))
        .context("building the tiny host image")?;
    println!(
        "tiny host image built in {:.1} s (not part of the timed steps)",
        t.elapsed().as_secs_f64()
    );

    let bare = bare_boot()?;
    println!("reference: a bare blade (QEMU, SeaBIOS, kernel, busybox) ready in {bare:.1} s");

    let gap = qemu_tests::plan::DEFAULT_POWER_GAP;
    if let Some(sizes) = sizes_from_env()? {
        return scaling(&demo, &image, &sizes, rounds, gap, bare, scratch.path());
    }
    println!(
        "\n4-blade rehearsal, steps 1-5, image already built, blades powered on {:.0} s apart:",
        gap.as_secs_f64()
    );
    let o = rehearsal(&demo, &image, 4, gap, scratch.path())?;
    let total = phases(&o);
    let ready = o.timeline.ready_times();
    let med = median(&ready);
    println!(
        "  steps 1-5: {total:.1} s ({} the {} s goal)",
        verdict(total < GOAL_TOTAL.as_secs_f64()),
        GOAL_TOTAL.as_secs()
    );
    println!(
        "  blade power-on to services ready: median {med:.1} s over {} blades ({} the {GOAL_READY:.0} s goal), {:.1}x the bare blade",
        ready.len(),
        verdict(med < GOAL_READY),
        med / bare
    );

    // The Debian host beside it: the same cluster and steps, systemd
    // instead of busybox init, checks over SSH (512 MiB and 900 s a blade,
    // as `vlx-rig rehearse --host debian` takes).
    let debian_host = ws.join("profiles/hosts/debian-bookworm.toml");
    let debian_image = scratch.path().join("debian-image");
    let t = Instant::now();
    tools::build_image(
        &debian_host,
        &debian_image,
        &scratch.path().join("vlx-image-debian.log"),
    )
    .context("building the Debian host image")?;
    println!(
        "  Debian host image built in {:.1} s (not timed below)",
        t.elapsed().as_secs_f64()
    );
    let deb = rehearsal_on(
        &demo,
        &debian_image,
        Some(&debian_host),
        4,
        gap,
        scratch.path(),
    )?;
    let deb_ready = deb.timeline.ready_times();
    println!(
        "  the same on the Debian host: steps 1-5 {:.1} s, power-on to services ready median {:.1} s over {} blades (tiny: {med:.1} s, {:.1}x)",
        phases_total(&deb),
        median(&deb_ready),
        deb_ready.len(),
        median(&deb_ready) / med
    );

    let all = rehearsal(&demo, &image, 4, Duration::ZERO, scratch.path())?;
    println!(
        "  the same with all 4 powered on at once: steps 1-5 {:.1} s, ready median {:.1} s (two cores emulate four blades)",
        phases_total(&all),
        median(&all.timeline.ready_times())
    );

    scaling(&demo, &image, &SIZES, rounds, gap, bare, scratch.path())
}

/// The sizes of `VLX_BENCH_RIG_BLADES`, when set.
fn sizes_from_env() -> anyhow::Result<Option<Vec<usize>>> {
    let Ok(v) = std::env::var("VLX_BENCH_RIG_BLADES") else {
        return Ok(None);
    };
    let sizes = v
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=99).contains(n))
                .with_context(|| {
                    format!("VLX_BENCH_RIG_BLADES={v}: `{s}` is not a blade count from 1 to 99")
                })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Some(sizes))
}

/// How many times the scaling table runs each size: `VLX_BENCH_RIG_ROUNDS`
/// (1 to 9), 1 without it.
fn rounds_from_env() -> anyhow::Result<usize> {
    let Ok(v) = std::env::var("VLX_BENCH_RIG_ROUNDS") else {
        return Ok(1);
    };
    v.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=9).contains(n))
        .with_context(|| format!("VLX_BENCH_RIG_ROUNDS={v}: not a number of rounds from 1 to 9"))
}

/// One rehearsal of the scaling table, in seconds.
#[derive(Debug, Clone, Copy)]
struct Row {
    blades: usize,
    total: f64,
    install: f64,
    cold: f64,
    checks: f64,
    ready_median: f64,
    ready_max: f64,
}

impl Row {
    fn print(&self, label: &str, bare: f64) {
        println!(
            "{label:>7} {:>7} {:>10.1} {:>10.1} {:>12.1} {:>10.1} {:>14.1} {:>14.1} {:>11.1}x",
            self.blades,
            self.total,
            self.install,
            self.cold,
            self.checks,
            self.ready_median,
            self.ready_max,
            self.ready_median / bare
        );
    }

    /// Each column's median over `rows` (all of one size).
    fn median_of(rows: &[Row]) -> Row {
        let col = |f: fn(&Row) -> f64| median(&rows.iter().map(f).collect::<Vec<_>>());
        Row {
            blades: rows.first().map_or(0, |r| r.blades),
            total: col(|r| r.total),
            install: col(|r| r.install),
            cold: col(|r| r.cold),
            checks: col(|r| r.checks),
            ready_median: col(|r| r.ready_median),
            ready_max: col(|r| r.ready_max),
        }
    }
}

/// Steps 1–5 at each size, blades powered on `gap` apart: totals, cold
/// start, ready median and maximum, with the goals of the largest size and
/// the flatness of the median. With `rounds` above 1 the
/// sizes run in turn that many times (a round is every size once, so that
/// a slow spell of a shared host falls on all sizes alike), and the goals
/// are judged on each column's median over the rounds.
fn scaling(
    demo: &Path,
    image: &Path,
    sizes: &[usize],
    rounds: usize,
    gap: Duration,
    bare: f64,
    scratch: &Path,
) -> anyhow::Result<()> {
    println!(
        "\nscaling (steps 1-5, power-ons {:.0} s apart{}):",
        gap.as_secs_f64(),
        if rounds > 1 {
            format!(", {rounds} rounds")
        } else {
            String::new()
        }
    );
    println!(
        "{:>7} {:>7} {:>10} {:>10} {:>12} {:>10} {:>14} {:>14} {:>12}",
        "round",
        "blades",
        "total s",
        "step 1 s",
        "cold start s",
        "step 5 s",
        "ready median s",
        "ready max s",
        "median/bare"
    );
    let profiles = sizes
        .iter()
        .map(|&n| Ok((n, scaled_profile(demo, n, scratch)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut runs: Vec<Row> = Vec::new();
    for round in 1..=rounds {
        for (n, profile) in &profiles {
            let n = *n;
            let o = rehearsal(profile, image, n, gap, scratch)?;
            let ready = o.timeline.ready_times();
            let row = Row {
                blades: n,
                total: phases_total(&o),
                install: phase(&o, 1).unwrap_or_default(),
                cold: phase(&o, 4).unwrap_or_default() + phase(&o, 3).unwrap_or_default(),
                checks: phase(&o, 5).unwrap_or_default(),
                ready_median: median(&ready),
                ready_max: ready.iter().copied().fold(0.0, f64::max),
            };
            row.print(&round.to_string(), bare);
            runs.push(row);
        }
    }
    let rows: Vec<Row> = sizes
        .iter()
        .map(|&n| {
            let of_n: Vec<Row> = runs.iter().copied().filter(|r| r.blades == n).collect();
            Row::median_of(&of_n)
        })
        .collect();
    if rounds > 1 {
        for r in &rows {
            r.print("median", bare);
        }
    }
    let judged = if rounds > 1 {
        format!(" (medians of {rounds} rounds)")
    } else {
        String::new()
    };
    let largest = SIZES[SIZES.len() - 1];
    if let Some(last) = rows.last() {
        let goal = if last.blades == largest {
            format!(
                "{} the {GOAL_SCALED_TOTAL:.0} s goal",
                verdict(last.total < GOAL_SCALED_TOTAL)
            )
        } else {
            format!("the {GOAL_SCALED_TOTAL:.0} s goal is for {largest} blades")
        };
        println!(
            "  {} blades: steps 1-5 {:.1} s{judged} ({goal})",
            last.blades, last.total
        );
    }
    if let [first, .., _] = rows.as_slice() {
        let worst = rows
            .iter()
            .map(|r| r.ready_median / first.ready_median)
            .fold(0.0, f64::max);
        println!(
            "  ready median at most {worst:.3}x that of {} blades{judged} ({}: {} {FLAT:.2}x)",
            first.blades,
            if worst <= FLAT { "flat" } else { "NOT flat" },
            verdict(worst <= FLAT)
        );
    }
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "within" } else { "OVER" }
}

/// Runs steps 1–5 of a rehearsal of the first `n` blades; fails when a
/// check fails (a broken rehearsal is not a measurement).
fn rehearsal(
    profile: &Path,
    image: &Path,
    n: usize,
    gap: Duration,
    scratch: &Path,
) -> anyhow::Result<Outcome> {
    rehearsal_on(profile, image, None, n, gap, scratch)
}

/// [`rehearsal`] with another host image profile (`--host`).
fn rehearsal_on(
    profile: &Path,
    image: &Path,
    host: Option<&Path>,
    n: usize,
    gap: Duration,
    scratch: &Path,
) -> anyhow::Result<Outcome> {
    let debian = host.is_some();
    let req = Request {
        profile: profile.to_owned(),
        options: Options {
            nodes: Some(n),
            image: Some(image.to_owned()),
            stop_after: Some(5),
            host: host.map(Path::to_owned),
            memory_mib: if debian {
                qemu_tests::plan::DEBIAN_MEMORY_MIB
            } else {
                qemu_tests::plan::DEFAULT_MEMORY_MIB
            },
            timeouts: Timeouts {
                power_gap: gap,
                ready: if debian {
                    qemu_tests::plan::DEBIAN_READY
                } else {
                    Timeouts::default().ready
                },
                ..Timeouts::default()
            },
            ..Options::default()
        },
        report_dir: scratch.join(format!("report-{n}{}", if debian { "-debian" } else { "" })),
        keep: false,
        build_programs: false,
    };
    let o = rehearse::rehearse(&req, &|_| {}).context("rehearsing")?;
    if !o.checks.all_passed() {
        bail!(
            "the {n}-blade rehearsal failed, so it measures nothing:\n{}",
            o.checks
        );
    }
    Ok(o)
}

/// Prints the phases of steps 1–5 and returns their total.
fn phases(o: &Outcome) -> f64 {
    for p in &o.timeline.phases {
        println!(
            "  step {} {:<60} {:>6.1} s",
            p.step,
            cut(&p.name, 60),
            p.end - p.start
        );
    }
    phases_total(o)
}

fn phases_total(o: &Outcome) -> f64 {
    o.timeline
        .phases
        .iter()
        .filter(|p| p.step <= 5)
        .map(|p| p.end - p.start)
        .sum()
}

fn phase(o: &Outcome, step: u8) -> Option<f64> {
    let v: Vec<f64> = o
        .timeline
        .phases
        .iter()
        .filter(|p| p.step == step)
        .map(|p| p.end - p.start)
        .collect();
    (!v.is_empty()).then(|| v.iter().sum())
}

fn cut(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The demo profile with `n` blades and a SAN large enough for them, with
/// its paths made absolute so it can live in `dir`.
fn scaled_profile(demo: &Path, n: usize, dir: &Path) -> anyhow::Result<PathBuf> {
    let text = std::fs::read_to_string(demo)?;
    let base = demo.parent().context("demo profile has no folder")?;
    let abs = |rel: &str| base.join(rel).display().to_string();
    let text = text
        .replace("blade[01-04]", &format!("blade[01-{n:02}]"))
        // Origin, 1 GiB snapshot store and 128 MiB swap per blade, shared:
        // a sparse SAN file, so room costs nothing.
        .replace("size = \"8GiB\"", &format!("size = \"{}GiB\"", 8 + 2 * n))
        .replace(
            "\"../hosts/tiny.toml\"",
            &format!("{:?}", abs("../hosts/tiny.toml")),
        )
        .replace(
            "\"../../overlays/node\"",
            &format!("{:?}", abs("../../overlays/node")),
        );
    let path = dir.join(format!("demo-{n}.toml"));
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Power-on to ready of one blade booting the test kit's kernel and
/// busybox initramfs directly.
fn bare_boot() -> anyhow::Result<f64> {
    let run = Run::start(false)?;
    let kernel = testkit::kernel()?;
    let initrd = run.dir().join("initrd.img");
    testkit::initramfs(&kernel, &[], &initrd)?;
    let probe = accel::choose(&run, Some(&kernel.vmlinuz));
    let switch = Switch::start(&run, &run.dir().join("switch"), 2)?;
    let m = testkit::machine(
        run.dir(),
        "bare",
        "52:54:00:99:00:01".parse()?,
        switch.sock(),
        vec![],
        BootFrom::Kernel {
            kernel: kernel.vmlinuz.clone(),
            initrd,
            append: testkit::append("bare", None, ""),
        },
        probe.accel,
    );
    let logs = Logs {
        dir: run.dir().join("logs"),
    };
    let mut b = blade::power_on(&run, &m, &logs)?;
    b.wait_ready("bare", Duration::from_secs(300))?;
    let boot = b.power_off();
    boot.to_ready().context("the bare blade never got ready")
}
