//! Shared libraries a binary needs, found the way the dynamic loader finds
//! them: from the ELF's `DT_NEEDED` entries, searched in `DT_RPATH` (when
//! there is no `DT_RUNPATH`), `DT_RUNPATH`, the `ld.so.conf` folders and
//! the default and multiarch folders; recursively; plus each interpreter.
//! Nothing is executed (`ldd` would run the binary's own loader).

use std::collections::{BTreeSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, io};
use crate::formats::elf;

/// Folders the loader searches after `ld.so.cache`, on Debian amd64: the
/// multiarch ones first, then the classic ones.
const DEFAULT_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

/// Finds libraries on the build machine.
#[derive(Debug, Clone)]
pub struct Resolver {
    /// `ld.so.conf` folders, then [`DEFAULT_DIRS`].
    dirs: Vec<PathBuf>,
}

impl Resolver {
    /// The build machine's search folders (`/etc/ld.so.conf` and includes).
    pub fn host() -> Resolver {
        let mut dirs = Vec::new();
        read_conf(Path::new("/etc/ld.so.conf"), &mut dirs, 0);
        for d in DEFAULT_DIRS {
            dirs.push(PathBuf::from(d));
        }
        let mut seen = BTreeSet::new();
        dirs.retain(|d| seen.insert(d.clone()));
        Resolver { dirs }
    }

    /// Every library and interpreter `binaries` load, directly or through
    /// other libraries: the paths where the loader finds them (which may
    /// pass through symbolic links). Sorted.
    pub fn closure(&self, binaries: &[PathBuf]) -> Result<BTreeSet<PathBuf>> {
        let mut found = BTreeSet::new();
        let mut done_sonames: BTreeSet<String> = BTreeSet::new();
        let mut queue: VecDeque<(PathBuf, Vec<String>)> =
            binaries.iter().map(|b| (b.clone(), Vec::new())).collect();
        while let Some((obj, inherited_rpath)) = queue.pop_front() {
            let dynamic = elf::read(&obj)?;
            if let Some(interp) = &dynamic.interpreter {
                if !interp.exists() {
                    return Err(Error::MissingLibrary {
                        binary: obj.clone(),
                        library: interp.display().to_string(),
                        searched: "its PT_INTERP path".into(),
                    });
                }
                found.insert(interp.clone());
            }
            let origin = obj.parent().unwrap_or(Path::new("/"));
            // DT_RPATH applies to the object and what it loads, unless the
            // object has DT_RUNPATH, which applies to its own needs only.
            let mut rpath = Vec::new();
            if dynamic.runpath.is_empty() {
                rpath.extend(dynamic.rpath.iter().map(|r| expand(r, origin)));
                rpath.extend(inherited_rpath.iter().cloned());
            }
            let runpath: Vec<String> = dynamic.runpath.iter().map(|r| expand(r, origin)).collect();
            for name in &dynamic.needed {
                if done_sonames.contains(name) {
                    continue;
                }
                let path = if name.contains('/') {
                    let p = PathBuf::from(name);
                    p.exists().then_some(p)
                } else {
                    self.search(name, &rpath, &runpath)
                };
                let Some(path) = path else {
                    let searched: Vec<String> = rpath
                        .iter()
                        .chain(&runpath)
                        .cloned()
                        .chain(self.dirs.iter().map(|d| d.display().to_string()))
                        .collect();
                    return Err(Error::MissingLibrary {
                        binary: obj.clone(),
                        library: name.clone(),
                        searched: searched.join(":"),
                    });
                };
                done_sonames.insert(name.clone());
                if found.insert(path.clone()) {
                    queue.push_back((path, rpath.clone()));
                }
            }
        }
        Ok(found)
    }

    fn search(&self, name: &str, rpath: &[String], runpath: &[String]) -> Option<PathBuf> {
        rpath
            .iter()
            .chain(runpath)
            .map(PathBuf::from)
            .chain(self.dirs.iter().cloned())
            .map(|d| d.join(name))
            .find(|p| is_elf64(p))
    }
}

/// Checks that `binary` can be loaded inside the root file system at
/// `root` (a Debian root, whose own libraries come from its packages): its
/// interpreter and each library it names are there, in the loader's
/// default folders. The first one missing is the error.
pub fn check_in_root(root: &Path, binary: &Path) -> Result<()> {
    let dynamic = elf::read(binary)?;
    let inside = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
    if let Some(interp) = &dynamic.interpreter {
        if !inside(interp).exists() {
            return Err(Error::MissingLibrary {
                binary: binary.to_owned(),
                library: interp.display().to_string(),
                searched: format!("its PT_INTERP path in {}", root.display()),
            });
        }
    }
    for name in &dynamic.needed {
        let found = DEFAULT_DIRS
            .iter()
            .any(|d| is_elf64(&inside(Path::new(d)).join(name)));
        if !found {
            return Err(Error::MissingLibrary {
                binary: binary.to_owned(),
                library: name.clone(),
                searched: DEFAULT_DIRS
                    .iter()
                    .map(|d| inside(Path::new(d)).display().to_string())
                    .collect::<Vec<_>>()
                    .join(":"),
            });
        }
    }
    Ok(())
}

/// A candidate must be a 64-bit ELF: a folder may also hold 32-bit builds.
fn is_elf64(p: &Path) -> bool {
    use std::io::Read;
    let Ok(mut f) = fs::File::open(p) else {
        return false;
    };
    let mut head = [0u8; 5];
    f.read_exact(&mut head).is_ok() && &head[..4] == b"\x7fELF" && head[4] == 2
}

fn expand(entry: &str, origin: &Path) -> String {
    let o = origin.display().to_string();
    entry
        .replace("${ORIGIN}", &o)
        .replace("$ORIGIN", &o)
        .replace("${LIB}", "lib/x86_64-linux-gnu")
        .replace("$LIB", "lib/x86_64-linux-gnu")
        .replace("${PLATFORM}", "x86_64")
        .replace("$PLATFORM", "x86_64")
}

/// Reads an `ld.so.conf`-style file, following `include` globs of the
/// simple `dir/*.conf` form. Missing files are ignored, as the loader does.
fn read_conf(path: &Path, out: &mut Vec<PathBuf>, depth: usize) {
    if depth > 8 {
        return;
    }
    let Ok(text) = fs::read_to_string(path) else {
        return;
    };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(pattern) = line.strip_prefix("include") {
            let pattern = pattern.trim();
            let pattern = if pattern.starts_with('/') {
                PathBuf::from(pattern)
            } else {
                path.parent().unwrap_or(Path::new("/")).join(pattern)
            };
            for f in glob_files(&pattern) {
                read_conf(&f, out, depth + 1);
            }
        } else if line.starts_with('/') {
            out.push(PathBuf::from(line));
        }
    }
}

/// Files matching `dir/prefix*suffix` (the only glob form ld.so.conf uses).
fn glob_files(pattern: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (pattern.parent(), pattern.file_name()) else {
        return Vec::new();
    };
    let name = name.to_string_lossy();
    let (prefix, suffix) = name.split_once('*').unwrap_or((&name, ""));
    let exact = !name.contains('*');
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            if exact {
                n == &name
            } else {
                n.starts_with(prefix)
                    && n.ends_with(suffix)
                    && n.len() >= prefix.len() + suffix.len()
            }
        })
        .map(|n| dir.join(n))
        .collect();
    v.sort();
    v
}

/// Finds a program of the build machine by name in the system folders, or
/// takes an absolute path as it is.
pub fn find_program(name: &str) -> Result<PathBuf> {
    const DIRS: &[&str] = &["/usr/sbin", "/usr/bin", "/sbin", "/bin"];
    if name.starts_with('/') {
        let p = PathBuf::from(name);
        return match fs::metadata(&p) {
            Ok(m) if m.is_file() => Ok(p),
            Ok(_) => Err(Error::MissingBinary {
                name: name.into(),
                searched: "(not a file)".into(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::MissingBinary {
                name: name.into(),
                searched: name.into(),
            }),
            Err(e) => Err(io(&p)(e)),
        };
    }
    DIRS.iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::MissingBinary {
            name: name.into(),
            searched: DIRS.join(":"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_dmsetup_needs() {
        let r = Resolver::host();
        let libs = r.closure(&[find_program("dmsetup").unwrap()]).unwrap();
        let names: Vec<String> = libs
            .iter()
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        for want in [
            "libdevmapper.so.1.02.1",
            "libc.so.6",
            "ld-linux-x86-64.so.2",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
        }
        // libselinux is needed by libdevmapper, not by dmsetup itself.
        assert!(
            names.iter().any(|n| n.starts_with("libselinux")),
            "{names:?}"
        );
    }

    #[test]
    fn missing_program_is_named() {
        let err = find_program("no-such-program-vlx").unwrap_err().to_string();
        assert!(err.contains("no-such-program-vlx"), "{err}");
    }

    #[test]
    fn origin_expands() {
        assert_eq!(
            expand("$ORIGIN/../lib", Path::new("/opt/x/bin")),
            "/opt/x/bin/../lib"
        );
    }
}
