//! `vlx-vc-net`: parses the command line and dispatches to the library.

use std::path::Path;
use std::process::ExitCode;

use vc_net::apply::{self, Netns};
use vc_net::cli::{Cli, Command, What};
use vc_net::{NetError, NetInput, NetPlan, SubnetPool, render};

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
        Command::Completions(c) => c
            .print(vc_net::cli::command())
            .map_err(|e| Failure::Failed(format!("{e:#}")))?,
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
    let (msg, code) = match run(voice::parse()) {
        Ok(()) => return ExitCode::SUCCESS,
        Err(Failure::Input(msg)) => (msg, voice::exit::BAD_INPUT),
        Err(Failure::Failed(msg)) => (msg, voice::exit::FAILED),
    };
    let failure = voice::Failure {
        program: "vlx-vc-net".into(),
        errors: vec![voice::Said {
            error: msg,
            hint: None,
        }],
        exit_code: code,
    };
    voice::report(&failure, voice::wants_json())
}
