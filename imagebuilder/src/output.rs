//! An output folder that never shows a half-written artifact under its
//! final name: artifacts are written as `.NAME.tmp`, and renamed into place
//! only when all of them are done; on failure (or a panic) the temporary
//! files are removed.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Result, io};

#[derive(Debug)]
pub struct Output {
    dir: PathBuf,
    names: Vec<String>,
    committed: bool,
}

impl Output {
    /// Creates `dir` if needed.
    pub fn new(dir: &Path) -> Result<Output> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        Ok(Output {
            dir: dir.to_owned(),
            names: Vec::new(),
            committed: false,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The temporary path for the artifact `name`, registered for cleanup.
    pub fn temp(&mut self, name: &str) -> PathBuf {
        if !self.names.iter().any(|n| n == name) {
            self.names.push(name.to_owned());
        }
        self.dir.join(format!(".{name}.tmp"))
    }

    /// Renames every artifact into place, in the order they were first
    /// asked for; `last` (the manifest) goes last and is removed first, so
    /// that a crash in between leaves no manifest describing a mix.
    pub fn commit(mut self, last: &str) -> Result<()> {
        let last_path = self.dir.join(last);
        match fs::remove_file(&last_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&last_path)(e)),
        }
        let mut order: Vec<String> = self.names.iter().filter(|n| *n != last).cloned().collect();
        if self.names.iter().any(|n| n == last) {
            order.push(last.to_owned());
        }
        for n in &order {
            let from = self.dir.join(format!(".{n}.tmp"));
            let to = self.dir.join(n);
            fs::rename(&from, &to).map_err(io(&to))?;
        }
        // The renames are durable once the folder itself is synced.
        if let Ok(d) = fs::File::open(&self.dir) {
            d.sync_all().map_err(io(&self.dir))?;
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        for n in &self.names {
            // Best effort: the build already failed with its own error.
            let _ = fs::remove_file(self.dir.join(format!(".{n}.tmp")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temps_vanish_unless_committed() {
        let d = tempfile::tempdir().unwrap();
        {
            let mut o = Output::new(d.path()).unwrap();
            fs::write(o.temp("a.img"), b"x").unwrap();
        }
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
        let mut o = Output::new(d.path()).unwrap();
        fs::write(o.temp("a.img"), b"x").unwrap();
        fs::write(o.temp("manifest.json"), b"{}").unwrap();
        o.commit("manifest.json").unwrap();
        let mut names: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["a.img", "manifest.json"]);
    }
}
