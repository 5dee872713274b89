//! The agent reads what the installer writes: the command line of every
//! example cluster's plan parses back to the plan's own cluster and SAN
//! transport, and its GPT leads the agent to the plan's volumes.

// Test helpers unwrap like the tests do: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use cluster::{SanFacts, Source, Trusting};

const PROFILES: &[&str] = &["demo.toml", "eurotech-4u.toml", "rack-64.toml"];

fn plan(name: &str) -> cluster::Plan {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../profiles/clusters")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let source = Source::new(path.display().to_string(), text);
    cluster::load(&source, &Trusting, SanFacts::default())
        .unwrap_or_else(|d| panic!("{name}: {d}"))
        .1
}

#[test]
fn every_example_command_line_parses_back() {
    for name in PROFILES {
        let plan = plan(name);
        let args = agent::cmdline::parse(&plan.boot.cmdline)
            .unwrap_or_else(|e| panic!("{name}: {}: {e}", plan.boot.cmdline));
        assert_eq!(args.cluster, plan.cluster.uuid, "{name}");
        assert_eq!(
            args.san,
            agent::cmdline::SanBoot::from(&plan.san.transport),
            "{name}"
        );
    }
}

#[test]
fn every_example_plan_survives_its_json_and_gives_each_node_a_root() {
    for name in PROFILES {
        let plan = plan(name);
        let read = agent::node::read_plan(&plan.to_json(), plan.cluster.uuid).unwrap();
        assert_eq!(read, plan, "{name}");
        let san = agent::san::SanDisk {
            disk: "sdb".into(),
            sector: plan.disk.sector_size,
            entries: plan
                .disk
                .partitions
                .iter()
                .map(cluster::gpt::Entry::from)
                .collect(),
        };
        for node in &plan.nodes {
            let found = agent::node::find(&plan, &node.macs).unwrap();
            assert_eq!(found.name, node.name, "{name}");
            let table = agent::dm::snapshot(&plan, &san, node).unwrap();
            let origin = plan.disk.by_label("vlx-origin").unwrap();
            assert_eq!(table.length.0 * 512, origin.size.get(), "{name}");
            assert_eq!(
                table.cow,
                format!("/dev/sdb{}", plan.disk.by_label(&node.cow).unwrap().number),
                "{name}"
            );
        }
    }
}
