//! `cargo xtask`: the project's own commands. Each installs the Debian
//! packages it needs first (as root), so that a fresh machine needs nothing
//! but this checkout and a Rust toolchain.
//!
//! - `cargo xtask test`: formatting, lints, then the whole test suite.
//! - `cargo xtask rehearse [ARGS]`: build, install and boot the demo cluster
//!   in QEMU (`vlx-rig rehearse` on the built-in defaults).
//! - `cargo xtask rehearse --vc [ARGS]`: the virtual-cluster rig
//!   (`vlx-vc-rig`: blades as network namespaces, real etcd and vlx-vcd).
//! - `cargo xtask bench [ARGS]`: the benchmarks, with ratios against the
//!   reference tools run in the same process.
//! - `cargo xtask fuzz [CASES]`: the fuzz targets (the `fuzz` property
//!   tests of cluster, agent and installer) with CASES inputs each
//!   (100000 by default); `cargo xtask test` runs them with proptest's 256.
//! - `cargo xtask man DIR`: section-8 man pages of every binary into DIR.
//! - `cargo xtask deps`: only install the packages.

mod deps;
mod man;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let root = workspace_root();
    if task == "man" {
        // DIR is taken from where the command was run, not the checkout.
        let [dir] = rest.as_slice() else {
            bail!("usage: cargo xtask man DIR");
        };
        let written = man::write_all(Path::new(dir))?;
        eprintln!("xtask: wrote {} man pages into {dir}", written.len());
        return Ok(());
    }
    std::env::set_current_dir(&root).with_context(|| format!("entering {}", root.display()))?;
    match task.as_str() {
        "test" => test(&rest),
        "rehearse" => rehearse(&rest),
        "bench" => bench(&rest),
        "deps" => deps::ensure(),
        "fuzz" => fuzz(&rest),
        _ => bail!("usage: cargo xtask <test|rehearse|bench|fuzz|man|deps> [ARGS]"),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn has_nextest() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Formatting and lints, then every test tier. Binaries are built first so
/// that image and rig tests find `vlx-node` and friends beside themselves.
fn test(extra: &[String]) -> anyhow::Result<()> {
    deps::ensure()?;
    deps::run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    deps::run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    deps::run(cargo().args(["build", "--workspace", "--bins"]))?;
    warm_kernel_cache("target/debug")?;
    // Debian's full kernel too, which the metal media's rig test boots
    // (imagebuilder/tests/rig_media.rs).
    deps::run(Command::new("target/debug/vlx-image").args(["fetch-kernel", "linux-image-amd64"]))?;
    if has_nextest() {
        let mut cmd = cargo();
        cmd.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
        if std::env::var_os("CI").is_some() {
            cmd.args(["--profile", "ci"]);
        }
        deps::run(cmd.args(extra))
    } else {
        deps::run(
            cargo()
                .args(["test", "--workspace", "--no-fail-fast"])
                .args(extra),
        )
    }
}

/// Fetches the guests' and hosts' kernel into `$VLX_CACHE` once (a no-op
/// when cached), so that image builds in tests and rehearsals run offline.
fn warm_kernel_cache(bin_dir: &str) -> anyhow::Result<()> {
    deps::run(Command::new(format!("{bin_dir}/vlx-image")).arg("fetch-kernel"))
}

/// [`warm_kernel_cache`] after building only the image builder.
fn warm_kernel_cache_with(vlx_image: &str) -> anyhow::Result<()> {
    deps::run(cargo().args([
        "build",
        "--release",
        "--package",
        "imagebuilder",
        "--bin",
        "vlx-image",
    ]))?;
    deps::run(Command::new(vlx_image).arg("fetch-kernel"))
}

fn rehearse(extra: &[String]) -> anyhow::Result<()> {
    deps::ensure()?;
    if extra.first().map(String::as_str) == Some("--vc") {
        // The VC rig: blades as network namespaces (`vc::rig`).
        deps::run(cargo().args(["build", "--release", "--package", "vc", "--bins"]))?;
        warm_kernel_cache_with("target/release/vlx-image")?;
        return deps::run(Command::new("target/release/vlx-vc-rig").args(&extra[1..]));
    }
    deps::run(cargo().args(["build", "--release", "--workspace", "--bins"]))?;
    warm_kernel_cache("target/release")?;
    deps::run(
        Command::new("target/release/vlx-rig")
            .arg("rehearse")
            .args(extra),
    )
}

fn bench(extra: &[String]) -> anyhow::Result<()> {
    deps::ensure()?;
    deps::run(cargo().args(["build", "--release", "--workspace", "--bins"]))?;
    warm_kernel_cache("target/release")?;
    deps::run(
        cargo()
            .args(["run", "--release", "--quiet", "--package", "bench", "--"])
            .args(extra),
    )
}

/// The crates with a `tests/fuzz.rs`: profile reader, GPT readers, the
/// readers of `status`/`verify`, the kernel command line.
const FUZZ_CRATES: [&str; 3] = ["cluster", "agent", "installer"];

/// Runs every fuzz target with many more cases than the test suite does.
/// A debug build, so that an arithmetic overflow is a panic, not a wrap.
fn fuzz(extra: &[String]) -> anyhow::Result<()> {
    let cases: u64 = match extra.first() {
        None => 100_000,
        Some(n) => n
            .parse()
            .with_context(|| format!("usage: cargo xtask fuzz [CASES]; {n:?} is not a count"))?,
    };
    for krate in FUZZ_CRATES {
        deps::run(cargo().env("PROPTEST_CASES", cases.to_string()).args([
            "test",
            "--package",
            krate,
            "--test",
            "fuzz",
        ]))?;
    }
    Ok(())
}
