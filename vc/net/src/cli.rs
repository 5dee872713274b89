//! The command line of `vlx-vc-net`, in the library so that the binary and
//! `cargo xtask man` (man pages) build the same `clap` command.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Virtual-cluster networks: show the plan of every VC's subnet and VM
/// addresses, render a blade's routes, nftables, dnsmasq config, hosts and
/// exports, or apply a blade's part, from the VC state as JSON (`NetInput`,
/// see docs/contracts.md).
///
/// Exit codes: 0 done; 1 failed; 2 bad input (the message names the file and
/// what is wrong: a subnet and what it overlaps, a VC with more VMs than its
/// subnet holds, an unknown blade).
#[derive(Debug, Parser)]
#[command(name = "vlx-vc-net", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every VC's subnet and gateway, every VM's address, tap and blade.
    Plan {
        /// The VC state (JSON).
        #[arg(long, value_name = "FILE")]
        input: PathBuf,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The subnet a new VC would get from the profile's `[vc] subnet_pool`:
    /// the first free block beside the cluster's networks and the VCs of
    /// the state.
    Subnet {
        /// The cluster profile (its `[vc]` table).
        #[arg(long, value_name = "FILE")]
        profile: PathBuf,
        #[arg(long, value_name = "FILE")]
        input: PathBuf,
    },
    /// One blade's text, as it would be applied.
    Render {
        #[arg(long, value_name = "FILE")]
        input: PathBuf,
        /// The blade, by name.
        #[arg(long)]
        blade: String,
        what: What,
    },
    /// Put one blade's part in place: taps, gateway, proxy ARP, routes,
    /// nftables (as root).
    Apply {
        #[arg(long, value_name = "FILE")]
        input: PathBuf,
        #[arg(long)]
        blade: String,
        /// A named network namespace (`ip netns`) instead of this one.
        #[arg(long, value_name = "NAME")]
        netns: Option<String>,
    },
    /// Print a shell completion script (bash, zsh, fish) on standard output.
    Completions(voice::Completions),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum What {
    /// `ip -batch` lines of the blade's routes
    Routes,
    /// the blade's nftables ruleset
    Nft,
    /// the blade's dnsmasq config for its taps
    Dnsmasq,
    /// every VM's name and address, /etc/hosts style
    Hosts,
    /// the NFS export lines of every VC
    Exports,
}

/// The `clap` command of `vlx-vc-net` (for completions and man pages).
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}
