//! `vlx-vc-net`: parses the command line and dispatches to the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use vc_net::apply::{self, Netns};
use vc_net::{NetError, NetInput, NetPlan, SubnetPool, render};

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
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum What {
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

/// Bad input (exit 2) or a failure (exit 1).
enum Failure {
    Input(String),
    Failed(String),
}

fn load(path: &Path) -> Result<NetPlan, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Input(format!("reading {}: {e}", path.display())))?;
    let input: NetInput = serde_json::from_str(&text)
        .map_err(|e| Failure::Input(format!("{}: {e}", path.display())))?;
    NetPlan::new(&input).map_err(|e: NetError| {
        debug_assert_eq!(e.exit_code(), 2);
        Failure::Input(format!("{}: {e}", path.display()))
    })
}

fn part(plan: &NetPlan, blade: &str) -> Result<vc_net::BladeNet, Failure> {
    plan.blade(blade).map_err(|e| Failure::Input(e.to_string()))
}

fn show(plan: &NetPlan) -> String {
    let mut s = String::new();
    for vc in &plan.vcs {
        s.push_str(&format!(
            "VC {}: subnet {}, gateway {}, outside {}\n",
            vc.name,
            vc.subnet,
            vc.gateway,
            if vc.outside { "yes" } else { "no" }
        ));
        for vm in &vc.vms {
            s.push_str(&format!(
                "  {}/{}\t{}\t{}\t{}\ton {}\n",
                vc.name, vm.name, vm.addr, vm.mac, vm.tap, vm.blade
            ));
        }
    }
    s
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Plan { input, json } => {
            let plan = load(&input)?;
            if json {
                let text = serde_json::to_string_pretty(&plan)
                    .map_err(|e| Failure::Failed(format!("writing JSON: {e}")))?;
                println!("{text}");
            } else {
                print!("{}", show(&plan));
            }
        }
        Command::Subnet { profile, input } => {
            let plan = load(&input)?;
            let name = profile.display().to_string();
            let text = std::fs::read_to_string(&profile)
                .map_err(|e| Failure::Input(format!("reading {name}: {e}")))?;
            let pool = SubnetPool::from_profile(&name, &text)
                .map_err(|e| Failure::Input(e.to_string()))?
                .ok_or_else(|| {
                    Failure::Input(format!(
                        "{name}: no [vc] subnet_pool: give the new VC its subnet"
                    ))
                })?;
            let taken: Vec<_> = plan.vcs.iter().map(|v| v.subnet).collect();
            let subnet = pool
                .allocate(&plan.cluster_nets, &taken)
                .map_err(|e| Failure::Input(e.to_string()))?;
            println!("{subnet}");
        }
        Command::Render { input, blade, what } => {
            let plan = load(&input)?;
            let b = part(&plan, &blade)?;
            let text = match what {
                What::Routes => render::routes(&b),
                What::Nft => render::nftables(&plan, &b),
                What::Dnsmasq => render::dnsmasq(&plan, &b),
                What::Hosts => render::hosts(&plan),
                What::Exports => render::exports(&plan),
            };
            print!("{text}");
        }
        Command::Apply {
            input,
            blade,
            netns,
        } => {
            let plan = load(&input)?;
            let b = part(&plan, &blade)?;
            let ns = netns.map_or(Netns::Current, Netns::Named);
            let r = apply::apply(&ns, &plan, &b)
                .map_err(|e| Failure::Failed(format!("applying blade {blade}: {e}")))?;
            println!(
                "vlx-vc-net: blade {blade}: {} local VM(s), {} route(s); taps added {:?}, removed {:?}; routes removed {:?}",
                b.local.len(),
                r.routes,
                r.taps_added,
                r.taps_removed,
                r.routes_removed
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Input(msg)) => {
            eprintln!("vlx-vc-net: error: {msg}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(msg)) => {
            eprintln!("vlx-vc-net: error: {msg}");
            ExitCode::from(1)
        }
    }
}
