//! `vlx-rig`: parses the command line and dispatches to the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use qemu_tests::bootcmd::{self, BootOptions};
use qemu_tests::cli::{Cli, Command, RehearseArgs};
use qemu_tests::plan::{MediaKind, Options, Scheme, Timeouts};
use qemu_tests::qemu::Firmware;
use qemu_tests::rehearse::{self, RehearseError, Request};
use qemu_tests::report::Outcome;
use qemu_tests::run;
use voice::exit;

const PROGRAM: &str = "vlx-rig";

/// Bad input: the failure to report, and its exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadInput(#[source] voice::Hinted);

/// `--ready-timeout` by default.
const READY_SECS: u64 = 300;
use qemu_tests::plan::{DEBIAN_MEMORY_MIB, DEBIAN_READY};

fn rehearse(a: RehearseArgs) -> anyhow::Result<ExitCode> {
    if !a.cluster.is_file() {
        let cwd = std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|_| "an unknown folder".into());
        let looked = std::path::absolute(&a.cluster).unwrap_or_else(|_| a.cluster.clone());
        return Err(BadInput(voice::Hinted::new(
            format!(
                "cluster profile {}: not found (looked for {}, from {cwd})",
                a.cluster.display(),
                looked.display()
            ),
            "pass --cluster FILE, or run vlx-rig from the root of a vlx checkout \
             (the default is profiles/clusters/demo.toml there)",
        ))
        .into());
    }
    let json = a.json;
    let host_given = a.host.is_some();
    let host = a
        .host
        .map(|h| match h.as_str() {
            "tiny" => PathBuf::from("profiles/hosts/tiny.toml"),
            TINY_ISCSI => PathBuf::from(TINY_ISCSI_PROFILE),
            "debian" => PathBuf::from("profiles/hosts/debian-bookworm.toml"),
            _ => PathBuf::from(h),
        })
        .or_else(|| iscsi_host(&a.cluster));
    // A Debian host (mmdebstrap, systemd) by name or by its profile's path:
    // its memory and ready time, unless given.
    let debian = host.as_deref().is_some_and(is_debian_host);
    let memory = a.memory.unwrap_or(if debian {
        DEBIAN_MEMORY_MIB
    } else {
        qemu_tests::plan::DEFAULT_MEMORY_MIB
    });
    let ready_timeout = a.ready_timeout.unwrap_or(if debian {
        DEBIAN_READY.as_secs()
    } else {
        READY_SECS
    });
    let options = Options {
        nodes: a.nodes,
        image: a.image,
        firmware: a.firmware.map(Firmware::from),
        memory_mib: memory,
        scheme: if a.pxe_only {
            Scheme::PxeOnly
        } else {
            Scheme::Cold
        },
        stop_after: a.stop_after,
        strangers: a.stranger,
        from_media: a.from_media.map(MediaKind::from),
        host,
        fill_store: false,
        day2: a.day2,
        timeouts: Timeouts {
            ready: Duration::from_secs(ready_timeout),
            power_gap: Duration::try_from_secs_f64(a.stagger)
                .map_err(|e| anyhow::anyhow!("--stagger {}: {e}", a.stagger))?,
            ..Timeouts::default()
        },
    };
    if let (false, Some(h)) = (host_given, &options.host) {
        eprintln!(
            "an iSCSI cluster: rehearsed on {} (its initramfs logs in from the iBFT, its root runs \
             iscsid); --host names another image",
            h.display()
        );
    }
    let req = Request {
        profile: a.cluster,
        options,
        report_dir: a.report,
        keep: a.keep,
        build_programs: false,
    };
    let outcome = match rehearse::rehearse(&req, &|line| eprintln!("{line}")) {
        Ok(o) => o,
        Err(RehearseError::Invalid(d)) => {
            let f = voice::Failure::diagnostics(PROGRAM, &d, exit::BAD_INPUT);
            return Ok(voice::report(&f, json));
        }
        // Options that do not fit the profile or each other.
        Err(RehearseError::Plan(e)) => {
            return Err(BadInput(voice::Hinted::new(
                e.to_string(),
                "vlx-rig rehearse --help lists the options",
            ))
            .into());
        }
        Err(e) => return Err(e.into()),
    };
    let files = &outcome.files;
    let failed = outcome.checks.failed();
    let passed = failed.is_empty() && outcome.checks.all_passed();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "passed": passed,
                "failed": failed,
                "checks": outcome.checks,
                "report": {
                    "dir": files.dir,
                    "checks_json": files.checks_json,
                    "timeline_json": files.timeline_json,
                    "timeline_svg": files.timeline_svg,
                    "plan": files.plan,
                    "consoles": files.consoles(),
                },
                "kept": outcome.kept,
            })
        );
        return Ok(ExitCode::from(if passed { exit::OK } else { exit::FAILED }));
    }
    println!("\n{}", outcome.checks);
    for c in outcome
        .checks
        .0
        .iter()
        .filter(|c| c.outcome == Outcome::Failed)
    {
        if c.detail.lines().count() > 1 {
            println!("\n{}:\n{}", c.name, c.detail);
        }
    }
    let abs = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    println!(
        "\nreport: {} (checks.txt, checks.json, timeline.json, timeline.svg, plan.txt, consoles/)",
        abs(&files.dir).display()
    );
    if let Some(dir) = &outcome.kept {
        println!("kept: {} (SAN, image, sockets)", dir.display());
    }
    if !passed {
        let mut why = failed.join(", ");
        if why.is_empty() {
            why = "some checks did not run".into();
        }
        let f = voice::Failure {
            program: PROGRAM.into(),
            errors: vec![voice::Said {
                error: format!("rehearsal failed: {why}"),
                hint: Some(format!(
                    "the report in {} has the consoles and every check",
                    abs(&files.dir).display()
                )),
            }],
            exit_code: exit::FAILED,
        };
        return Ok(voice::report(&f, false));
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli: Cli = voice::parse();
    let json = matches!(&cli.command, Command::Rehearse(a) if a.json);
    let result = match cli.command {
        Command::Rehearse(a) => rehearse(a),
        Command::Boot(a) => bootcmd::boot(&BootOptions {
            kernel: a.kernel,
            initrd: a.initrd,
            append: a.append,
            blades: a.blades,
            wait: a.wait,
            firmware: a.firmware.into(),
            memory_mib: a.memory,
            timeout: Duration::from_secs(a.timeout),
            first_mac: a.mac,
            keep: a.keep,
        })
        .map(|()| ExitCode::SUCCESS)
        .map_err(anyhow::Error::from),
        Command::Completions(c) => c
            .print(qemu_tests::cli::command())
            .map(|()| ExitCode::SUCCESS),
    };
    if let Some(sig) = run::interrupted_by() {
        return ExitCode::from((128 + sig).clamp(0, 255) as u8);
    }
    match result {
        Ok(code) => code,
        Err(e) => {
            let code = if e.is::<BadInput>() {
                exit::BAD_INPUT
            } else {
                exit::FAILED
            };
            voice::fail(PROGRAM, json, &e, code)
        }
    }
}

/// Whether the host image profile at `path` builds a Debian root with
/// mmdebstrap (the image builder's own reading of it); a profile that
/// cannot be read is not (the rehearsal names its error when it loads it).
fn is_debian_host(path: &std::path::Path) -> bool {
    imagebuilder::profile::HostProfile::load(path)
        .is_ok_and(|p| matches!(p.rootfs, imagebuilder::profile::RootSource::Mmdebstrap(_)))
}

/// The host image an iSCSI cluster is rehearsed on without `--host`.
const TINY_ISCSI: &str = "tiny-iscsi";
const TINY_ISCSI_PROFILE: &str = "profiles/hosts/tiny-iscsi.toml";

/// [`TINY_ISCSI_PROFILE`] when the cluster profile at `profile` has an
/// iSCSI SAN: an image with the iSCSI transport, the iBFT's module and
/// iscsid, which the iSCSI rehearsal needs (a profile the rig cannot read
/// is reported by the rehearsal itself).
fn iscsi_host(profile: &std::path::Path) -> Option<PathBuf> {
    let plan = rehearse::load_profile(profile).ok()?;
    matches!(plan.san.transport, cluster::profile::Transport::Iscsi(_))
        .then(|| PathBuf::from(TINY_ISCSI_PROFILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_debian_host_is_known_by_its_profile_not_its_name() {
        let hosts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../profiles/hosts");
        assert!(is_debian_host(&hosts.join("debian-bookworm.toml")));
        assert!(!is_debian_host(&hosts.join("tiny.toml")));
        assert!(!is_debian_host(&hosts.join("no-such-profile.toml")));
    }
}
