//! `vlx-image`: parses the command line and dispatches to the library.

use clap::{Parser, Subcommand};

/// Bake vlx host images, guest OS tarballs and install media.
#[derive(Debug, Parser)]
#[command(name = "vlx-image", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build a host image (origin.ext4, vmlinuz, initramfs.img, manifest.json). Not built yet.
    Build,
    /// Build a guest OS tarball and its guest.toml. Not built yet.
    Guest,
    /// Build install media (USB image and ISO). Not built yet.
    Media,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    anyhow::bail!(
        "`vlx-image {}` is not built yet",
        format!("{:?}", cli.command).to_lowercase()
    )
}
