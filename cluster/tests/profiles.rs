//! Profiles in, diagnostics or plans out: malformed fixtures, each naming
//! the line and key its message must name, and golden plans of the example
//! profiles.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup errors

use std::path::{Path, PathBuf};

use cluster::{FsEnv, SanFacts, Source};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `# expect: LINE KEY :: message text` lines at the top of a fixture.
fn expectations(text: &str) -> Vec<(usize, String, String)> {
    text.lines()
        .map_while(|l| l.strip_prefix("# expect: "))
        .map(|l| {
            let (head, msg) = l.split_once(" :: ").expect("expectation has ' :: '");
            let (line, key) = head
                .split_once(' ')
                .expect("expectation has a line and a key");
            (
                line.parse().expect("line number"),
                key.to_owned(),
                msg.to_owned(),
            )
        })
        .collect()
}

#[test]
fn malformed_profiles_report_every_error_with_line_and_key() {
    let dir = fixtures();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "toml")
                && p.file_name().is_some_and(|n| n != "host.toml")
        })
        .collect();
    files.sort();
    assert!(files.len() >= 25, "only {} malformed fixtures", files.len());
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let want = expectations(&text);
        assert!(!want.is_empty(), "{} states no expectation", f.display());
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let source = Source::new(name.clone(), text);
        let err = cluster::load(&source, &FsEnv { base: dir.clone() }, SanFacts::default())
            .err()
            .unwrap_or_else(|| panic!("{name} was accepted"));
        let got: Vec<_> = err.iter().collect();
        assert_eq!(
            got.len(),
            want.len(),
            "{name}: expected {} errors, got:\n{err}",
            want.len()
        );
        for (line, key, msg) in &want {
            assert!(
                got.iter().any(|d| d.line == *line
                    && d.key == *key
                    && d.message.contains(msg.as_str())
                    && d.file == name),
                "{name}: no error at line {line} on {key} saying {msg:?}; got:\n{err}"
            );
        }
        // Every message carries a column, and the line exists in the file.
        for d in &got {
            assert!(
                d.column >= 1 && d.line >= 1 && d.line <= source.text().lines().count(),
                "{name}: {d}"
            );
        }
    }
}

fn load_example(name: &str) -> Result<String, String> {
    let path = repo().join("profiles/clusters").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let source = Source::new(format!("profiles/clusters/{name}"), text);
    let env = FsEnv {
        base: path.parent().unwrap().to_owned(),
    };
    cluster::load(&source, &env, SanFacts::default())
        .map(|(_, plan)| plan.to_json())
        .map_err(|d| d.to_string())
}

/// Compares with the golden file; `VLX_BLESS=1` rewrites it instead.
fn golden(name: &str, got: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("VLX_BLESS").is_some() {
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with VLX_BLESS=1)", path.display()));
    assert!(
        want == got,
        "{name} differs from the golden file; run with VLX_BLESS=1 after checking the change"
    );
}

#[test]
fn example_profiles_give_their_golden_plans() {
    for name in ["demo", "eurotech-4u", "rack-64"] {
        let json = load_example(&format!("{name}.toml")).unwrap_or_else(|e| panic!("{name}: {e}"));
        golden(&format!("{name}.json"), &json);
        assert_eq!(
            load_example(&format!("{name}.toml")).unwrap(),
            json,
            "{name}: two plans differ"
        );
    }
}

#[test]
fn a_thousand_nodes_fail_with_the_gpt_limit() {
    let err = load_example("too-many-1000.toml").unwrap_err();
    assert!(err.contains("Linux maps at most 255"), "{err}");
    assert!(err.contains("san.layout = \"lvm\""), "{err}");
    golden("too-many-1000.err", &err);
}
