//! `vlx-rig`: parses the command line and dispatches to the library.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Rehearse a whole vlx cluster under QEMU before touching metal.
#[derive(Debug, Parser)]
#[command(name = "vlx-rig", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build, install and boot a cluster in QEMU, then check it.
    Rehearse(RehearseArgs),
}

#[derive(Debug, Args)]
struct RehearseArgs {
    /// The cluster profile.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "profiles/clusters/demo.toml"
    )]
    cluster: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Rehearse(args) => {
            let text = std::fs::read_to_string(&args.cluster)?;
            let source = cluster::Source::new(args.cluster.display().to_string(), text);
            let base = args.cluster.parent().map(PathBuf::from).unwrap_or_default();
            let (_, plan) = cluster::load(
                &source,
                &cluster::FsEnv { base },
                cluster::SanFacts::default(),
            )
            .map_err(|d| anyhow::anyhow!("{d}"))?;
            print!("{plan}");
            println!(
                "\nNot built yet: the image builder, the installer's apply and the QEMU boot of this plan."
            );
            Ok(())
        }
    }
}
