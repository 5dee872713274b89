//! `vlx-install`: parses the command line and dispatches to the library.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use cluster::{Bytes, SanFacts};
use installer::apply::{self, Inputs, Options, Outcome, Reporter};
use installer::device::{self, Contents, Refusal};
use installer::installed::Installed;
use installer::iscsi::{Busy, SanOpt};
use installer::prepare::{self, EXIT_BAD_INPUT, EXIT_REFUSED, PrepareError, Request};
use installer::report::{Console, JsonLines};

/// Lay a whole vlx cluster onto a shared SAN, from a cluster profile and a
/// host image.
///
/// Exit codes: 0 done; 1 failed; 2 the profile is invalid; 3 the target was
/// refused and left as it was.
#[derive(Debug, Parser)]
#[command(name = "vlx-install", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show what an install would write, before anything is written.
    Plan(PlanArgs),
    /// Install the cluster onto the SAN (or finish an interrupted install).
    Apply(ApplyArgs),
    /// Show which cluster a SAN holds, its nodes, each install step, and
    /// whether the origin verifies.
    Status(StatusArgs),
    /// Re-hash the origin and check the layout against the plan; nonzero on
    /// any difference.
    Verify(SanArg),
    /// Reset a node to factory state: its next boot starts from the golden
    /// image. Stop the node first.
    ResetNode(ResetArgs),
    /// The install media's installer environment (run by its /init): find
    /// and check the payload, ask or read vlx.* from the kernel command
    /// line, install, power off.
    MediaEnv,
}

#[derive(Debug, Args)]
struct PlanArgs {
    /// The cluster profile (TOML).
    #[arg(long, value_name = "FILE")]
    cluster: PathBuf,
    /// Plan for a SAN of this size, e.g. 8GiB (overrides san.size).
    #[arg(long, value_name = "SIZE", conflicts_with = "san")]
    san_size: Option<Bytes>,
    /// Plan for this SAN: a block device or an image file (read, never written).
    #[arg(long, value_name = "PATH")]
    san: Option<PathBuf>,
    /// Print the plan as JSON instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ApplyArgs {
    /// The cluster profile (TOML).
    #[arg(long, value_name = "FILE")]
    cluster: PathBuf,
    /// The host image directory made by `vlx-image build`.
    #[arg(long, value_name = "DIR")]
    image: PathBuf,
    #[command(flatten)]
    san: SanOpt,
    /// Overwrite a target that holds another partition table or file system.
    #[arg(long)]
    wipe: bool,
    /// Replace the origin of an installed cluster with this image and reset
    /// every node (their snapshot stores would no longer match).
    #[arg(long)]
    reset_all: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Report progress as one JSON object per line on standard output.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct SanArg {
    #[command(flatten)]
    san: SanOpt,
}

#[derive(Debug, Args)]
struct StatusArgs {
    #[command(flatten)]
    san: SanOpt,
    /// Print the status as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ResetArgs {
    /// The node to reset.
    name: String,
    #[command(flatten)]
    san: SanOpt,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Plan(a) => plan(a),
        Command::Apply(a) => apply_cmd(a),
        Command::Status(a) => status(a),
        Command::Verify(a) => verify(a),
        Command::ResetNode(a) => on_san(&a.san, |san| {
            installer::reset::reset_node(san.path(), &a.name)
                .map(|msg| println!("{msg}"))
                .map_err(Into::into)
        }),
        Command::MediaEnv => return installer::media::main(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(PrepareError::Invalid(d)) = e.downcast_ref::<PrepareError>() {
                // An iSCSI SAN's name comes as context around the profile's
                // errors.
                let top = e.to_string();
                if top != d.to_string() {
                    eprintln!("vlx-install: {top}:");
                }
                eprintln!("{d}");
                return ExitCode::from(EXIT_BAD_INPUT);
            }
            eprintln!("vlx-install: {e:#}");
            if let Some(i) = e.downcast_ref::<installer::iscsi::IscsiError>() {
                return ExitCode::from(i.exit_code());
            }
            let refused = e.downcast_ref::<Refusal>().is_some()
                || e.downcast_ref::<Busy>().is_some()
                || e.downcast_ref::<PrepareError>()
                    .is_some_and(|p| p.exit_code() == EXIT_REFUSED)
                || matches!(
                    e.downcast_ref::<apply::ApplyError>(),
                    Some(apply::ApplyError::Refused(_))
                )
                || matches!(
                    e.downcast_ref::<installer::reset::ResetError>(),
                    Some(installer::reset::ResetError::Refused(_))
                );
            if refused {
                eprintln!("vlx-install: nothing was written to the target");
                return ExitCode::from(EXIT_REFUSED);
            }
            ExitCode::FAILURE
        }
    }
}

fn plan(args: PlanArgs) -> anyhow::Result<()> {
    let san = match (&args.san, args.san_size) {
        (Some(path), _) => {
            let facts = device::inspect(path)
                .with_context(|| format!("inspecting SAN {}", path.display()))?;
            SanFacts {
                size: Some(facts.size),
                sector_size: facts.sector_size,
            }
        }
        (None, size) => SanFacts {
            size,
            sector_size: None,
        },
    };
    let plan = prepare::plan_profile(&args.cluster, san)?.plan;
    let text = if args.json {
        plan.to_json()
    } else {
        plan.to_string()
    };
    emit(&text)
}

/// Runs `f` on the opened SAN, then closes it (an iSCSI session logs out
/// whether `f` succeeded or not); errors name the SAN.
fn on_san(
    opt: &SanOpt,
    f: impl FnOnce(&installer::iscsi::Opened) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let san = opt.open()?;
    let done = match san.is_iscsi() {
        true => {
            let name = san.name();
            f(&san).with_context(|| format!("SAN {name}"))
        }
        false => f(&san),
    };
    let closed = san.close();
    if let (Err(_), Err(c)) = (&done, &closed) {
        eprintln!("vlx-install: {c}");
    }
    done?;
    Ok(closed?)
}

fn apply_cmd(args: ApplyArgs) -> anyhow::Result<()> {
    on_san(&args.san, |san| apply_on(&args, san))
}

fn apply_on(args: &ApplyArgs, san: &installer::iscsi::Opened) -> anyhow::Result<()> {
    let prepared = prepare::prepare(Request {
        cluster: &args.cluster,
        image: &args.image,
        san: san.path(),
    })?;
    let checked = prepared.check_target(args.wipe)?;
    let inputs = &prepared.inputs;
    if !args.yes {
        confirm(inputs, &checked)?;
    }
    let console = Console::new();
    let json = JsonLines::default();
    let rep: &dyn Reporter = if args.json { &json } else { &console };
    let outcome = apply::apply(
        inputs,
        checked,
        Options {
            wipe: args.wipe,
            reset_all: args.reset_all,
        },
        rep,
    )?;
    let msg = match &outcome {
        Outcome::AlreadyInstalled => format!(
            "cluster {} is already installed on {}; every step verified, nothing was written",
            inputs.plan.cluster.name,
            san.name()
        ),
        Outcome::Installed { did } => format!(
            "cluster {} ({} nodes) installed on {} (steps done: {})",
            inputs.plan.cluster.name,
            inputs.plan.nodes.len(),
            san.name(),
            did.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ")
        ),
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({"event": "finished", "already_installed": outcome == Outcome::AlreadyInstalled, "message": msg})
        );
    } else {
        println!("{msg}");
    }
    Ok(())
}

fn confirm(inputs: &Inputs, checked: &device::Checked) -> anyhow::Result<()> {
    let plan = &inputs.plan;
    let now = match checked.contents() {
        Contents::Blank => "blank".to_owned(),
        Contents::ThisCluster => {
            "an install of this cluster (it will be verified and finished)".to_owned()
        }
        Contents::Foreign(what) => format!("{what} (ALL OF IT WILL BE ERASED)"),
    };
    eprintln!("Target: {}", device::describe(checked.facts()));
    eprintln!("  holds: {now}");
    eprintln!(
        "Cluster {} ({}): {} nodes, {} partitions, image {} {}",
        plan.cluster.name,
        plan.cluster.uuid,
        plan.nodes.len(),
        plan.disk.partitions.len(),
        inputs.image.manifest.name,
        inputs.image.manifest.version
    );
    if !std::io::stdin().is_terminal() {
        bail!(
            "not confirmed: standard input is not a terminal; pass --yes to install without asking"
        );
    }
    eprint!("Type yes to install: ");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the answer")?;
    if line.trim() != "yes" {
        return Err(Refusal::NotBlank {
            path: checked.facts().path.clone(),
            what: "an install that was not confirmed".into(),
        }
        .into());
    }
    Ok(())
}

fn status(args: StatusArgs) -> anyhow::Result<()> {
    on_san(&args.san, |san| status_on(&args, san))
}

fn status_on(args: &StatusArgs, san: &installer::iscsi::Opened) -> anyhow::Result<()> {
    let inst = Installed::open(san.path())?;
    let st = inst.status()?;
    if args.json {
        return emit(&format!("{}\n", serde_json::to_string_pretty(&st)?));
    }
    let mut out = format!(
        "cluster {} ({}) on {}\nimage: {}\ninstall: {}\n",
        st.cluster,
        st.uuid,
        san.name(),
        st.image.as_deref().unwrap_or("unknown"),
        if st.complete {
            "complete"
        } else {
            "NOT complete"
        }
    );
    for s in &st.steps {
        out.push_str(&format!(
            "  {:<8} {}\n",
            s.step.name(),
            if s.done { "done" } else { "pending" }
        ));
    }
    out.push_str(&format!(
        "origin: {}\nnodes ({}):\n",
        st.origin_problem.as_deref().unwrap_or("verifies"),
        st.nodes.len()
    ));
    for n in &st.nodes {
        out.push_str(&format!(
            "  {:<12} {:<15} {}\n",
            n.name,
            n.ip,
            n.macs.join(",")
        ));
    }
    emit(&out)
}

fn verify(args: SanArg) -> anyhow::Result<()> {
    on_san(&args.san, verify_on)
}

fn verify_on(san: &installer::iscsi::Opened) -> anyhow::Result<()> {
    let name = san.name();
    let inst = Installed::open(san.path())?;
    let mut problems = inst.layout_differences();
    if let Some(p) = inst.check_origin()? {
        problems.push(p);
    }
    match &inst.journal {
        Some(j) if j.complete() => {}
        Some(j) => problems.push(format!(
            "the install is not complete: pending {}",
            installer::journal::Step::ALL
                .iter()
                .filter(|s| !j.is_done(**s))
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        None => problems.push("no install journal on vlx-meta".into()),
    }
    if problems.is_empty() {
        println!(
            "{}: cluster {} verifies: layout as planned ({} partitions), origin sha256 matches",
            name,
            inst.plan.cluster.name,
            inst.plan.disk.partitions.len()
        );
        return Ok(());
    }
    for p in &problems {
        eprintln!("{}: {p}", name);
    }
    bail!("{} does not verify: {} problem(s)", name, problems.len())
}

/// Writes to stdout; a closed pipe (`| head`) ends the output quietly.
fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to standard output"),
    }
}
