//! `cargo xtask bench [NAME...]`: runs the benchmarks (all, or those named)
//! and prints each measurement with its ratio against a reference tool
//! measured in the same run. Speed is judged here, never by timed
//! assertions in tests.

mod image;
mod install;
mod iscsi;
mod media;
mod plan;
mod rig;
mod storm;
mod util;
mod vc;

type Bench = fn() -> anyhow::Result<()>;

/// Every benchmark, by name. Areas add their own module and one line here.
const BENCHES: &[(&str, Bench)] = &[
    ("plan", plan::run),
    ("install", install::run),
    ("install-curve", install::curve),
    ("install-row", install::row),
    ("install-iscsi", iscsi::run),
    ("image", image::run),
    ("media", media::run),
    ("rig", rig::run),
    ("storm", storm::run),
    ("vc", vc::run),
];

fn main() -> anyhow::Result<()> {
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    // Measurements that must own their process (peak memory) re-run this
    // binary with a child flag.
    if let [flag, a, b] = wanted.as_slice()
        && flag == "--child-origin-copy"
    {
        return install::child(std::path::Path::new(a), std::path::Path::new(b));
    }
    for (name, run) in BENCHES {
        if wanted.is_empty() || wanted.iter().any(|w| w == name) {
            println!("== {name}");
            run()?;
        }
    }
    Ok(())
}
