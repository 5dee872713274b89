//! Root file systems from the three sources a profile can name, laid out
//! in a staging folder: the build machine's binaries (`host`), Debian's
//! archive (`mmdebstrap`), or a root tarball (`tarball`, sha256 pinned).

use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::error::{Error, Result, io};
use crate::hash;
use crate::image::libs::{Resolver, find_program};
use crate::image::sources::AptLine;
use crate::image::tree::{Entry, Tree};
use crate::profile::{Debootstrap, HostRoot};
use crate::progress::Progress;
use crate::tool;

/// Folders every `host` root has, with their modes.
const SKELETON: &[(&str, u32)] = &[
    ("dev", 0o755),
    ("etc", 0o755),
    ("home", 0o755),
    ("mnt", 0o755),
    ("proc", 0o555),
    ("root", 0o700),
    ("run", 0o755),
    ("sys", 0o555),
    ("tmp", 0o1777),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
    ("usr/lib", 0o755),
    ("var/cache", 0o755),
    ("var/lib", 0o755),
    ("var/log", 0o755),
    ("var/tmp", 0o1777),
];

/// Plans a root from the build machine's binaries and their libraries.
/// Busybox's applets become links to busybox wherever no real program of
/// the same path is taken; `/sbin/init` must exist in the end.
pub fn plan_host(spec: &HostRoot, resolver: &Resolver, progress: &dyn Progress) -> Result<Tree> {
    let mut t = Tree::new();
    // The build machine's merged-/usr links (bin -> usr/bin, ...), so that
    // every path a program or library was found at exists as it does there.
    for top in ["bin", "sbin", "lib", "lib64"] {
        let host = Path::new("/").join(top);
        if let Ok(target) = fs::read_link(&host) {
            t.insert(Path::new(top), Entry::symlink(target))?;
        }
    }
    for (d, mode) in SKELETON {
        let real = t.mkdir_p(Path::new(d))?;
        t.insert(&real, Entry::dir(*mode))?;
    }
    t.insert(Path::new("var/run"), Entry::symlink("/run"))?;
    let mut programs = Vec::new();
    for b in &spec.binaries {
        programs.push(find_program(b)?);
    }
    for b in &spec.optional_binaries {
        match find_program(b) {
            Ok(p) => programs.push(p),
            Err(Error::MissingBinary { .. }) => progress.event(crate::progress::Event::Info(
                &format!("optional binary {b} is not on the build machine: skipped"),
            )),
            Err(e) => return Err(e),
        }
    }
    programs.sort();
    programs.dedup();
    let mut elves = Vec::new();
    for p in &programs {
        t.add_host_path(p)?;
        if crate::formats::elf::is_elf(p)? {
            elves.push(p.clone());
        }
    }
    for lib in resolver.closure(&elves)? {
        t.add_host_path(&lib)?;
    }
    for f in &spec.files {
        if fs::symlink_metadata(f).is_err() {
            return Err(Error::Other(format!(
                "rootfs.files: {} is not on the build machine",
                f.display()
            )));
        }
        t.add_host_tree(f)?;
    }
    for d in &spec.dirs {
        t.mkdir_p(d)?;
    }
    if let Some(busybox) = programs
        .iter()
        .find(|p| p.file_name().is_some_and(|n| n == "busybox"))
    {
        for applet in crate::image::initramfs::applets(busybox)? {
            if t.get(&applet).is_none() {
                t.insert(&applet, Entry::symlink(busybox))?;
            }
        }
    }
    if t.get(Path::new("sbin/init")).is_none() {
        return Err(Error::Other(
            "the root has no /sbin/init: list busybox (with its init applet) in rootfs.binaries"
                .into(),
        ));
    }
    Ok(t)
}

/// Builds a Debian root with mmdebstrap into `dest` (absent or empty)
/// from `sources` (see [`crate::image::sources`]), which also become the
/// root's own `/etc/apt/sources.list`. Downloaded packages are kept in
/// `$VLX_CACHE/debs/<suite>` for the next build; the root itself keeps
/// none.
pub fn mmdebstrap(
    spec: &Debootstrap,
    sources: &[AptLine],
    extra: &[String],
    dest: &Path,
    epoch: u64,
) -> Result<()> {
    if sources.is_empty() {
        return Err(Error::Other(format!(
            "no apt sources to build the {} root from",
            spec.suite
        )));
    }
    let cache = crate::image::kernel::cache_root()
        .join("debs")
        .join(&spec.suite);
    fs::create_dir_all(&cache).map_err(io(&cache))?;
    let mut packages: Vec<String> = spec.packages.iter().chain(extra).cloned().collect();
    packages.sort();
    packages.dedup();
    let (setup, customize) = cache_hooks(&cache);
    let mut cmd = Command::new("mmdebstrap");
    cmd.args(["--mode=root", "--format=directory", "--quiet"])
        .arg(format!("--variant={}", spec.variant))
        .env("SOURCE_DATE_EPOCH", epoch.to_string());
    if !packages.is_empty() {
        cmd.arg(format!("--include={}", packages.join(",")));
    }
    // apt runs inside the root: a file: archive is bind-mounted there by
    // mmdebstrap's own hook (and unmounted before the root is done).
    if sources.iter().any(|s| s.uri.starts_with("file:")) {
        cmd.arg(format!("--hook-dir={FILE_MIRROR_HOOKS}"));
    }
    // The documented package-cache recipe: debs come in before the
    // download, go back out after it, and leave the root empty of them.
    cmd.arg("--skip=download/empty")
        .arg("--skip=essential/unlink")
        .arg(format!("--setup-hook={setup}"))
        .arg(format!("--customize-hook={customize}"))
        .arg(&spec.suite)
        .arg(dest)
        .args(sources.iter().map(ToString::to_string));
    tool::run(
        &mut cmd,
        &format!("building the {} root with mmdebstrap", spec.suite),
    )?;
    Ok(())
}

/// mmdebstrap's hooks that make a `file:` mirror reachable from the root.
const FILE_MIRROR_HOOKS: &str = "/usr/share/mmdebstrap/hooks/file-mirror-automount";

/// Shell commands for mmdebstrap's setup and customize hooks (the root is
/// `$1`): copy the cached debs in; copy the debs out to the cache and
/// delete them from the root.
fn cache_hooks(cache: &Path) -> (String, String) {
    let archives = "/var/cache/apt/archives/";
    let cache = shell_quote(cache);
    (
        format!("mkdir -p \"$1\"{archives}partial && cp -a {cache}/. \"$1\"{archives}"),
        format!(
            "find \"$1\"{archives} -maxdepth 1 -name '*.deb' -exec cp -a -t {cache} {{}} + \
             && find \"$1\"{archives} -maxdepth 1 -name '*.deb' -delete"
        ),
    )
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

/// Checks the sha256 of `archive` (streamed) against the pinned value.
pub fn check_sha256(archive: &Path, expected: &str) -> Result<()> {
    let (_, actual) = hash::sha256_file(archive)?;
    if actual != expected {
        return Err(Error::Sha256Mismatch {
            path: archive.to_owned(),
            expected: expected.to_owned(),
            actual,
        });
    }
    Ok(())
}

/// A decompressing reader over an archive, chosen by its magic bytes:
/// gzip in process, xz and zstd through their tools.
struct Decompressed {
    reader: Box<dyn Read>,
    child: Option<Child>,
    /// A compressed stream, whose check of itself is at its end.
    compressed: bool,
}

fn open_archive(archive: &Path) -> Result<Decompressed> {
    let mut magic = [0u8; 6];
    let mut f = File::open(archive).map_err(io(archive))?;
    let n = f.read(&mut magic).map_err(io(archive))?;
    let magic = &magic[..n];
    let tool = if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Some("xz")
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some("zstd")
    } else {
        None
    };
    if let Some(t) = tool {
        let mut child = Command::new(t)
            .args(["-d", "-c"])
            .arg(archive)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|source| Error::Spawn {
                program: t.into(),
                source,
            })?;
        let out = child
            .stdout
            .take()
            .ok_or_else(|| Error::Other(format!("{t}: no output pipe")))?;
        return Ok(Decompressed {
            reader: Box::new(out),
            child: Some(child),
            compressed: true,
        });
    }
    let f = File::open(archive).map_err(io(archive))?;
    let compressed = magic.starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn Read> = if compressed {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(f)))
    } else {
        Box::new(BufReader::new(f))
    };
    Ok(Decompressed {
        reader,
        child: None,
        compressed,
    })
}

/// How much of a decompressed stream may follow the archive's end (tar
/// pads an archive to a whole record, 10 KiB by default).
const TRAILING_LIMIT: u64 = 64 << 20;

/// Extracts a root tarball (plain, gzip, xz or zstd) into `dest`, keeping
/// owners, modes, xattrs (file capabilities among them), links, device
/// nodes and FIFOs. Every member is written beneath `dest` and never
/// through a symbolic link ([`crate::formats::untar`]); a member that would
/// leave it is an [`Error::Archive`] naming the member.
pub fn extract_tarball(archive: &Path, dest: &Path) -> Result<()> {
    let mut d = open_archive(archive)?;
    let extracted = crate::formats::untar::extract(&mut d.reader, dest, archive);
    let stop = |c: Option<std::process::Child>| {
        if let Some(mut c) = c {
            let _ = c.kill();
            let _ = c.wait();
        }
    };
    if let Err(e) = extracted {
        // The reader stopped early: the decompressor is not needed any
        // more, and the member's error is the one to report, whatever
        // stopping the decompressor says.
        stop(d.child.take());
        return Err(e);
    }
    if !d.compressed {
        // A plain tar: what follows its end is nobody's concern.
        return Ok(());
    }
    // The archive ends before its stream does (tar pads it to a whole
    // record): read the stream to its end, so that the decompressor checks
    // all of it (gzip's, xz's and zstd's checks of the whole stream are in
    // its last bytes) and an external one writes all of it (else it may die
    // of SIGPIPE) before its status is judged. Past TRAILING_LIMIT it is no
    // padding: refused, not read for ever (a hostile stream may decompress
    // to terabytes).
    let damaged = |message: String| Error::Stream {
        archive: archive.to_owned(),
        message,
    };
    let drained = std::io::copy(
        &mut (&mut d.reader).take(TRAILING_LIMIT + 1),
        &mut std::io::sink(),
    );
    match drained {
        Ok(n) if n > TRAILING_LIMIT => {
            stop(d.child.take());
            return Err(damaged(format!(
                "more than {} MiB of data after the archive's end",
                TRAILING_LIMIT >> 20
            )));
        }
        Err(e) if d.child.is_none() => {
            return Err(damaged(format!("decompressing failed ({e})")));
        }
        _ => {}
    }
    if let Some(mut c) = d.child.take() {
        drop(std::mem::replace(&mut d.reader, Box::new(std::io::empty())));
        let st = c.wait().map_err(io(archive))?;
        if !st.success() {
            return Err(damaged(format!("decompressing failed ({st})")));
        }
        drained.map_err(io(archive))?;
    }
    Ok(())
}

/// Sets every mtime under `root` (itself included) to at most `epoch`,
/// children before their folders, without following links.
pub fn clamp_mtimes(root: &Path, epoch: i64) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let md = fs::symlink_metadata(root).map_err(io(root))?;
    if md.is_dir() {
        for e in fs::read_dir(root).map_err(io(root))? {
            let e = e.map_err(io(root))?;
            clamp_mtimes(&e.path(), epoch)?;
        }
    }
    if md.mtime() > epoch || md.atime() > epoch {
        let m = filetime::FileTime::from_unix_time(md.mtime().min(epoch), 0);
        filetime::set_symlink_file_times(root, m, m).map_err(io(root))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_hooks_move_debs_both_ways() {
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("it's cache");
        let root = d.path().join("root");
        fs::create_dir_all(&cache).unwrap();
        fs::create_dir_all(&root).unwrap();
        fs::write(cache.join("a_1_amd64.deb"), b"a").unwrap();
        let (setup, customize) = cache_hooks(&cache);
        let sh = |script: &str| {
            let st = Command::new("sh")
                .args(["-c", script, "sh"])
                .arg(&root)
                .status()
                .unwrap();
            assert!(st.success(), "{script}");
        };
        sh(&setup);
        let archives = root.join("var/cache/apt/archives");
        assert!(archives.join("a_1_amd64.deb").is_file() && archives.join("partial").is_dir());
        fs::write(archives.join("b_2_amd64.deb"), b"b").unwrap();
        sh(&customize);
        assert!(cache.join("b_2_amd64.deb").is_file());
        assert!(
            !archives.join("a_1_amd64.deb").exists() && !archives.join("b_2_amd64.deb").exists()
        );
        // With no debs at all, the hook still succeeds.
        sh(&customize);
    }

    /// An xz archive whose stream goes on well past the tar's end (more
    /// than a pipe holds): the rest is read, so xz neither dies of SIGPIPE
    /// nor goes unchecked; a stream damaged after the tar's end fails.
    #[test]
    fn an_xz_stream_longer_than_its_archive_is_read_to_its_end_and_checked() {
        let d = tempfile::tempdir().unwrap();
        let tree = d.path().join("tree");
        fs::create_dir_all(tree.join("etc")).unwrap();
        fs::write(tree.join("etc/hostname"), b"blade\n").unwrap();
        let tar = d.path().join("root.tar");
        let st = Command::new("tar")
            .args(["-C"])
            .arg(&tree)
            .args(["-cf"])
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        let mut bytes = fs::read(&tar).unwrap();
        bytes.extend(std::iter::repeat_n(0u8, 4 << 20));
        fs::write(&tar, &bytes).unwrap();
        let st = Command::new("xz")
            .args(["-0", "-k", "-T1"])
            .arg(&tar)
            .status()
            .unwrap();
        assert!(st.success());
        let xz = d.path().join("root.tar.xz");
        let dest = d.path().join("dest");
        fs::create_dir(&dest).unwrap();
        extract_tarball(&xz, &dest).unwrap();
        assert_eq!(fs::read(dest.join("etc/hostname")).unwrap(), b"blade\n");

        // The stream's last bytes (its footer) damaged: xz says so.
        let mut damaged = fs::read(&xz).unwrap();
        let n = damaged.len();
        damaged[n - 6] ^= 0xff;
        let bad = d.path().join("bad.tar.xz");
        fs::write(&bad, &damaged).unwrap();
        let dest = d.path().join("dest2");
        fs::create_dir(&dest).unwrap();
        let err = extract_tarball(&bad, &dest).unwrap_err();
        assert!(err.is_bad_input(), "{err}");
        let err = err.to_string();
        assert!(err.contains("decompressing failed"), "{err}");

        // More than the limit after the archive's end is refused.
        let mut long = fs::read(&tar).unwrap();
        long.extend(std::iter::repeat_n(0u8, TRAILING_LIMIT as usize));
        let long_tar = d.path().join("long.tar");
        fs::write(&long_tar, &long).unwrap();
        let st = Command::new("xz")
            .args(["-0", "-T1"])
            .arg(&long_tar)
            .status()
            .unwrap();
        assert!(st.success());
        let dest = d.path().join("dest3");
        fs::create_dir(&dest).unwrap();
        let err = extract_tarball(&d.path().join("long.tar.xz"), &dest).unwrap_err();
        assert!(err.is_bad_input(), "{err}");
        let err = err.to_string();
        assert!(
            err.contains("more than 64 MiB of data after the archive's end"),
            "{err}"
        );
    }
}
