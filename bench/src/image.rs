//! Image building, each against a reference tool run here in the same
//! process on the same input:
//!
//! - a guest tarball of a ~200 MB root tree (`vlx-image guest`) against
//!   `tar -cf - DIR | gzip -6`: at least 2x faster, peak memory under
//!   100 MiB, output listed by GNU tar;
//! - sha256 of an image directory's manifest (`contracts::image::verify`)
//!   against `sha256sum` on the same files: no slower;
//! - the tiny host image from scratch (`vlx-image build`): under 60 s.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::util::{mib, ms, timed};

/// Size of the tree the tarball benchmark archives.
const TREE_BYTES: u64 = 200 << 20;

/// Folders of the build machine the tree is copied from, a quarter of the
/// bytes each: text, programs, libraries and the rest, compressing as a
/// root file system does.
const SOURCES: &[&str] = &[
    "/usr/share",
    "/usr/bin",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib",
];

/// Larger files are skipped, so that the tree has a root's many files
/// rather than a few huge libraries.
const MAX_FILE: u64 = 8 << 20;

fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.parent()
        .map(Path::to_owned)
        .context("the bench executable has no folder")
}

fn vlx_image() -> anyhow::Result<PathBuf> {
    let p = bin_dir()?.join("vlx-image");
    if !p.is_file() {
        bail!(
            "{} is missing: cargo build --release --workspace --bins",
            p.display()
        );
    }
    Ok(p)
}

/// Copies regular files and links from [`SOURCES`] until `limit` bytes.
fn make_tree(dest: &Path, limit: u64) -> anyhow::Result<(u64, u64)> {
    let mut bytes = 0u64;
    let mut files = 0u64;
    for (i, src) in SOURCES.iter().enumerate() {
        let share = limit * (i as u64 + 1) / SOURCES.len() as u64;
        copy_some(Path::new(src), dest, share, &mut bytes, &mut files)?;
    }
    Ok((bytes, files))
}

fn copy_some(
    dir: &Path,
    dest: &Path,
    limit: u64,
    bytes: &mut u64,
    files: &mut u64,
) -> anyhow::Result<()> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Ok(());
    };
    let mut entries: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if *bytes >= limit {
            return Ok(());
        }
        let Ok(md) = fs::symlink_metadata(&p) else {
            continue;
        };
        let rel = p.strip_prefix("/").unwrap_or(&p);
        let to = dest.join(rel);
        if to.exists() || to.symlink_metadata().is_ok() {
            continue;
        }
        if md.is_dir() {
            fs::create_dir_all(&to)?;
            copy_some(&p, dest, limit, bytes, files)?;
        } else if md.file_type().is_symlink() {
            fs::create_dir_all(to.parent().unwrap_or(dest))?;
            std::os::unix::fs::symlink(fs::read_link(&p)?, &to)?;
        } else if md.is_file() && md.len() <= MAX_FILE {
            fs::create_dir_all(to.parent().unwrap_or(dest))?;
            if fs::copy(&p, &to).is_ok() {
                *bytes += md.len();
                *files += 1;
            }
        }
    }
    Ok(())
}

/// Peak resident memory of the finished children so far (the largest).
fn children_peak_rss() -> u64 {
    // SAFETY: getrusage fills the zeroed struct we own; no other effects.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_CHILDREN is a valid `who`.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    if rc != 0 {
        return 0;
    }
    u64::try_from(ru.ru_maxrss).unwrap_or(0) * 1024
}

fn ratio(reference: Duration, ours: Duration) -> f64 {
    reference.as_secs_f64() / ours.as_secs_f64().max(1e-9)
}

pub fn run() -> anyhow::Result<()> {
    let image = vlx_image()?;
    let work = tempfile::Builder::new()
        .prefix("vlx-bench-image-")
        .tempdir()?;
    let w = work.path();

    // --- tarball.
    let tree = w.join("tree");
    let (bytes, files) = make_tree(&tree, TREE_BYTES)?;
    println!(
        "guest tarball of a {:.0} MiB tree ({files} files from the build machine's /usr)",
        mib(bytes)
    );
    let profile = w.join("guest.toml");
    fs::write(
        &profile,
        format!(
            "[guest]\nname = \"bench\"\ndistribution = \"bench\"\nkernel = \"{}\"\n\
             [rootfs]\nsource = \"directory\"\npath = \"tree\"\n",
            first_file(&tree)?.display()
        ),
    )?;
    let ours_out = w.join("ours");
    let reference_out = w.join("reference.tar.gz");
    // Interleaved, best of three each: other load on the machine then
    // hits both alike.
    let mut ours = Duration::MAX;
    let mut reference = Duration::MAX;
    for _ in 0..3 {
        let _ = fs::remove_dir_all(&ours_out);
        ours = ours.min(timed(
            Command::new(&image)
                .args(["guest", "--profile"])
                .arg(&profile)
                .arg("--out")
                .arg(&ours_out)
                .env("SOURCE_DATE_EPOCH", "1700000000"),
        )?);
        reference = reference.min(timed(Command::new("sh").arg("-c").arg(format!(
            "tar -cf - -C '{}' . | gzip -6 > '{}'",
            tree.display(),
            reference_out.display()
        )))?);
    }
    // The largest finished child so far: vlx-image (tar and gzip are small).
    let peak = children_peak_rss();
    let ours_file = ours_out.join("bench.tar.gz");
    let listed = Command::new("tar").arg("-tzf").arg(&ours_file).output()?;
    if !listed.status.success() {
        bail!("GNU tar cannot list {}", ours_file.display());
    }
    let entries = listed.stdout.iter().filter(|b| **b == b'\n').count();
    let r = ratio(reference, ours);
    println!(
        "{:>28} {:>10.0} ms {:>8.1} MiB",
        "tar | gzip -6",
        ms(reference),
        mib(fs::metadata(&reference_out)?.len())
    );
    println!(
        "{:>28} {:>10.0} ms {:>8.1} MiB   {r:.2}x ({} the 2x goal); GNU tar lists {entries} entries",
        "vlx-image guest (level 6)",
        ms(ours),
        mib(fs::metadata(&ours_file)?.len()),
        if r >= 2.0 { "meets" } else { "MISSES" }
    );
    println!(
        "{:>28} {:.1} MiB ({} the 100 MiB goal)",
        "vlx-image guest peak RSS",
        mib(peak),
        if peak < 100 << 20 { "within" } else { "OVER" }
    );
    fs::remove_dir_all(&tree)?;

    // --- tiny host image from scratch.
    let root = bin_dir()?
        .parent()
        .and_then(Path::parent)
        .map(Path::to_owned)
        .context("no workspace above the target folder")?;
    let agent = [bin_dir()?.join("vlx-node")]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/bin/true"));
    let host_out = w.join("tiny");
    let host = timed(
        Command::new(&image)
            .args(["build", "--profile"])
            .arg(root.join("profiles/hosts/tiny.toml"))
            .arg("--out")
            .arg(&host_out)
            .arg("--agent")
            .arg(&agent)
            .env("SOURCE_DATE_EPOCH", "1700000000"),
    )?;
    println!(
        "tiny host image from scratch (kernel cached, agent {}): {:.1} s ({} the 60 s goal)",
        agent.display(),
        host.as_secs_f64(),
        if host < Duration::from_secs(60) {
            "within"
        } else {
            "OVER"
        }
    );

    // --- sha256 of the manifest, on the image just built.
    let m = contracts::image::Manifest::read(&host_out)?;
    let paths: Vec<PathBuf> = m.artifacts.iter().map(|a| host_out.join(&a.file)).collect();
    let total: u64 = m.artifacts.iter().map(|a| a.size).sum();
    let (ours, ok) = crate::util::fastest(3, || contracts::image::verify(&host_out, &m));
    ok?;
    let (reference, ok) = crate::util::fastest(3, || timed(Command::new("sha256sum").args(&paths)));
    ok?;
    let r = ratio(reference, ours);
    println!(
        "sha256 of {} files, {:.0} MiB: manifest verify {:.0} ms, sha256sum {:.0} ms: {r:.2}x ({} the goal of no slower)",
        paths.len(),
        mib(total),
        ms(ours),
        ms(reference),
        if r >= 1.0 { "meets" } else { "MISSES" }
    );
    Ok(())
}

/// Any regular file of the tree, as the guest's stand-in kernel path.
fn first_file(tree: &Path) -> anyhow::Result<PathBuf> {
    fn find(dir: &Path, base: &Path) -> Option<PathBuf> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .collect();
        v.sort();
        for p in v {
            let md = fs::symlink_metadata(&p).ok()?;
            if md.is_file() {
                return p.strip_prefix(base).ok().map(Path::to_owned);
            }
            if md.is_dir()
                && let Some(f) = find(&p, base)
            {
                return Some(f);
            }
        }
        None
    }
    find(tree, tree).context("the bench tree has no file")
}
