//! The command line of `vlx-image`, in the library so that the binary and
//! `cargo xtask man` (man pages) build the same `clap` command.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::image::kernel;

/// Bake vlx host images, guest OS tarballs and install media.
#[derive(Debug, Parser)]
///
/// Exit codes: 0 done; 1 failed; 2 bad input (a profile, a flag); 3 refused.
#[command(name = "vlx-image", version, about, long_about)]
pub struct Cli {
    /// Report progress as JSON lines on stderr (for tools), and the result
    /// as JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a host image: origin.ext4, vmlinuz, initramfs.img, manifest.json.
    Build {
        /// Host profile, e.g. profiles/hosts/tiny.toml.
        #[arg(long)]
        profile: PathBuf,
        /// Image directory (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// The node agent binary for the initramfs's /init [default:
        /// vlx-node beside this executable].
        #[arg(long)]
        agent: Option<PathBuf>,
        /// Clamp every timestamp to this [default: $SOURCE_DATE_EPOCH,
        /// else the profile file's mtime].
        #[arg(long)]
        source_date_epoch: Option<u64>,
    },
    /// Build a guest OS tarball (NAME.tar.gz) and its guest.toml.
    Guest {
        /// Guest profile, e.g. profiles/guests/debian-bookworm.toml.
        #[arg(long)]
        profile: PathBuf,
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Clamp every timestamp to this [default: $SOURCE_DATE_EPOCH,
        /// else the profile file's mtime].
        #[arg(long)]
        source_date_epoch: Option<u64>,
    },
    /// Fetch a Debian kernel package into the kernel cache ($VLX_CACHE,
    /// default ~/.cache/vlx) so that later builds run offline.
    FetchKernel {
        /// Debian kernel package; a metapackage is resolved to the
        /// linux-image-<release> it depends on.
        #[arg(default_value = kernel::DEFAULT_PACKAGE)]
        package: String,
    },
    /// Build install media: NAME.img (a GPT disk image for USB sticks) and
    /// NAME.iso (hybrid ISO 9660), booting the installer on UEFI and BIOS,
    /// with the image, guests and cluster profiles as payload.
    Media {
        /// Media profile, e.g. isos/vlx-installer.toml.
        #[arg(long)]
        profile: PathBuf,
        /// The image directory made by `vlx-image build` [default: build
        /// the host image the carried cluster profiles name into OUT/image].
        #[arg(long)]
        image: Option<PathBuf>,
        /// The node agent for the image built without --image [default:
        /// vlx-node beside this executable].
        #[arg(long)]
        agent: Option<PathBuf>,
        /// A folder made by `vlx-image guest`, or a folder of such folders
        /// (repeatable); the profile's guests are looked up there.
        #[arg(long)]
        guests: Vec<PathBuf>,
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// The vlx-install binary for the installer environment [default:
        /// vlx-install beside this executable].
        #[arg(long)]
        installer: Option<PathBuf>,
        /// Clamp every timestamp to this [default: $SOURCE_DATE_EPOCH,
        /// else the image's].
        #[arg(long)]
        source_date_epoch: Option<u64>,
        /// Build media of a test image (`test_image = true` in its host
        /// profile, such as the tiny image), which is refused otherwise
        /// (exit 3): its blades have a root shell without login. The media
        /// profile's `test_image = true` says the same.
        #[arg(long)]
        test_image: bool,
    },
    /// Check an image directory against its manifest.json.
    Verify {
        /// The image directory.
        dir: PathBuf,
    },
    /// Print a shell completion script (bash, zsh, fish) on standard output.
    Completions(voice::Completions),
}

/// The `clap` command of `vlx-image` (for completions and man pages).
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}
