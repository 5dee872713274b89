//! `vlx-vc-rig`: the VC rig (see `vc::rig`); `cargo xtask rehearse --vc`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Rehearse virtual clusters on three blades made of network namespaces.
#[derive(Debug, Parser)]
#[command(name = "vlx-vc-rig", version)]
struct Args {
    /// The rig's profile.
    #[arg(long, default_value = "profiles/vcs/rig.toml")]
    profile: PathBuf,
    /// Where the report goes (cleared first).
    #[arg(long, default_value = "target/rehearsal-vc")]
    out: PathBuf,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let bin = match std::env::current_exe() {
        Ok(p) => p.parent().map(PathBuf::from).unwrap_or_default(),
        Err(e) => {
            eprintln!("vlx-vc-rig: where am I: {e}");
            return ExitCode::from(1);
        }
    };
    let out = if a.out.is_absolute() {
        a.out
    } else {
        std::env::current_dir().unwrap_or_default().join(a.out)
    };
    match vc::rig::rehearse(&a.profile, &out, &bin) {
        Ok(checks) => {
            let failed = checks.iter().filter(|c| !c.ok).count();
            println!("\n{:<6} CHECK", "RESULT");
            for c in &checks {
                println!("{:<6} {}", if c.ok { "pass" } else { "FAIL" }, c.name);
            }
            println!(
                "\n{} of {} checks passed; report in {}",
                checks.len() - failed,
                checks.len(),
                out.display()
            );
            if failed == 0 && !checks.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("vlx-vc-rig: {e:#}");
            ExitCode::from(1)
        }
    }
}
