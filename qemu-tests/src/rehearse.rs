//! The executor of a rehearsal plan: runs its steps in order, records every
//! check, and always powers the blades off and writes the report, also
//! after a failure.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use cluster::Plan;

use crate::blade::{self, Logs, Powered};
use crate::checks::{self, Node};
use crate::plan::{self, Blade, Host, ImageSource, Options, Part, Rehearsal, Step, VIP_MOVE_LIMIT};
use crate::qemu::BootFrom;
use crate::report::{self, Checks, Mark, MarkKind, Phase, Timeline};
use crate::run::{self, Run};
use crate::switch::Switch;
use crate::{accel, san, ssh, tools};

mod day2;
mod nfs;
mod target;
mod vcs;

pub use nfs::NFS_RESUME_LIMIT;

/// How long filling a blade's store may take (`dd` under TCG on a busy
/// host).
const FILL_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);
/// How long a blade's store watcher may take to warn (it polls every
/// 10 s).
const WATCH_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// What `vlx-rig rehearse` asks for.
#[derive(Debug, Clone)]
pub struct Request {
    /// The cluster profile.
    pub profile: PathBuf,
    pub options: Options,
    pub report_dir: PathBuf,
    /// Keep the run's scratch directory (SAN, image, sockets).
    pub keep: bool,
    /// Build the workspace's programs first (`cargo build`), for tests run
    /// by cargo.
    pub build_programs: bool,
}

/// What a rehearsal found.
#[derive(Debug)]
pub struct Outcome {
    pub rehearsal: Rehearsal,
    pub checks: Checks,
    pub timeline: Timeline,
    pub files: report::Files,
    /// The scratch directory, when kept.
    pub kept: Option<PathBuf>,
}

/// Why a rehearsal could not run at all (a failing step is a failed check
/// in the report instead).
#[derive(Debug, thiserror::Error)]
pub enum RehearseError {
    #[error("cannot read cluster profile {path}: {source}")]
    Profile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(cluster::Diagnostics),
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    #[error(transparent)]
    Run(#[from] run::RunError),
    #[error(transparent)]
    Tools(#[from] tools::ToolError),
    #[error("cannot prepare the report directory {path}: {source}")]
    ReportDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Report(#[from] report::WriteError),
    #[error("preparing the rehearsal: {0}")]
    Setup(String),
}

/// Reads the profile and plans the cluster as the installer would.
pub fn load_profile(path: &Path) -> Result<Plan, RehearseError> {
    let text = std::fs::read_to_string(path).map_err(|source| RehearseError::Profile {
        path: path.to_owned(),
        source,
    })?;
    let source = cluster::Source::new(path.display().to_string(), text);
    let base = path.parent().map(Path::to_owned).unwrap_or_default();
    cluster::load(
        &source,
        &cluster::FsEnv { base },
        cluster::SanFacts::default(),
    )
    .map(|(_, plan)| plan)
    .map_err(RehearseError::Invalid)
}

/// Plans and runs a rehearsal. `say` gets one line per step as it starts
/// and ends.
pub fn rehearse(req: &Request, say: &dyn Fn(&str)) -> Result<Outcome, RehearseError> {
    let cluster = load_profile(&req.profile)?;
    if req.build_programs {
        say("building the workspace's programs (cargo build --workspace --bins)");
        tools::build_workspace_bins()?;
    }
    let base = req.profile.parent().map(Path::to_owned).unwrap_or_default();
    let host_profile = match &req.options.host {
        Some(h) => h.clone(),
        None => base.join(&cluster.image.host),
    };
    let run = Run::start(req.keep)?;
    // A test image runs a root shell on ttyS1 for the rig; any other is
    // checked over SSH with a key of the rig's own.
    let test_image = match &req.options.image {
        Some(dir) => contracts::image::Manifest::read(dir)
            .map(|m| m.test_image)
            .map_err(|e| RehearseError::Setup(format!("{}: {e}", dir.display())))?,
        None => imagebuilder::profile::HostProfile::load(&host_profile)
            .map(|p| p.test_image)
            .map_err(|e| RehearseError::Setup(e.to_string()))?,
    };
    let rig_key = if test_image {
        None
    } else {
        Some(ssh::RigKey::make(run.dir()).map_err(RehearseError::Setup)?)
    };
    let iscsi = matches!(cluster.san.transport, cluster::profile::Transport::Iscsi(_));
    let day2 = req.options.day2;
    let profile = if req.options.host.is_some() || rig_key.is_some() || iscsi || day2 {
        let copy = run.dir().join("cluster").join(
            req.profile
                .file_name()
                .unwrap_or(std::ffi::OsStr::new("cluster.toml")),
        );
        write_profile_copy(
            &req.profile,
            &host_profile,
            rig_key.as_ref(),
            Adapt {
                iscsi,
                day2,
                media: req.options.from_media.is_some(),
            },
            &copy,
        )
        .map_err(RehearseError::Setup)?;
        say(&format!(
            "installing {} (a copy of {} naming host image {}{})",
            copy.display(),
            req.profile.display(),
            host_profile.display(),
            if rig_key.is_some() {
                ", with the rig's SSH key for root"
            } else {
                ""
            }
        ));
        if day2 {
            say("the copy has two origin slots (storage.slots = 2) for the day-2 upgrade");
        }
        copy
    } else {
        req.profile.clone()
    };
    let cluster = load_profile(&profile)?;
    let probe_kernel = match &req.options.image {
        Some(dir) => Some(dir.join("vmlinuz")),
        None => crate::testkit::cached_kernel().map(|k| k.vmlinuz),
    };
    let probe = accel::choose(&run, probe_kernel.as_deref());
    say(&format!("acceleration: {} ({})", probe.accel, probe.why));
    let host = Host {
        profile: profile.clone(),
        host_profile,
        run_dir: run.dir().to_owned(),
        report_dir: req.report_dir.clone(),
        accel: probe.accel,
        ovmf: crate::firmware::ovmf(),
    };
    let rehearsal = plan::plan(&cluster, &req.options, &host)?;
    let files = report::Files::in_dir(&req.report_dir);
    prepare_report_dir(&files)?;
    std::fs::write(&files.plan, rehearsal.to_string()).map_err(|source| {
        RehearseError::ReportDir {
            path: files.plan.clone(),
            source,
        }
    })?;
    let mut exec = Exec {
        r: &rehearsal,
        cluster: &cluster,
        run: &run,
        logs: Logs {
            dir: files.consoles(),
        },
        switch: None,
        rig_key,
        host_side: None,
        storage: None,
        live: Vec::new(),
        timeline: Timeline {
            cluster: rehearsal.cluster.clone(),
            accel: host.accel.to_string(),
            ..Timeline::default()
        },
        checks: Checks::default(),
        facts: Facts::default(),
        say,
    };
    exec.run_steps();
    exec.timeline.end = run.started().elapsed().as_secs_f64();
    report::write(&files, &exec.timeline, &exec.checks)?;
    let (checks, timeline) = (exec.checks, exec.timeline);
    let kept = run.keeps_files().then(|| run.dir().to_owned());
    drop(run);
    Ok(Outcome {
        rehearsal,
        checks,
        timeline,
        files,
        kept,
    })
}

/// The highest address of `net` that is not in `taken` (nor the network's
/// own or broadcast address).
fn free_address(net: cluster::Ipv4Net, taken: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    let base = u32::from(net.network());
    let size = 1u64 << (32 - u32::from(net.prefix()));
    (1..size.saturating_sub(1))
        .rev()
        .filter_map(|i| u32::try_from(i).ok())
        .map(|i| Ipv4Addr::from(base + i))
        .find(|a| !taken.contains(a))
}

/// What else the profile copy changes.
#[derive(Debug, Clone, Copy)]
struct Adapt {
    /// Fit an iSCSI cluster to QEMU's blades ([`target::adapt_profile`]).
    iscsi: bool,
    /// Two origin slots, for the day-2 upgrade ([`plan::day2::two_slots`]).
    day2: bool,
    /// Name the host profile and overlays relative to the copy's folder:
    /// install media carry the copy and what it names in their payload,
    /// where absolute paths of this machine do not hold.
    media: bool,
}

/// `path` relative to the folder `base` (both absolute, without `..`).
fn relative_to(base: &Path, path: &Path) -> PathBuf {
    let b: Vec<_> = base.components().collect();
    let p: Vec<_> = path.components().collect();
    let common = b.iter().zip(&p).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c);
    }
    out
}

/// Writes a copy of the cluster profile at `original` to `copy`, naming
/// `host` (absolute) as its host image, its overlays as absolute paths
/// (both relative to the copy's folder for media: `adapt.media`),
/// with `no_timer_check` among its kernel arguments, with the rig's public
/// key added to `[admin] ssh_keys`, and fitted as `adapt` says.
fn write_profile_copy(
    original: &Path,
    host: &Path,
    key: Option<&ssh::RigKey>,
    adapt: Adapt,
    copy: &Path,
) -> Result<(), String> {
    let text =
        std::fs::read_to_string(original).map_err(|e| format!("{}: {e}", original.display()))?;
    let mut t: toml::Table =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", original.display()))?;
    let base = original.parent().unwrap_or(Path::new("."));
    let abs = |p: &Path| -> Result<String, String> {
        let j = if p.is_absolute() {
            p.to_owned()
        } else {
            base.join(p)
        };
        std::fs::canonicalize(&j)
            .map(|c| c.display().to_string())
            .map_err(|e| format!("{}: {e}", j.display()))
    };
    let host = if host.is_absolute() || host.exists() {
        std::fs::canonicalize(host).map_err(|e| format!("{}: {e}", host.display()))?
    } else {
        host.to_owned()
    };
    let copy_dir = match copy.parent() {
        Some(d) if adapt.media => {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
            Some(std::fs::canonicalize(d).map_err(|e| format!("{}: {e}", d.display()))?)
        }
        _ => None,
    };
    let named = |p: &Path| -> String {
        match &copy_dir {
            Some(d) if p.is_absolute() => relative_to(d, p).display().to_string(),
            _ => p.display().to_string(),
        }
    };
    let image = t
        .get_mut("image")
        .and_then(|i| i.as_table_mut())
        .ok_or_else(|| format!("{}: no [image] table", original.display()))?;
    image.insert("host".into(), toml::Value::String(named(&host)));
    if let Some(list) = image.get("overlays").and_then(|o| o.as_array()).cloned() {
        let mut out = Vec::new();
        for o in list {
            let o = o.as_str().ok_or_else(|| {
                format!("{}: image.overlays holds a non-string", original.display())
            })?;
            out.push(toml::Value::String(named(Path::new(&abs(Path::new(o))?))));
        }
        image.insert("overlays".into(), toml::Value::Array(out));
    }
    // The blades are QEMU guests: on a loaded host a TCG guest's kernel
    // can fail its IO-APIC timer check and panic at once ("IO-APIC + timer
    // doesn't work!", seen in the Debian rehearsal); cloud images skip
    // the check with no_timer_check, and so does this copy.
    let boot = t
        .entry("boot")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .ok_or_else(|| format!("{}: boot is not a table", original.display()))?;
    let args = boot
        .entry("kernel_args")
        .or_insert_with(|| toml::Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or_else(|| format!("{}: boot.kernel_args is not a list", original.display()))?;
    if !args.iter().any(|a| a.as_str() == Some(NO_TIMER_CHECK)) {
        args.push(toml::Value::String(NO_TIMER_CHECK.into()));
    }
    if let Some(k) = key {
        let admin = t
            .entry("admin")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("{}: admin is not a table", original.display()))?;
        let keys = admin
            .entry("ssh_keys")
            .or_insert_with(|| toml::Value::Array(Vec::new()))
            .as_array_mut()
            .ok_or_else(|| format!("{}: admin.ssh_keys is not a list", original.display()))?;
        keys.push(toml::Value::String(k.public.clone()));
    }
    if adapt.iscsi {
        target::adapt_profile(&mut t);
    }
    if adapt.day2 {
        plan::day2::two_slots(&mut t).map_err(|e| format!("{}: {e}", original.display()))?;
    }
    let out = toml::to_string(&t).map_err(|e| format!("{}: {e}", copy.display()))?;
    if let Some(d) = copy.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    std::fs::write(
        copy,
        format!(
            "# Written by vlx-rig: {} for this rehearsal.\n{out}",
            original.display()
        ),
    )
    .map_err(|e| format!("{}: {e}", copy.display()))
}

/// Creates the report directory, removing what an earlier rehearsal wrote
/// there (only the report's own files).
fn prepare_report_dir(files: &report::Files) -> Result<(), RehearseError> {
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| RehearseError::ReportDir { path, source }
    };
    let consoles = files.consoles();
    match std::fs::remove_dir_all(&consoles) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(&consoles)(e)),
        _ => {}
    }
    for f in [
        &files.checks_text,
        &files.checks_json,
        &files.timeline_json,
        &files.timeline_svg,
        &files.plan,
    ] {
        match std::fs::remove_file(f) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(f)(e)),
            _ => {}
        }
    }
    std::fs::create_dir_all(&consoles).map_err(err(&consoles))
}

/// A step that failed: the check it fails, and why.
#[derive(Debug)]
struct Fail {
    check: String,
    detail: String,
}

fn fail(check: impl Into<String>, detail: impl ToString) -> Fail {
    Fail {
        check: check.into(),
        detail: detail.to_string(),
    }
}

/// What earlier steps learned that later ones need.
#[derive(Debug, Default)]
struct Facts {
    origin_before: Option<String>,
    /// The blade that answered the first DHCP request of step 5.
    first_dhcp_server: Option<String>,
    vip_holder: Option<String>,
    /// Blades that wrote their file to their root.
    wrote: Vec<String>,
    /// Whether the host image carries etcd (its manifest lists
    /// [`ETCD_PACKAGE`]).
    image_has_etcd: bool,
    /// Nodes whose board a day-2 step replaced, with the new board's MAC.
    boards: Vec<(String, cluster::MacAddr)>,
}

/// The Debian package of etcd's server, as an image's manifest lists it.
const ETCD_PACKAGE: &str = "etcd-server";

struct Exec<'a> {
    r: &'a Rehearsal,
    cluster: &'a Plan,
    run: &'a Run,
    logs: Logs,
    switch: Option<Switch>,
    /// The rig's SSH key, for an image checked over SSH.
    rig_key: Option<ssh::RigKey>,
    /// The rig's end of the private segment, for SSH.
    host_side: Option<ssh::HostSide>,
    /// The storage network and target of an iSCSI rehearsal.
    storage: Option<crate::storage::Storage>,
    /// Blades with power, in the order they were powered on.
    live: Vec<Powered>,
    timeline: Timeline,
    checks: Checks,
    facts: Facts,
    say: &'a dyn Fn(&str),
}

impl Exec<'_> {
    /// Records what was done to a blade now, for the timeline.
    fn mark(&mut self, blade: &str, what: MarkKind) {
        let at = self.now();
        self.timeline.marks.push(Mark {
            at,
            blade: blade.to_owned(),
            what,
        });
    }

    fn now(&self) -> f64 {
        self.run.started().elapsed().as_secs_f64()
    }

    fn say(&self, text: &str) {
        (self.say)(&format!("[{:>7.1} s] {text}", self.now()));
    }

    fn run_steps(&mut self) {
        let mut failed: Option<u8> = None;
        for step in &self.r.steps {
            let always = matches!(step, Step::Shutdown | Step::Report { .. });
            if let (Some(at), false) = (failed, always) {
                self.checks.not_run(
                    step.number(),
                    step.title(),
                    format!("step {at} failed before it"),
                );
                continue;
            }
            if matches!(step, Step::Report { .. }) {
                continue; // written by the caller, with the whole timeline
            }
            self.say(&format!("step {}: {step}", step.number()));
            let start = self.now();
            let result = if run::interrupted() && !always {
                Err(fail("interrupted", "by Ctrl-C or SIGTERM"))
            } else {
                self.step(step)
            };
            self.timeline.phases.push(Phase {
                step: step.number(),
                name: step.to_string(),
                start,
                end: self.now(),
            });
            if let Err(f) = result {
                self.say(&format!("FAILED: {}: {}", f.check, first_line(&f.detail)));
                self.checks.fail(step.number(), f.check, f.detail);
                failed = Some(step.number());
            } else if run::interrupted() && !always {
                // The step's checks after the interruption failed for it;
                // one line says so.
                self.checks
                    .fail(step.number(), "interrupted", "by Ctrl-C or SIGTERM");
                failed = Some(step.number());
            }
        }
    }

    fn step(&mut self, step: &Step) -> Result<(), Fail> {
        match step {
            Step::Image { source } => self.image(source),
            Step::Install { san, size } => self.install(san, *size),
            Step::Media {
                profile,
                out,
                iscsi,
            } => self.media(profile, out, iscsi.as_ref()),
            Step::InstallFromMedia {
                san,
                size,
                installer,
            } => self.install_from_media(san, *size, installer),
            Step::InstallThroughIscsi {
                san,
                size,
                installer,
            } => self.install_through_iscsi(san, *size, installer),
            Step::PowerOn { blades, .. } => {
                for (i, name) in blades.iter().enumerate() {
                    if i > 0 {
                        std::thread::sleep(self.r.timeouts.power_gap);
                    }
                    let b = self.blade(name)?;
                    let m = b.machine.clone();
                    self.power_on(name, &m)?;
                }
                Ok(())
            }
            Step::AwaitReady { blades } => {
                for name in blades {
                    self.await_ready(step.number(), name)?;
                }
                match blades.first() {
                    Some(first) if self.r.fill_store => self.fill_store(step.number(), first),
                    _ => Ok(()),
                }
            }
            Step::AwaitRefusal { blades } => {
                for name in blades {
                    self.await_refusal(name)?;
                }
                Ok(())
            }
            Step::Checks => {
                self.cluster_checks();
                Ok(())
            }
            Step::TargetRestart => self.target_restart(),
            Step::WrongChap { machine } => self.wrong_chap(machine),
            Step::LoseBlades { late, .. } => self.lose_blades(late),
            Step::FactoryReset => self.factory_reset(),
            Step::AddBlade {
                blade,
                profile,
                nodes,
                grow_to,
            } => self.add_blade(blade, profile, nodes, *grow_to),
            Step::ReplaceBoard {
                node,
                mac,
                profile,
                nodes,
            } => self.replace_board(node, *mac, profile, nodes),
            Step::RemoveBlade {
                node,
                profile,
                nodes,
            } => self.remove_blade(node, profile, nodes),
            Step::Upgrade { image } => self.upgrade(image),
            Step::SharedFailover => self.shared_failover(),
            Step::Shutdown => {
                self.shutdown();
                Ok(())
            }
            Step::Report { .. } => Ok(()),
        }
    }

    fn blade(&self, name: &str) -> Result<&Blade, Fail> {
        self.r
            .blade(name)
            .ok_or_else(|| fail(format!("{name} in the plan"), "no such blade"))
    }

    fn image(&mut self, source: &ImageSource) -> Result<(), Fail> {
        let log = self.logs.dir.join("vlx-image.log");
        if let ImageSource::Build { host_profile, out } = source {
            tools::build_image(host_profile, out, &log).map_err(|e| fail("host image built", e))?;
        }
        let dir = source.dir();
        let missing = tools::missing_image_files(dir);
        if !missing.is_empty() {
            return Err(fail(
                "host image complete",
                format!("{} lacks {}", dir.display(), missing.join(", ")),
            ));
        }
        // etcd is checked where the image carries it: the tiny image where
        // the build machine has it, the Debian image once its profile
        // installs etcd-server. A manifest without a package list (written
        // before there was one) is taken to carry it.
        let manifest = contracts::image::Manifest::read(dir)
            .map_err(|e| fail("host image complete", format!("{}: {e}", dir.display())))?;
        self.facts.image_has_etcd =
            manifest.packages.is_empty() || manifest.packages.contains_key(ETCD_PACKAGE);
        self.checks
            .pass(1, "host image complete", dir.display().to_string());
        Ok(())
    }

    fn install(&mut self, san_path: &Path, size: cluster::Bytes) -> Result<(), Fail> {
        san::create(san_path, size).map_err(|e| fail("SAN created", e))?;
        let log = self.logs.dir.join("vlx-install.log");
        let out = tools::apply(&self.r.profile, self.r.image.dir(), san_path, &log)
            .map_err(|e| fail("vlx-install apply", e))?;
        self.checks.pass(
            1,
            "vlx-install apply",
            out.lines().last().unwrap_or("done").trim().to_string(),
        );
        let sha = san::origin_sha256(san_path, &self.cluster.disk)
            .map_err(|e| fail("origin fingerprinted", e))?;
        self.facts.origin_before = Some(sha);
        // Only the switch remains before the blades: it is part of the
        // rack, up before any blade.
        let switch = Switch::start(self.run, &self.r.switch, self.r.blades.len() + 4)
            .map_err(|e| fail("private segment up", e))?;
        self.switch = Some(switch);
        self.storage_up()
    }

    fn media(
        &mut self,
        profile: &Path,
        out: &Path,
        iscsi: Option<&plan::MediaIscsi>,
    ) -> Result<(), Fail> {
        // The media profile sits elsewhere: it names the cluster profile
        // by its absolute path.
        let cluster = std::path::absolute(&self.r.profile).map_err(|e| {
            fail(
                "media profile written",
                format!("{}: {e}", self.r.profile.display()),
            )
        })?;
        // The installer's CHAP file goes into the media's payload (never
        // onto a command line); the SAN is checked for its secrets after.
        let chap = match iscsi {
            Some(_) => self
                .installer_chap()
                .map_err(|e| fail("media profile written", e))?,
            None => None,
        };
        let text = plan::media_profile(&cluster, iscsi, chap.as_deref());
        std::fs::write(profile, text).map_err(|e| {
            fail(
                "media profile written",
                format!("{}: {e}", profile.display()),
            )
        })?;
        let log = self.logs.dir.join("vlx-image-media.log");
        let said = tools::build_media(profile, self.r.image.dir(), out, &log)
            .map_err(|e| fail("install media built", e))?;
        self.checks.pass(
            1,
            "install media built",
            said.lines()
                .rfind(|l| l.starts_with("built "))
                .unwrap_or("done")
                .trim()
                .to_string(),
        );
        Ok(())
    }

    /// The first blade boots the media with the SAN attached, installs
    /// unattended and powers itself off; the SAN must then verify.
    fn install_from_media(
        &mut self,
        san_path: &Path,
        size: cluster::Bytes,
        installer: &crate::qemu::Machine,
    ) -> Result<(), Fail> {
        san::create(san_path, size).map_err(|e| fail("SAN created", e))?;
        // The switch first: the installing blade is in the rack too.
        let switch = Switch::start(self.run, &self.r.switch, self.r.blades.len() + 4)
            .map_err(|e| fail("private segment up", e))?;
        self.switch = Some(switch);
        if self.r.iscsi.is_some() {
            // The target serves the SAN image before the media log in.
            self.storage_up()?;
        }
        let name = installer.name.clone();
        let check = format!("{name} installed from {}", installer.boot);
        let mut b = blade::power_on(self.run, installer, &self.logs)
            .map_err(|e| fail(format!("{name} powered on"), e))?;
        let done = b.wait(blade::INSTALL_DONE, self.r.timeouts.install);
        // It powers itself off; give it the time a guest takes to stop.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while done.is_ok() && b.is_running() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let stopped = !b.is_running();
        let b_lines: Vec<String> = b.console().lines().into_iter().map(|l| l.text).collect();
        let installed = b_lines
            .iter()
            .rev()
            .find(|l| l.contains("vlx-install: installed cluster"))
            .map(|l| l.trim().to_string());
        let boot = b.power_off();
        self.timeline.add_boot(&name, boot);
        done.map_err(|e| fail(check.clone(), e))?;
        if !stopped {
            return Err(fail(
                check,
                "it said it powers off, but QEMU still ran a minute later",
            ));
        }
        self.checks
            .pass(1, check, installed.unwrap_or_else(|| "powered off".into()));
        if self.r.iscsi.is_some() {
            let out = b_lines
                .iter()
                .rev()
                .find(|l| l.contains("vlx-install: logged out of iscsi://"));
            self.checks.expect(
                1,
                "the media logged out of the target",
                out.is_some(),
                out.map_or("no `logged out of` line on the console".into(), |l| {
                    l.trim().to_string()
                }),
            );
        }
        self.judge_installed_san(san_path)?;
        if self.r.iscsi.is_some() {
            self.no_secret_on_the_san(san_path);
        }
        Ok(())
    }

    /// Step 1's checks of a SAN an installer wrote: `vlx-install verify`,
    /// then tools nobody here wrote (not our verify alone); the origin's
    /// fingerprint is kept for step 8.
    fn judge_installed_san(&mut self, san_path: &Path) -> Result<(), Fail> {
        let log = self.logs.dir.join("vlx-install-verify.log");
        let out = tools::verify(san_path, &log).map_err(|e| fail("vlx-install verify", e))?;
        self.checks.pass(
            1,
            "vlx-install verify",
            out.lines().last().unwrap_or("verifies").trim().to_string(),
        );
        let said =
            crate::outside::check_san(san_path, self.cluster.disk.sector_size.bytes() as u32)
                .map_err(|e| fail("outside tools accept the SAN", e))?;
        self.checks.pass(1, "outside tools accept the SAN", said);
        let sha = san::origin_sha256(san_path, &self.cluster.disk)
            .map_err(|e| fail("origin fingerprinted", e))?;
        self.facts.origin_before = Some(sha);
        Ok(())
    }

    fn power_on(&mut self, name: &str, machine: &crate::qemu::Machine) -> Result<(), Fail> {
        if self.switch.is_none() {
            let switch = Switch::start(self.run, &self.r.switch, self.r.blades.len() + 4)
                .map_err(|e| fail("private segment up", e))?;
            self.switch = Some(switch);
        }
        self.storage_up()?;
        let b = blade::power_on(self.run, machine, &self.logs)
            .map_err(|e| fail(format!("{name} powered on"), e))?;
        self.live.push(b);
        Ok(())
    }

    fn live(&self, name: &str) -> Option<&Powered> {
        self.live.iter().find(|b| b.name() == name)
    }

    fn live_mut(&mut self, name: &str) -> Option<&mut Powered> {
        self.live.iter_mut().find(|b| b.name() == name)
    }

    /// Takes a blade's power away and records its boot in the timeline.
    fn power_off(&mut self, name: &str) {
        if let Some(i) = self.live.iter().position(|b| b.name() == name) {
            let b = self.live.remove(i);
            let boot = b.power_off();
            self.timeline.add_boot(name, boot);
        }
    }

    fn await_ready(&mut self, step: u8, name: &str) -> Result<(), Fail> {
        let limit = self.r.timeouts.ready;
        // The first contact with a blade's shell: over SSH, its login and
        // key exchange under TCG on a loaded host took over 20 s of a
        // Debian blade still starting its NFS server (a wait, not a
        // speed check).
        let shell_limit = self.r.timeouts.command.saturating_mul(3);
        let check = format!("{name} ready");
        let b = self
            .live_mut(name)
            .ok_or_else(|| fail(check.clone(), "it has no power"))?;
        b.wait_ready(name, limit)
            .map_err(|e| fail(check.clone(), e))?;
        if let Some(target) = self.ssh_target(name)? {
            let b = self
                .live_mut(name)
                .ok_or_else(|| fail(check.clone(), "it has no power"))?;
            b.shell_mut().use_ssh(target);
        }
        let b = self
            .live_mut(name)
            .ok_or_else(|| fail(check.clone(), "it has no power"))?;
        let boot = b.boot();
        b.shell()
            .ready(shell_limit)
            .map_err(|e| fail(format!("{name} check shell"), e))?;
        let took = boot.to_ready().unwrap_or_default();
        self.say(&format!("{name} ready {took:.1} s after power on"));
        self.checks.pass(
            step,
            check,
            format!(
                "services ready {took:.1} s after power on (from {})",
                boot.from
            ),
        );
        Ok(())
    }

    /// Fills `name`'s snapshot store to 83 % with a file on its root (the
    /// kernel's status gives the store's size and use) and waits for the
    /// node's store watcher to warn on the console and in its fill file,
    /// with the store still valid.
    fn fill_store(&mut self, step: u8, name: &str) -> Result<(), Fail> {
        let limit = self.r.timeouts.command;
        let check = format!("{name} warns at 80 % of its snapshot store");
        let b = self
            .live_mut(name)
            .ok_or_else(|| fail(check.clone(), "it has no power"))?;
        // dmsetup status: `0 <len> snapshot <allocated>/<total> <meta>`, in
        // 512-byte sectors; dd writes the MiB that are missing to 83 %.
        let fill = "set -- $(dmsetup status vlx-root) && a=${4%/*} && t=${4#*/} && \
                    n=$(( (t * 83 / 100 - a) / 2048 + 1 )) && \
                    dd if=/dev/zero of=/vlx-rig-fill bs=1M count=$n conv=fsync 2>&1 | tail -n 1 && \
                    dmsetup status vlx-root";
        // dd under TCG writes a few MiB/s on a busy host.
        let o = b
            .shell()
            .run(fill, FILL_LIMIT)
            .map_err(|e| fail(check.clone(), format!("filling the store: {e}")))?;
        if !o.success() {
            return Err(fail(
                check,
                format!("filling the store: {}", o.lines.join(" | ")),
            ));
        }
        let filled = o.lines.join(" | ");
        self.say(&format!("{name}: store filled: {filled}"));
        let b = self
            .live_mut(name)
            .ok_or_else(|| fail(check.clone(), "it has no power"))?;
        // store-watch reads the status within 10 s of a write to the root.
        let line = b
            .wait(
                &format!("vlx: warning: the snapshot store of {name} is"),
                WATCH_LIMIT,
            )
            .map_err(|e| fail(check.clone(), e))?;
        let o = b
            .shell()
            .run(
                "cat /var/lib/vlx/store-fill; dmsetup status vlx-root",
                limit,
            )
            .map_err(|e| fail(check.clone(), e))?;
        let said = o.lines.join(" | ");
        let in_file = o.lines.iter().any(|l| {
            l.starts_with(&format!("warning: the snapshot store of {name} is 8"))
                && l.contains("% full")
        });
        let valid = o
            .lines
            .iter()
            .any(|l| l.contains(" snapshot ") && !l.contains("Invalid") && l.contains('/'));
        if !(in_file && valid) {
            return Err(fail(
                check,
                format!("console: `{}`; fill file and status: {said}", line.text),
            ));
        }
        self.checks.pass(
            step,
            check,
            format!("console: `{}`; the store still valid ({filled})", line.text),
        );
        Ok(())
    }

    /// The SSH channel to `name` when the image is checked over SSH; the
    /// rig's end of the segment comes up with the first.
    fn ssh_target(&mut self, name: &str) -> Result<Option<ssh::SshTarget>, Fail> {
        let Some(key) = &self.rig_key else {
            return Ok(None);
        };
        let ip = self
            .blade(name)?
            .ip
            .ok_or_else(|| fail(format!("{name} over SSH"), "the blade has no address"))?;
        if self.host_side.is_none() {
            let net = self.cluster.network.cidr;
            let taken: Vec<Ipv4Addr> = self
                .cluster
                .nodes
                .iter()
                .map(|n| n.ip)
                .chain(self.cluster.network.vips.iter().map(|v| v.address))
                .collect();
            let addr = free_address(net, &taken).ok_or_else(|| {
                fail(
                    "host side of the segment",
                    "no free address in the cluster network",
                )
            })?;
            let log = self.logs.dir.join("host-side.log");
            let hs = ssh::HostSide::start(self.run, &self.r.switch, addr, net.prefix(), &log)
                .map_err(|e| fail("host side of the segment", e))?;
            self.say(&format!(
                "the rig's end of the segment is {addr} (SSH to the blades)"
            ));
            self.host_side = Some(hs);
        }
        Ok(self.host_side.as_ref().map(|h| h.target(name, ip, key)))
    }

    fn await_refusal(&mut self, name: &str) -> Result<(), Fail> {
        let b = self.blade(name)?;
        let mac = b.mac.to_string();
        let check = format!("{name} ({mac}) refused a root");
        let limit = self.r.timeouts.ready;
        let p = self
            .live(name)
            .ok_or_else(|| fail(check.clone(), "it has no power"))?;
        // The refusal is the agent's error line, so only a panic is fatal.
        let (line, _) = p
            .console()
            .wait_marker(
                &mac,
                &["Kernel panic - not syncing", blade::AGENT_READY],
                0,
                limit,
            )
            .map_err(|e| fail(check.clone(), e))?;
        if !line.text.contains("vlx-node:") {
            return Err(fail(
                check,
                format!(
                    "its MAC appeared, but not in a node agent line: {}",
                    line.text
                ),
            ));
        }
        self.checks.pass(4, check, line.text.trim().to_string());
        Ok(())
    }

    /// The running node blades, as the checks see them.
    fn nodes(&self) -> Vec<Node<'_>> {
        self.live
            .iter()
            .filter_map(|p| {
                let b = self.r.blade(p.name())?;
                Some(Node {
                    name: p.name(),
                    fqdn: b.fqdn.as_deref()?,
                    ip: b.ip?,
                    blade: p,
                })
            })
            .collect()
    }

    fn vip(&self) -> Option<Ipv4Addr> {
        self.cluster.network.vips.first().map(|v| v.address)
    }

    fn cluster_checks(&mut self) {
        let limit = self.r.timeouts.command;
        let prefix = self.cluster.network.cidr.prefix();
        let mut checks = std::mem::take(&mut self.checks);
        let nodes = self.nodes();
        checks::identities(&mut checks, 5, &nodes, prefix, limit);
        let mut first_dhcp = None;
        if nodes.len() >= 2 {
            if self.cluster.services.dhcp {
                first_dhcp = checks::dhcp(&mut checks, &nodes, limit);
            }
            if self.cluster.services.dns {
                checks::dns(&mut checks, &nodes, limit);
            }
            if self.cluster.services.ntp {
                checks::chrony(&mut checks, &nodes, self.r.timeouts.chrony, limit);
            }
        } else {
            self.say("one node only: the checks between blades (DHCP, DNS, chrony) do not apply");
        }
        let holder = match (self.vip(), self.cluster.services.vip) {
            (Some(vip), true) => {
                checks::vip(&mut checks, &nodes, vip, self.r.timeouts.vip_watch, limit)
            }
            _ => None,
        };
        // etcd answers only where most of its voters run.
        let voters = &self.cluster.etcd.voters;
        let running: Vec<String> = voters
            .iter()
            .filter(|v| nodes.iter().any(|n| n.name == v.name.as_str()))
            .map(|v| v.client_url.clone())
            .collect();
        if !self.facts.image_has_etcd {
            self.say(&format!(
                "the host image has no etcd ({ETCD_PACKAGE} is not in its manifest): etcd not checked"
            ));
        } else if running.len() * 2 > voters.len() {
            checks::etcd(&mut checks, &nodes, &running, limit);
        } else {
            self.say(&format!(
                "{} of {} etcd voters run: etcd has no quorum, not checked",
                running.len(),
                voters.len()
            ));
        }
        checks::private_roots(&mut checks, &nodes, limit);
        if self.rig_key.is_some() {
            // Checked over SSH: an image with systemd (the Debian host).
            checks::each_node(&mut checks, &nodes, |c, n| checks::systemd(c, 5, n, limit));
        }
        let wrote: Vec<String> = nodes.iter().map(|n| n.name.to_string()).collect();
        let first_dhcp_server = first_dhcp.and_then(|ip| {
            self.r
                .nodes()
                .find(|b| b.ip == Some(ip))
                .map(|b| b.name.clone())
        });
        drop(nodes);
        // A virtual cluster on the blades, where the image carries vlx-vcd.
        self.virtual_cluster(&mut checks);
        self.checks = checks;
        self.facts.wrote = wrote;
        self.facts.vip_holder = holder;
        self.facts.first_dhcp_server = first_dhcp_server;
    }

    fn lose_blades(&mut self, late: &str) -> Result<(), Fail> {
        let limit = self.r.timeouts.command;
        let vip = self
            .vip()
            .ok_or_else(|| fail("vip moves", "the profile has no VIP"))?;
        let holder = self
            .facts
            .vip_holder
            .clone()
            .ok_or_else(|| fail("vip moves", "step 5 found no VIP holder"))?;
        let dhcp = self
            .facts
            .first_dhcp_server
            .clone()
            .ok_or_else(|| fail("blades lost", "step 5 found no first DHCP server"))?;
        let mut victims = vec![holder.clone()];
        if dhcp != holder {
            victims.push(dhcp.clone());
        }
        // The VIP's move is timed on the blade that takes it: from the
        // last instant it saw the old holder answer (a watch each
        // survivor runs) to its keepalived entering MASTER (its
        // `vrrp-master` note), both on its own clock, so the host's load
        // and its polling do not count.
        let holder_ip = self.blade(&holder)?.ip;
        let mut watching: Vec<(String, Result<(), String>)> = Vec::new();
        if let Some(ip) = holder_ip {
            let nodes = self.nodes();
            for n in nodes
                .iter()
                .filter(|n| !victims.iter().any(|v| v == n.name))
            {
                watching.push((n.name.to_string(), checks::watch_alive(n, ip, limit)));
            }
        }
        self.say(&format!(
            "killing {} (VIP holder {holder}, first DHCP server {dhcp})",
            victims.join(" and ")
        ));
        for v in &victims {
            self.mark(v, MarkKind::Killed);
            self.power_off(v);
        }
        self.checks.pass(
            6,
            "blades lost",
            format!(
                "killed {} (VIP holder {holder}, first DHCP server {dhcp})",
                victims.join(", ")
            ),
        );
        let check = format!("vip moves within {} s", VIP_MOVE_LIMIT.as_secs());
        let (new_holder, seen) = {
            let nodes = self.nodes();
            checks::await_vip(&nodes, vip, self.r.timeouts.vip_watch, limit)
                .map_err(|e| fail(check.clone(), e))?
        };
        self.mark(&new_holder, MarkKind::VipTaken);
        let took = match watching.iter().find(|(n, _)| *n == new_holder) {
            Some((_, Ok(()))) => {
                let nodes = self.nodes();
                match nodes.iter().find(|n| n.name == new_holder) {
                    Some(n) => checks::last_alive(n, limit)
                        .and_then(|alive| checks::vip_move_time(n, VIP_INSTANCE, alive, limit)),
                    None => Err(format!("{new_holder} is not among the running nodes")),
                }
            }
            Some((_, Err(e))) => Err(format!("watching {holder} before the kill: {e}")),
            None => Err(format!(
                "{new_holder} did not watch {holder} (no address for it in the plan, or not a survivor)"
            )),
        };
        match took {
            Ok(took) => self.checks.expect(
                6,
                check,
                took <= VIP_MOVE_LIMIT,
                format!(
                    "{new_holder} took {vip} ({VIP_INSTANCE}) {:.2} s after it last saw {holder} \
                     alive, on {new_holder}'s own clock; the rig saw it there {:.1} s after the kill",
                    took.as_secs_f64(),
                    seen.as_secs_f64()
                ),
            ),
            Err(e) => {
                self.checks.fail(6, check, e);
                false
            }
        };

        // The late blade's first machine: from the network on a shared
        // disk, from the target by its boot ROM over iSCSI.
        let machine = self.blade(late)?.machine.clone();
        self.power_on(late, &machine)?;
        self.await_ready(6, late)?;
        if self.r.iscsi.is_some() {
            self.late_from_target(late);
        } else {
            self.late_from_survivors(late);
        }
        let mut checks = std::mem::take(&mut self.checks);
        let nodes = self.nodes();
        let prefix = self.cluster.network.cidr.prefix();
        let mut wrote = None;
        if let Some(n) = nodes.iter().find(|n| n.name == late) {
            checks::identity(&mut checks, 6, n, prefix, limit);
            checks::ping(&mut checks, 6, n, vip, limit);
            if self.rig_key.is_some() {
                checks::systemd(&mut checks, 6, n, limit);
            }
            match checks::write_marker(n, limit) {
                Ok(()) => wrote = Some(late.to_string()),
                Err(e) => checks.fail(6, format!("{late} wrote its file"), e),
            }
        }
        drop(nodes);
        self.checks = checks;
        self.facts.wrote.extend(wrote);
        Ok(())
    }

    /// Checks that `late` network-booted from the blades still up.
    fn late_from_survivors(&mut self, late: &str) {
        let survivors: Vec<(String, Ipv4Addr)> = self
            .nodes()
            .iter()
            .filter(|n| n.name != late)
            .map(|n| (n.name.to_string(), n.ip))
            .collect();
        let console: Vec<String> = self
            .live(late)
            .map(|b| b.console().lines().into_iter().map(|l| l.text).collect())
            .unwrap_or_default();
        let servers = checks::boot_servers(&console);
        let from_survivors = !servers.is_empty()
            && servers
                .iter()
                .all(|s| survivors.iter().any(|(_, ip)| ip == s));
        self.checks.expect(
            6,
            format!("{late} network-booted from survivors"),
            from_survivors,
            format!(
                "fetched from {}; survivors: {}",
                join_ips(servers.iter()),
                survivors
                    .iter()
                    .map(|(n, ip)| format!("{n} {ip}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }

    fn factory_reset(&mut self) -> Result<(), Fail> {
        let limit = self.r.timeouts.command;
        // The blade to reset: a cold-start blade still up; the other: the
        // blade that came late (or any other still up).
        let live_nodes: Vec<String> = self.nodes().iter().map(|n| n.name.to_string()).collect();
        let reset = live_nodes
            .iter()
            .find(|n| self.r.blade(n).is_some_and(|b| b.part == Part::ColdStart))
            .cloned()
            .ok_or_else(|| fail("factory reset", "no cold-start blade is still up"))?;
        let other = live_nodes
            .iter()
            .rev()
            .find(|n| **n != reset && self.facts.wrote.contains(n))
            .cloned()
            .ok_or_else(|| fail("factory reset", "no second blade with a file is up"))?;
        for name in [&reset, &other] {
            if let Some(b) = self.live(name) {
                // The root's file system alone (syncfs): a plain `sync`
                // also waits on every other mount, and a blade that has
                // just taken the VIP may be mounting the shared volume
                // (and a mount in progress holds every sync).
                b.shell()
                    .run("sync -f /", limit)
                    .map_err(|e| fail(format!("{name} synced"), e))?;
            }
            self.power_off(name);
        }
        let log = self.logs.dir.join("vlx-install-reset.log");
        let said = if self.r.iscsi.is_some() {
            self.reset_through_iscsi(&reset)?
        } else {
            tools::reset_node(&reset, &self.r.san, &log)
                .map_err(|e| fail(format!("vlx-install reset-node {reset}"), e))?;
            "done".into()
        };
        self.mark(&reset, MarkKind::Reset);
        self.checks
            .pass(7, format!("vlx-install reset-node {reset}"), said);
        for name in [&reset, &other] {
            // Over iSCSI every blade's machine boots from the target.
            let m = match self.r.iscsi {
                Some(_) => self.blade(name)?.machine.clone(),
                None => self.blade(name)?.machine(BootFrom::Disk),
            };
            self.power_on(name, &m)?;
        }
        for name in [&reset, &other] {
            self.await_ready(7, name)?;
        }
        let mut checks = std::mem::take(&mut self.checks);
        let nodes = self.nodes();
        for n in &nodes {
            let f = checks::marker_file(n.name);
            if *n.name == *reset {
                let name = format!("reset wiped {reset}'s file");
                match checks::sh(n, &format!("test -e {f}"), limit) {
                    Ok(o) => checks.expect(
                        7,
                        name,
                        !o.success(),
                        if o.success() {
                            format!("{f} is still there")
                        } else {
                            format!("{f} is gone")
                        },
                    ),
                    Err(e) => {
                        checks.fail(7, name, e.to_string());
                        false
                    }
                };
            } else if *n.name == *other {
                let name = format!("{other}'s file survived");
                match checks::sh(n, &format!("cat {f}"), limit) {
                    Ok(o) => checks.expect(
                        7,
                        name,
                        o.success() && o.text() == *n.name,
                        format!("{f}: {}", o.text()),
                    ),
                    Err(e) => {
                        checks.fail(7, name, e.to_string());
                        false
                    }
                };
            }
        }
        if self.rig_key.is_some() {
            for n in nodes
                .iter()
                .filter(|n| *n.name == *reset || *n.name == *other)
            {
                checks::systemd(&mut checks, 7, n, limit);
            }
        }
        drop(nodes);
        self.checks = checks;
        Ok(())
    }

    fn shutdown(&mut self) {
        // A stranger must never have got a root.
        for p in &self.live {
            if self
                .r
                .blade(p.name())
                .is_some_and(|b| b.part == Part::Stranger)
            {
                let ready = p
                    .console()
                    .lines()
                    .iter()
                    .any(|l| l.text.contains(blade::AGENT_READY));
                self.checks.expect(
                    8,
                    format!("{} never got a root", p.name()),
                    !ready,
                    if ready {
                        "it printed `vlx-node: ready`"
                    } else {
                        "no `vlx-node: ready` on its console"
                    },
                );
            }
        }
        let names: Vec<String> = self.live.iter().map(|b| b.name().to_string()).collect();
        for n in names {
            self.power_off(&n);
        }
        self.switch = None;
        self.storage = None;
        if let Some(before) = self.facts.origin_before.clone() {
            match san::origin_sha256(&self.r.san, &self.cluster.disk) {
                Ok(after) => {
                    self.checks.expect(
                        8,
                        "origin unchanged",
                        after == before,
                        format!("sha256 {after} (after install: {before})"),
                    );
                }
                Err(e) => self.checks.fail(8, "origin unchanged", e.to_string()),
            }
        }
    }
}

/// The kernel argument that skips the IO-APIC timer check (see
/// `write_profile_copy`).
const NO_TIMER_CHECK: &str = "no_timer_check";

/// keepalived's instance of the first VIP, as the node overlay names it
/// (`vip1`, `vip2`, ... in the order of the profile's VIPs; the installer's
/// render context).
const VIP_INSTANCE: &str = "vip1";

fn join_ips<'a>(ips: impl Iterator<Item = &'a Ipv4Addr>) -> String {
    let v: Vec<String> = ips.map(Ipv4Addr::to_string).collect();
    if v.is_empty() {
        "nowhere (no http:// or tftp:// on its console)".into()
    } else {
        v.join(", ")
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_relative_to_the_copy() {
        assert_eq!(
            relative_to(
                Path::new("/tmp/vlx-rig.x/cluster"),
                Path::new("/work/vlx/profiles/hosts/tiny-iscsi.toml")
            ),
            Path::new("../../../work/vlx/profiles/hosts/tiny-iscsi.toml")
        );
        assert_eq!(
            relative_to(Path::new("/a/b"), Path::new("/a/b/c/d")),
            Path::new("c/d")
        );
    }
}
