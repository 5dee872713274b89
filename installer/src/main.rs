//! `vlx-install`: parses the command line and dispatches to the library.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use cluster::SanFacts;
use installer::apply::{self, Inputs, Options, Outcome, Reporter};
use installer::cli::{ApplyArgs, Cli, Command, PlanArgs, ResetArgs, StatusArgs, VerifyArgs};
use installer::device::{self, Contents, Refusal};
use installer::installed::Installed;
use installer::iscsi::{Busy, San, SanOpt};
use installer::prepare::{self, Base, PrepareError, Request};
use installer::report::{Console, JsonLines};
use voice::exit;

const PROGRAM: &str = "vlx-install";

/// An install that was not confirmed: nothing was written (exit 3).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct NotConfirmed(#[source] voice::Hinted);

fn main() -> ExitCode {
    let cli: Cli = voice::parse();
    let json = match &cli.command {
        Command::Plan(a) => a.json,
        Command::Apply(a) => a.json,
        Command::Status(a) => a.json,
        Command::Verify(a) => a.json,
        Command::ResetNode(a) => a.json,
        Command::Upgrade(a) => a.json,
        Command::Rollback(a) => a.json,
        Command::Completions(_) | Command::MediaEnv => false,
    };
    let result = match cli.command {
        Command::Plan(a) => plan(a),
        Command::Apply(a) => apply_cmd(a),
        Command::Status(a) => status(a),
        Command::Verify(a) => verify(a),
        Command::ResetNode(a) => reset_node(a),
        Command::Upgrade(a) => on_san(&a.san, |san, _| {
            slot_change(a.json, |rep| installer::slots::upgrade(san, &a.image, rep))
        }),
        Command::Rollback(a) => on_san(&a.san, |san, _| {
            slot_change(a.json, |rep| installer::slots::rollback(san, rep))
        }),
        Command::Completions(c) => c.print(installer::cli::command()),
        Command::MediaEnv => return installer::media::main(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = exit_code(&e);
            let mut failure = match e.downcast_ref::<PrepareError>() {
                Some(PrepareError::Invalid(d) | PrepareError::DoesNotFit(d)) => {
                    let mut f = voice::Failure::diagnostics(PROGRAM, d, code);
                    // An iSCSI SAN's name comes as context around them.
                    let top = e.to_string();
                    if top != d.to_string() {
                        f.errors.insert(
                            0,
                            voice::Said {
                                error: top,
                                hint: None,
                            },
                        );
                    }
                    f
                }
                _ => voice::Failure::new(PROGRAM, &e, code),
            };
            if code == exit::REFUSED {
                let said = match e.downcast_ref::<PrepareError>() {
                    Some(PrepareError::DoesNotFit(_)) => {
                        "; the profile does not fit this SAN: nothing was written to it"
                    }
                    _ => "; nothing was written to the target",
                };
                if let Some(first) = failure.errors.first_mut() {
                    first.error.push_str(said);
                }
            }
            voice::report(&failure, json)
        }
    }
}

/// 2 for bad input, 3 for a refused target (left as it was), else 1.
fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(p) = e.downcast_ref::<PrepareError>() {
        return p.exit_code();
    }
    if let Some(s) = e.downcast_ref::<installer::slots::SlotsError>() {
        return s.exit_code();
    }
    if let Some(i) = e.downcast_ref::<installer::iscsi::IscsiError>() {
        return i.exit_code();
    }
    // A session to the target that was there before: left alone, refused.
    if e.is::<Busy>() {
        return exit::REFUSED;
    }
    if e.is::<BadInput>() || installer::exit::is_bad_input(e) {
        return exit::BAD_INPUT;
    }
    // Whatever refuses the target (its type, a lock, the image, ...).
    if installer::exit::is_refusal(e) {
        return exit::REFUSED;
    }
    let refused = e.downcast_ref::<Refusal>().is_some()
        || e.downcast_ref::<NotConfirmed>().is_some()
        || matches!(
            e.downcast_ref::<apply::ApplyError>(),
            Some(apply::ApplyError::Refused(_))
        )
        || matches!(
            e.downcast_ref::<installer::reset::ResetError>(),
            Some(installer::reset::ResetError::Refused(_))
        );
    if refused {
        return exit::REFUSED;
    }
    if e.chain().any(|c| c.is::<cluster::Diagnostics>())
        || matches!(
            e.downcast_ref::<installer::reset::ResetError>(),
            Some(installer::reset::ResetError::UnknownNode { .. })
        )
    {
        return exit::BAD_INPUT;
    }
    exit::FAILED
}

/// Bad input that is no profile's: a node list, a node name, a disk name.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadInput(String);

/// The SAN a `--san` names: a path, or a disk by serial:, wwn:, by-id:.
fn san_path(san: &Path) -> anyhow::Result<PathBuf> {
    installer::media::disks::resolve_san(san).map_err(|e| BadInput(e.to_string()).into())
}

/// Runs `f` on the opened SAN (its device path and its name for messages),
/// then closes it: an iSCSI session logs out whether `f` succeeded or not.
fn on_san(opt: &SanOpt, f: impl FnOnce(&Path, &str) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let opt = match &opt.san {
        San::Path(p) => SanOpt {
            san: San::Path(san_path(p)?),
            chap: opt.chap.clone(),
        },
        San::Iscsi(_) => opt.clone(),
    };
    let san = opt.open()?;
    let name = san.name();
    let done = if san.is_iscsi() {
        f(san.path(), &name).with_context(|| format!("SAN {name}"))
    } else {
        f(san.path(), &name)
    };
    let closed = san.close();
    if let (Err(_), Err(c)) = (&done, &closed) {
        eprintln!("{PROGRAM}: error: {c}");
    }
    done?;
    Ok(closed?)
}

/// The names of a node list, each a node of `plan`.
fn node_names(list: &str, plan: &cluster::Plan) -> anyhow::Result<Vec<String>> {
    let names = cluster::nodelist::expand(list).map_err(|e| BadInput(e.to_string()))?;
    let unknown: Vec<&str> = names
        .iter()
        .filter(|n| plan.node(n).is_none())
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        let known: Vec<String> = plan.nodes.iter().map(|n| n.name.to_string()).collect();
        return Err(BadInput(format!(
            "cluster {} has no node {}; its nodes are {}",
            plan.cluster.name,
            cluster::nodelist::fold(&unknown),
            cluster::nodelist::fold(&known)
        ))
        .into());
    }
    Ok(names)
}

fn reset_node(a: ResetArgs) -> anyhow::Result<()> {
    on_san(&a.san, |san, name| reset_on(&a, san, name))
}

fn reset_on(a: &ResetArgs, san: &Path, san_name: &str) -> anyhow::Result<()> {
    // Every name is checked before any node is reset.
    let plan = Installed::open(san)?.plan;
    let names = node_names(&a.name, &plan)?;
    if !a.yes {
        eprintln!(
            "Reset {} of cluster {} on {}: everything written on {} since {} last install or reset is lost at the next boot",
            cluster::nodelist::fold(&names),
            plan.cluster.name,
            san_name,
            if names.len() == 1 {
                "that node"
            } else {
                "those nodes"
            },
            if names.len() == 1 { "its" } else { "their" },
        );
        ask_yes(san, "reset")?;
    }
    let mut done = Vec::new();
    for name in &names {
        let msg = installer::reset::reset_node(san, name)?;
        if !a.json {
            println!("{msg}");
        }
        done.push(serde_json::json!({"node": name, "message": msg}));
    }
    if a.json {
        println!("{}", serde_json::json!({"san": san_name, "reset": done}));
    }
    Ok(())
}

/// Runs an upgrade or rollback with progress on standard error and prints
/// its outcome.
fn slot_change(
    json: bool,
    f: impl FnOnce(&dyn Reporter) -> Result<installer::slots::Outcome, installer::slots::SlotsError>,
) -> anyhow::Result<()> {
    let console = Console::new();
    let lines = JsonLines::default();
    let rep: &dyn Reporter = if json { &lines } else { &console };
    let outcome = f(rep)?;
    if json {
        emit(&format!("{}\n", serde_json::to_string(&outcome)?))
    } else {
        emit(&format!("{}\n", outcome.message))
    }
}

fn plan(args: PlanArgs) -> anyhow::Result<()> {
    let resolved = args.san.as_deref().map(san_path).transpose()?;
    let planned = match (&resolved, args.san_size) {
        (Some(path), _) => {
            let facts = device::inspect(path)
                .with_context(|| format!("inspecting SAN {}", path.display()))?;
            prepare::plan_onto(&args.cluster, path, &facts, Base::Installed)?
        }
        (None, size) => prepare::plan_profile(
            &args.cluster,
            SanFacts {
                size,
                sector_size: None,
            },
        )
        // Only a real target is refused; a --san-size too small is bad input.
        .map_err(|e| match e {
            PrepareError::DoesNotFit(d) => PrepareError::Invalid(d),
            e => e,
        })?,
    };
    let mut plan = planned.plan;
    if args.diff {
        let Some(installed) = &planned.installed else {
            return Err(PrepareError::NoInstall {
                san: resolved.clone().unwrap_or_default(),
                cluster: plan.cluster.name.clone(),
            }
            .into());
        };
        let diff =
            installer::change::Shown::new(installed, &plan, &prepare::folder_of(&args.cluster))?;
        let text = if args.json {
            format!("{}\n", serde_json::to_string_pretty(&diff)?)
        } else {
            diff.to_string()
        };
        return emit(&text);
    }
    if let Some(list) = &args.nodes {
        let names = node_names(list, &plan)?;
        plan.nodes
            .retain(|n| names.iter().any(|x| *x == n.name.to_string()));
    }
    let text = if args.json {
        plan.to_json()
    } else {
        plan.to_string()
    };
    emit(&text)
}

fn apply_cmd(args: ApplyArgs) -> anyhow::Result<()> {
    on_san(&args.san, |san, name| apply_on(&args, san, name))
}

fn apply_on(args: &ApplyArgs, san: &Path, san_name: &str) -> anyhow::Result<()> {
    // With --wipe the SAN is laid out afresh; otherwise a SAN that holds
    // this cluster gets the profile's changes in place.
    let base = if args.wipe {
        Base::Fresh
    } else {
        Base::Installed
    };
    let prepared = prepare::prepare_onto(
        Request {
            cluster: &args.cluster,
            image: &args.image,
            san,
            test_image: args.test_image,
        },
        base,
    )?;
    let checked = prepared.check_target(args.wipe)?;
    let inputs = &prepared.inputs;
    if !args.yes {
        confirm(inputs, &checked, args.wipe)?;
    }
    let change = inputs
        .installed
        .as_ref()
        .map(|old| cluster::diff::diff(old, &inputs.plan))
        .filter(|d| !d.is_empty());
    if let (Some(d), false) = (&change, args.json) {
        print!("changes to the installed cluster:\n{d}");
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
            inputs.plan.cluster.name, san_name
        ),
        Outcome::Installed { did } if change.is_some() => format!(
            "cluster {} ({} nodes) changed in place on {} (steps done: {})",
            inputs.plan.cluster.name,
            inputs.plan.nodes.len(),
            san_name,
            did.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ")
        ),
        Outcome::Installed { did } => format!(
            "cluster {} ({} nodes) installed on {} (steps done: {})",
            inputs.plan.cluster.name,
            inputs.plan.nodes.len(),
            san_name,
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

fn confirm(inputs: &Inputs, checked: &device::Checked, wipe: bool) -> anyhow::Result<()> {
    let plan = &inputs.plan;
    let now = match (checked.contents(), wipe) {
        (Contents::Blank, _) => "nothing: it will be installed".to_owned(),
        (Contents::ThisCluster, false) => {
            "an install of this cluster: every step done is verified, the rest is done".to_owned()
        }
        (Contents::ThisCluster, true) => {
            "an install of this cluster: with --wipe ALL OF IT WILL BE ERASED and installed anew"
                .to_owned()
        }
        (Contents::Foreign(what), _) => format!("{what}: ALL OF IT WILL BE ERASED"),
    };
    eprintln!("Target: {}", device::describe(checked.facts()));
    eprintln!("  holds {now}");
    eprintln!(
        "Summary: cluster {} ({}), {} nodes, {} partitions, image {} {}{} (the whole plan: vlx-install plan)",
        plan.cluster.name,
        plan.cluster.uuid,
        plan.nodes.len(),
        plan.disk.partitions.len(),
        inputs.image.manifest.name,
        inputs.image.manifest.version,
        prepare::test_image_note(&inputs.image.manifest),
    );
    ask_yes(&checked.facts().path, "install")
}

/// Asks for `yes` on the terminal; anything else, or no terminal, is a
/// refusal (exit 3) that has written nothing.
fn ask_yes(target: &Path, what: &str) -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(NotConfirmed(voice::Hinted::new(
            format!(
                "{}: {what} not confirmed: standard input is not a terminal",
                target.display()
            ),
            format!("pass --yes to {what} without asking"),
        ))
        .into());
    }
    eprint!("Type yes to {what}: ");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the answer")?;
    if line.trim() != "yes" {
        return Err(NotConfirmed(voice::Hinted::new(
            format!(
                "{}: {what} cancelled (the answer was not yes)",
                target.display()
            ),
            format!("run it again and type yes to {what}"),
        ))
        .into());
    }
    Ok(())
}

fn status(args: StatusArgs) -> anyhow::Result<()> {
    on_san(&args.san, |san, name| status_on(&args, san, name))
}

fn status_on(args: &StatusArgs, san: &Path, san_name: &str) -> anyhow::Result<()> {
    let inst = Installed::open(san)?;
    if args.live {
        if !inst.plan.disk.has_slots() {
            return Err(installer::slots::SlotsError::Refused(voice::Hinted::new(
                format!(
                    "{san_name}: cluster {} has one origin slot, so its nodes have no record area to publish their status in",
                    inst.plan.cluster.name
                ),
                "status --live needs storage.slots = 2 (a reinstall); plain status reads the stores",
            ))
            .into());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let live = installer::live::read(&inst, now);
        return emit(&if args.json {
            format!("{}\n", serde_json::to_string_pretty(&live)?)
        } else {
            live.to_string()
        });
    }
    let st = inst.status(args.check_origin)?;
    if args.json {
        return emit(&format!("{}\n", serde_json::to_string_pretty(&st)?));
    }
    let mut out = format!(
        "cluster {} ({}) on {}\nimage: {}{}\ninstall: {}\n",
        st.cluster,
        st.uuid,
        san_name,
        st.image.as_deref().unwrap_or("unknown"),
        if st.test_image {
            " (test image: a root shell without login on every blade's serial ports; for test rigs only)"
        } else {
            ""
        },
        if st.complete {
            "complete"
        } else {
            "NOT complete"
        }
    );
    for s in &st.steps {
        out.push_str(&format!(
            "  {:<20} {}\n",
            installer::report::step_label(s.step),
            if s.done { "done" } else { "pending" }
        ));
    }
    if !st.complete {
        out.push_str("  an install cut short: apply with the same profile and image finishes it\n");
    }
    let origin = match (&st.origin_problem, st.origin_checked) {
        (Some(p), _) => p.as_str(),
        (None, true) => "verifies",
        (None, false) => "not checked (status --check-origin or verify re-hash it)",
    };
    out.push_str(&format!("origin: {origin}\n"));
    if let Some(t) = &st.slots {
        for s in cluster::slots::Slot::ALL {
            let what = if s == t.current {
                "current: every blade boots it"
            } else if Some(s) == t.previous {
                "previous: vlx-install rollback returns to it"
            } else {
                "empty"
            };
            let image = t
                .image(s)
                .map_or_else(|| "no image".to_owned(), ToString::to_string);
            out.push_str(&format!("slot {s}: {image}, {what}\n"));
        }
    }
    out.push_str(&format!("nodes ({}):\n", st.nodes.len()));
    let mut warned = Vec::new();
    for n in &st.nodes {
        let store = match (&n.store, &n.store_problem) {
            (Some(f), _) => {
                if f.level() > 0 {
                    warned.push(n.name.as_str());
                }
                format!("store {f}")
            }
            (None, Some(p)) => format!("store unreadable: {p}"),
            (None, None) => "store unknown".into(),
        };
        let slot = match &n.slot {
            None => String::new(),
            Some(s) => match (&s.problem, s.slot) {
                (Some(p), _) => format!("  slot record unreadable: {p}"),
                (None, None) => "  slot -, not booted since its store was made".into(),
                (None, Some(slot)) if s.moves_at_reboot => {
                    format!("  slot {slot}, MOVES at its next reboot (store reset then)")
                }
                (None, Some(slot)) => format!("  slot {slot}"),
            },
        };
        out.push_str(&format!(
            "  {:<12} {:<15} {:<18} {store}{slot}\n",
            n.name,
            n.ip,
            n.macs.join(",")
        ));
    }
    if !warned.is_empty() {
        out.push_str(&format!(
            "stores at 80 % or more: {} (see README, \"A snapshot store fills\")\n",
            warned.join(" ")
        ));
    }
    emit(&out)
}

fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    on_san(&args.san, |san, name| verify_on(&args, san, name))
}

fn verify_on(args: &VerifyArgs, san: &Path, san_name: &str) -> anyhow::Result<()> {
    let inst = Installed::open(san)?;
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
    if args.json {
        emit(&format!(
            "{}\n",
            serde_json::json!({
                "san": san_name,
                "cluster": inst.plan.cluster.name,
                "partitions": inst.plan.disk.partitions.len(),
                "verifies": problems.is_empty(),
                "problems": problems,
            })
        ))?;
    }
    if problems.is_empty() {
        if !args.json {
            println!(
                "{}: cluster {} verifies: layout as planned ({} partitions), origin sha256 matches",
                san_name,
                inst.plan.cluster.name,
                inst.plan.disk.partitions.len()
            );
        }
        return Ok(());
    }
    if !args.json {
        for p in &problems {
            eprintln!("{PROGRAM}: error: {}: {p}", san_name);
        }
    }
    anyhow::bail!(
        "{} does not verify: {} problem(s)",
        san_name,
        problems.len()
    )
}

/// Writes to stdout; a closed pipe (`| head`) ends the output quietly.
fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to standard output"),
    }
}
