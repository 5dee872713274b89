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
    for name in ["demo", "demo-pool", "eurotech-4u", "rack-64"] {
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
    assert!(err.contains("san.layout = \"pool\""), "{err}");
    assert!(!err.to_lowercase().contains("lvm"), "{err}");
    golden("too-many-1000.err", &err);
}

fn plan_of(name: &str, san: SanFacts) -> cluster::Plan {
    let path = repo().join("profiles/clusters").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let source = Source::new(format!("profiles/clusters/{name}"), text);
    let env = FsEnv {
        base: path.parent().unwrap().to_owned(),
    };
    cluster::load(&source, &env, san)
        .map(|(_, plan)| plan)
        .unwrap_or_else(|d| panic!("{name}: {d}"))
}

#[test]
fn a_row_of_a_thousand_blades_plans_in_the_pool() {
    use cluster::{Bytes, Locate, Role};
    let plan = plan_of(
        "row-1000.toml",
        SanFacts {
            size: Some(Bytes(4 << 40)),
            sector_size: None,
        },
    );
    golden("row-1000.txt", &plan.to_string());
    assert_eq!(plan.nodes.len(), 1000);
    let d = &plan.disk;
    assert_eq!(d.partitions.len(), 5, "esp, meta, origin, pool, shared");
    let pool = d.by_role(&Role::Pool).expect("a vlx-pool partition");
    assert_eq!(pool.label, "vlx-pool");
    let table = d.pool.as_ref().expect("the pool table in the plan");
    assert_eq!(table.extents.len(), 2000);
    // Extents follow one another, aligned, inside the pool, without overlap.
    let mut end = 0;
    for e in &table.extents {
        assert_eq!(
            e.start.get(),
            end,
            "{} does not follow its neighbour",
            e.name
        );
        assert_eq!(e.start.get() % table.align.get(), 0, "{}", e.name);
        assert_eq!(e.size.get() % table.align.get(), 0, "{}", e.name);
        end = e.start.get() + e.size.get();
    }
    assert!(
        end <= pool.size.get(),
        "extents end at {end}, past the pool"
    );
    // Every node's store and swap are found by role, inside the pool, at
    // the size of its node group.
    let v = plan.volumes();
    let start = pool.offset(d.sector_size).get();
    for n in &plan.nodes {
        let cow = v.locate(&cluster::locate::cow(n.name.as_str())).unwrap();
        let swap = v.locate(&cluster::locate::swap(n.name.as_str())).unwrap();
        let want = if n.name.as_str().starts_with("svc") {
            8
        } else {
            2
        };
        assert_eq!(cow.size, Bytes(want << 30), "{}", n.name);
        assert_eq!(swap.size, Bytes(1 << 30), "{}", n.name);
        assert_eq!(
            (cow.label.as_str(), cow.partition.label.as_str()),
            (n.cow.as_str(), "vlx-pool")
        );
        assert_eq!(Some(&swap.label), n.swap.as_ref());
        for x in [&cow, &swap] {
            assert!(
                x.offset.get() >= start && x.offset.get() + x.size.get() <= start + pool.size.get()
            );
            assert!(!x.is_whole_partition());
        }
    }
    // The plan survives its own JSON (what the agent reads).
    assert_eq!(cluster::Plan::from_json(&plan.to_json()).unwrap(), plan);
}

#[test]
fn stores_sized_per_node_group_in_the_gpt_layout_too() {
    let text = "[cluster]\nname = \"t\"\nuuid = \"6f1c0a4e-3b8e-4d3a-9d2a-1f0e5c7b9a10\"\ndomain = \"t.test\"\n\
        [network]\ncidr = \"10.0.0.0/24\"\nvips = [\"10.0.0.250\"]\n\
        [[nodes]]\nname = \"a[1-2]\"\nmac = \"52:54:00:00:00:01\"\nip = \"10.0.0.1\"\ncow = \"32MiB\"\nswap = \"0\"\n\
        [[nodes]]\nname = \"b1\"\nmac = \"52:54:00:00:01:01\"\nip = \"10.0.0.9\"\n\
        [san]\nsize = \"8GiB\"\n[storage]\ncow = \"16MiB\"\nswap = \"8MiB\"\n[image]\nhost = \"h.toml\"\n";
    let source = Source::new("t.toml", text);
    let (_, plan) = cluster::load(&source, &cluster::Trusting, SanFacts::default())
        .unwrap_or_else(|d| panic!("{d}"));
    let sizes: Vec<_> = plan
        .disk
        .partitions
        .iter()
        .skip(3)
        .map(|p| (p.label.as_str(), p.size.get() >> 20))
        .collect();
    assert_eq!(
        sizes,
        [
            ("vlx-cow-a1", 32),
            ("vlx-cow-a2", 32),
            ("vlx-cow-b1", 16),
            ("vlx-swap-b1", 8),
            ("vlx-shared", sizes[4].1)
        ]
    );
    assert_eq!(plan.node("a1").unwrap().swap, None);
}

/// `etcd.voters` picks how many blades vote, spread over the list like the
/// count by blade number; without it 16 blades have 5 voters.
#[test]
fn a_profile_sets_how_many_blades_vote() {
    let profile = |etcd: &str| {
        format!(
            "[cluster]\nname = \"t\"\nuuid = \"6f1c0a4e-3b8e-4d3a-9d2a-1f0e5c7b9a10\"\ndomain = \"t.test\"\n\
             [network]\ncidr = \"10.0.0.0/24\"\nvips = [\"10.0.0.250\"]\n\
             [[nodes]]\nname = \"b[01-16]\"\nmac = \"52:54:00:00:00:01\"\nip = \"10.0.0.11\"\n\
             [san]\nsize = \"40GiB\"\n[storage]\ncow = \"16MiB\"\nswap = \"0\"\n[image]\nhost = \"h.toml\"\n{etcd}"
        )
    };
    let voters = |etcd: &str| {
        let source = Source::new("t.toml", profile(etcd));
        let (_, plan) = cluster::load(&source, &cluster::Trusting, SanFacts::default())
            .unwrap_or_else(|d| panic!("{d}"));
        plan.etcd
            .voters
            .iter()
            .map(|v| v.name.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(voters(""), ["b01", "b04", "b07", "b10", "b13"]);
    assert_eq!(voters("[etcd]\nvoters = 3\n"), ["b01", "b06", "b11"]);
    assert_eq!(
        voters("[etcd]\nvoters = 7\n"),
        ["b01", "b03", "b05", "b07", "b10", "b12", "b14"]
    );
    for bad in [0, 1, 2, 4, 9, -3] {
        let source = Source::new("t.toml", profile(&format!("[etcd]\nvoters = {bad}\n")));
        let err = cluster::load(&source, &cluster::Trusting, SanFacts::default())
            .map(|_| ())
            .unwrap_err();
        let got: Vec<_> = err.iter().collect();
        assert!(
            got.len() == 1
                && got[0].line == 20
                && got[0].key == "etcd.voters"
                && got[0].message.contains("3, 5 or 7"),
            "{bad}: {err}"
        );
    }
}
