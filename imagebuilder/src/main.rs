//! `vlx-image`: parses the command line and dispatches to the library.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use contracts::image as manifest;
use imagebuilder::cli::{Cli, Command};
use imagebuilder::image::{guest, host, kernel};
use imagebuilder::profile;
use imagebuilder::progress::{Event, Progress};

/// Progress on a terminal: one bar over the steps, info lines above it.
struct Bar {
    bar: indicatif::ProgressBar,
}

impl Progress for Bar {
    fn event(&self, e: Event<'_>) {
        match e {
            Event::Step { index, total, what } => {
                self.bar.set_length(total as u64);
                self.bar.set_position(index.saturating_sub(1) as u64);
                self.bar.set_message(what.to_owned());
            }
            Event::Info(m) => self.bar.println(m),
            Event::Bytes { done, total } => {
                let msg = match total {
                    Some(t) => format!("{} / {} MiB", done >> 20, t >> 20),
                    None => format!("{} MiB", done >> 20),
                };
                self.bar.set_message(msg);
            }
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// Progress in a log: plain lines, byte counts at most every 5 s.
struct Lines {
    start: Instant,
    last_bytes: Mutex<Option<Instant>>,
    json: bool,
}

impl Progress for Lines {
    fn event(&self, e: Event<'_>) {
        let secs = self.start.elapsed().as_secs_f64();
        if let Event::Bytes { .. } = e {
            let Ok(mut last) = self.last_bytes.lock() else {
                return;
            };
            if last.is_some_and(|l| l.elapsed() < Duration::from_secs(5)) {
                return;
            }
            *last = Some(Instant::now());
        }
        if self.json {
            let v = match e {
                Event::Step { index, total, what } => serde_json::json!(
                    {"event": "step", "index": index, "total": total, "what": what, "seconds": secs}),
                Event::Info(m) => {
                    serde_json::json!({"event": "info", "message": m, "seconds": secs})
                }
                Event::Bytes { done, total } => serde_json::json!(
                    {"event": "bytes", "done": done, "total": total, "seconds": secs}),
            };
            eprintln!("{v}");
        } else {
            match e {
                Event::Step { index, total, what } => {
                    eprintln!("[{secs:7.1}s] ({index}/{total}) {what}")
                }
                Event::Info(m) => eprintln!("[{secs:7.1}s]   {m}"),
                Event::Bytes { done, total } => match total {
                    Some(t) => eprintln!("[{secs:7.1}s]   {} / {} MiB", done >> 20, t >> 20),
                    None => eprintln!("[{secs:7.1}s]   {} MiB", done >> 20),
                },
            }
        }
    }
}

fn reporter(json: bool) -> Box<dyn Progress> {
    if !json && std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(1);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Box::new(Bar { bar })
    } else {
        Box::new(Lines {
            start: Instant::now(),
            last_bytes: Mutex::new(None),
            json,
        })
    }
}

/// SOURCE_DATE_EPOCH: the flag, the environment, else the profile's mtime
/// (which makes two builds of an unchanged checkout agree).
fn epoch(flag: Option<u64>, profile: &std::path::Path) -> anyhow::Result<u64> {
    if let Some(e) = flag {
        return Ok(e);
    }
    if let Ok(v) = std::env::var("SOURCE_DATE_EPOCH") {
        return v
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={v} is not a count of seconds"));
    }
    let m = std::fs::metadata(profile)
        .and_then(|m| m.modified())
        .with_context(|| format!("reading the mtime of {}", profile.display()))?;
    Ok(m.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0))
}

fn main() -> std::process::ExitCode {
    let cli: Cli = voice::parse();
    let json = cli.json;
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // A profile the builder cannot take is bad input, as for a bad
            // cluster profile; other failures exit 1.
            let bad_input = e.chain().any(|c| {
                c.downcast_ref::<imagebuilder::Error>()
                    .is_some_and(imagebuilder::Error::is_bad_input)
                    || c.is::<cluster::Diagnostics>()
            });
            let code = if e.is::<TestImageRefused>() {
                voice::exit::REFUSED
            } else if bad_input {
                voice::exit::BAD_INPUT
            } else {
                voice::exit::FAILED
            };
            let diagnostics = e.chain().find_map(|c| match c.downcast_ref() {
                Some(imagebuilder::Error::Diagnostics(d)) => Some(d),
                _ => None,
            });
            match diagnostics {
                Some(d) => voice::report(&voice::Failure::diagnostics("vlx-image", d, code), json),
                None => voice::fail("vlx-image", json, &e, code),
            }
        }
    }
}

/// Media of a test image, refused without `--test-image` (exit 3).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TestImageRefused(#[source] voice::Hinted);

fn refuse_test_image(what: &str) -> anyhow::Error {
    TestImageRefused(voice::Hinted::new(
        format!(
            "{what} is a test image, for test rigs only (a root shell without login on \
             every blade); nothing was written"
        ),
        "pass --test-image (or set test_image = true in the media profile's [media]) to build media of it anyway",
    ))
    .into()
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let started = Instant::now();
    match cli.command {
        Command::Build {
            profile,
            out,
            agent,
            source_date_epoch,
        } => {
            let p = profile::HostProfile::load(&profile)?;
            let agent = match agent.or_else(host::default_agent) {
                Some(a) if a.is_file() => a,
                Some(a) => bail!(
                    "the node agent {} is missing: build it (cargo build -p agent) or pass --agent PATH",
                    a.display()
                ),
                None => bail!("cannot tell where vlx-node is: pass --agent PATH"),
            };
            let b = host::HostBuild {
                agent,
                out: out.clone(),
                source_date_epoch: epoch(source_date_epoch, &profile)?,
            };
            let progress = reporter(cli.json);
            let m = host::build(&p, &b, progress.as_ref()).with_context(|| {
                format!("building {} into {}", profile.display(), out.display())
            })?;
            // The bar goes before the result is printed, so that it does
            // not stay on the screen at its last step.
            drop(progress);
            if cli.json {
                println!("{}", m.to_json().trim_end());
            } else {
                eprintln!(
                    "built {} {} (kernel {}) in {} in {:.1} s",
                    m.name,
                    m.version,
                    m.kernel_release,
                    out.display(),
                    started.elapsed().as_secs_f64()
                );
            }
        }
        Command::Guest {
            profile,
            out,
            source_date_epoch,
        } => {
            let p = profile::GuestProfile::load(&profile)?;
            let g = guest::GuestBuild {
                out: out.clone(),
                source_date_epoch: epoch(source_date_epoch, &profile)?,
            };
            let progress = reporter(cli.json);
            let meta = guest::build(&p, &g, progress.as_ref()).with_context(|| {
                format!("building {} into {}", profile.display(), out.display())
            })?;
            drop(progress);
            if cli.json {
                println!("{}", serde_json::to_string(&meta)?);
            } else {
                eprintln!(
                    "built {} ({:.1} MiB, sha256 {}) in {:.1} s",
                    out.join(&meta.tarball).display(),
                    meta.tarball_size as f64 / f64::from(1u32 << 20),
                    meta.tarball_sha256,
                    started.elapsed().as_secs_f64()
                );
            }
        }
        Command::FetchKernel { package } => {
            let k = kernel::fetch(&package).with_context(|| format!("fetching {package}"))?;
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({"release": k.release, "vmlinuz": k.vmlinuz, "modules": k.modules})
                );
            } else {
                println!("{} {}", k.release, k.vmlinuz.display());
            }
        }
        Command::Media {
            profile,
            image,
            agent,
            guests,
            out,
            installer,
            source_date_epoch,
            test_image,
        } => {
            let p = imagebuilder::media::profile::MediaProfile::load(&profile)?;
            // The flag and the profile's key say the same; either is enough.
            let test_image = test_image || p.test_image;
            let image = match image {
                Some(i) => i,
                None => {
                    let host_path = imagebuilder::media::host_profile_of(&p)?;
                    let host = profile::HostProfile::load(&host_path)?;
                    if host.test_image && !test_image {
                        return Err(refuse_test_image(&host_path.display().to_string()));
                    }
                    let agent = match agent.or_else(host::default_agent) {
                        Some(a) if a.is_file() => a,
                        _ => bail!(
                            "no --image, and no node agent to build one with: build vlx-node (cargo build -p agent), or pass --image DIR or --agent PATH"
                        ),
                    };
                    let dir = out.join("image");
                    let b = host::HostBuild {
                        agent,
                        out: dir.clone(),
                        source_date_epoch: epoch(source_date_epoch, &host_path)?,
                    };
                    let progress = reporter(cli.json);
                    host::build(&host, &b, progress.as_ref()).with_context(|| {
                        format!("building {} into {}", host_path.display(), dir.display())
                    })?;
                    drop(progress);
                    eprintln!(
                        "built the host image of {} into {}",
                        host_path.display(),
                        dir.display()
                    );
                    dir
                }
            };
            let m = manifest::Manifest::read(&image)?;
            if m.test_image && !test_image {
                return Err(refuse_test_image(&format!(
                    "{} ({} {})",
                    image.display(),
                    m.name,
                    m.version
                )));
            }
            let installer = match installer.or_else(imagebuilder::media::default_installer) {
                Some(i) if i.is_file() => i,
                Some(i) => bail!(
                    "the installer {} is missing: build it (cargo build -p installer) or pass --installer PATH",
                    i.display()
                ),
                None => bail!("cannot tell where vlx-install is: pass --installer PATH"),
            };
            // Without a flag or SOURCE_DATE_EPOCH, media take the image's
            // epoch: media of one image build agree.
            let epoch = match source_date_epoch {
                Some(e) => e,
                None if std::env::var_os("SOURCE_DATE_EPOCH").is_some() => epoch(None, &profile)?,
                None => manifest::Manifest::read(&image)?.source_date_epoch,
            };
            let b = imagebuilder::media::MediaBuild {
                image,
                guests,
                installer,
                out: out.clone(),
                source_date_epoch: epoch,
            };
            let progress = reporter(cli.json);
            let built =
                imagebuilder::media::build(&p, &b, progress.as_ref()).with_context(|| {
                    format!("building {} into {}", profile.display(), out.display())
                })?;
            drop(progress);
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "img": built.img,
                        "iso": built.iso,
                        "manifest_sha256": built.manifest_sha256,
                        "payload_bytes": built.payload_bytes,
                    })
                );
            } else {
                eprintln!(
                    "built {} and {} ({} MiB of payload, manifest sha256 {}) in {:.1} s",
                    built.img.display(),
                    built.iso.display(),
                    built.payload_bytes >> 20,
                    built.manifest_sha256,
                    started.elapsed().as_secs_f64()
                );
            }
        }
        Command::Completions(c) => c.print(imagebuilder::cli::command())?,
        Command::Verify { dir } => {
            let m = manifest::verify_dir(&dir)?;
            if cli.json {
                println!("{}", m.to_json().trim_end());
            } else {
                println!(
                    "{}: {} {} matches its manifest ({} files)",
                    dir.display(),
                    m.name,
                    m.version,
                    m.artifacts.len()
                );
            }
        }
    }
    Ok(())
}
