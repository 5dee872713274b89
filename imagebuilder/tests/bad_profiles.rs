//! Host, guest and media profiles with mistakes, through the command line:
//! `vlx-image build|guest|media --profile BAD.toml` exits 2 and names every
//! problem with its file, line, column and key, as a bad cluster profile
//! does, and writes nothing.
//!
//! Each fixture in `tests/fixtures/bad/` is named for its command
//! (`build-*.toml`, `guest-*.toml`, `media-*.toml`) and starts with one
//! `# expect: LINE:COLUMN KEY :: message` line per problem.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup errors

use std::path::{Path, PathBuf};
use std::process::Command;

/// Exit code of bad input.
const BAD_INPUT: i32 = 2;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad")
}

/// (line:column, key, message) of each `# expect:` line.
fn expectations(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .map_while(|l| l.strip_prefix("# expect: "))
        .map(|l| {
            let (head, msg) = l.split_once(" :: ").expect("expectation has ' :: '");
            let (place, key) = head
                .split_once(' ')
                .expect("expectation has a place and a key");
            (place.to_owned(), key.to_owned(), msg.to_owned())
        })
        .collect()
}

#[test]
fn every_bad_profile_exits_2_naming_file_line_column_and_key() {
    let mut seen = std::collections::BTreeSet::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for path in names {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let command = file.split('-').next().unwrap().to_owned();
        assert!(
            ["build", "guest", "media"].contains(&command.as_str()),
            "{file}: name it for its command"
        );
        seen.insert(command.clone());
        let text = std::fs::read_to_string(&path).unwrap();
        let want = expectations(&text);
        assert!(!want.is_empty(), "{file}: no # expect: lines");

        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("out");
        let run = Command::new(env!("CARGO_BIN_EXE_vlx-image"))
            .arg(&command)
            .arg("--profile")
            .arg(&path)
            .arg("--out")
            .arg(&dest)
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(BAD_INPUT), "{file}: {stderr}");
        for (place, key, msg) in &want {
            let line = format!("{}:{place}: {key}: {msg}", path.display());
            assert!(
                stderr.contains(&line),
                "{file}: wants `{line}` in:\n{stderr}"
            );
        }
        let count = format!(
            "{} error{} in the profile",
            want.len(),
            if want.len() == 1 { "" } else { "s" }
        );
        assert!(
            stderr.contains(&count),
            "{file}: wants `{count}` in:\n{stderr}"
        );
        assert!(!dest.exists(), "{file}: {} was made", dest.display());
    }
    assert_eq!(seen.len(), 3, "a fixture for each of build, guest, media");
}
