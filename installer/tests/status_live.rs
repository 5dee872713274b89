//! `vlx-install status --live` on a SAN image file: the node overlay's
//! `publish` script, run as a node runs it (its rendered node.env from the
//! meta volume, a record.env as the agent writes it), writes the node's
//! status block; a second node's block is laid as a node holding the VIP
//! and the shared volume would write it; `status --live` reads both from
//! the SAN and calls the third node down. A one-slot install is refused.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use cluster::{Locate, Role};
use common::*;

const SAN: u64 = 700 * (1 << 20);

fn profile(dir: &Path, slots: u8) -> PathBuf {
    let text = small_profile_text()
        .replace("size = \"600MiB\"", "size = \"700MiB\"")
        .replace("[storage]\n", &format!("[storage]\nslots = {slots}\n"));
    let p = dir.join(format!("small-{slots}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn status_live_reads_what_each_node_published_on_the_san() {
    let d = tempfile::tempdir().unwrap();
    let img = image_dir(d.path(), "one");
    let prof = profile(d.path(), 2);
    let san = san(d.path(), SAN);
    let o = apply(&prof, &img, &san, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let plan = plan(&prof, &san);
    let record = |n: &str| {
        plan.volumes()
            .locate(&cluster::locate::record(n))
            .unwrap()
            .offset
            .get()
    };

    // s1 publishes with the overlay's script, in a root made of its own
    // rendered node.env; its "device" is the SAN file, by a link in the root.
    let root = d.path().join("root");
    std::fs::create_dir_all(root.join("etc/vlx")).unwrap();
    let meta = cluster::Bytes(plan.volumes().locate(&Role::Meta).unwrap().offset.get());
    let env = installer::fs::read_file(&san, meta, "/nodes/s1/root/etc/vlx/node.env")
        .unwrap()
        .unwrap();
    std::fs::write(root.join("etc/vlx/node.env"), env).unwrap();
    std::os::unix::fs::symlink(&san, root.join("san.img")).unwrap();
    std::fs::write(
        root.join("etc/vlx/record.env"),
        format!(
            "VLX_RECORD_DEV='/san.img'\nVLX_RECORD_BLOCK='{}'\n",
            (record("s1") + cluster::slots::LIVE_OFFSET) / 4096
        ),
    )
    .unwrap();
    let script = repo().join("overlays/node/usr/lib/vlx/publish");
    let o = Command::new("sh")
        .arg(&script)
        .arg("--once")
        .env("VLX_ROOT", &root)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));

    // s2 holds the VIP and the shared volume, as its own script would say.
    let block = format!(
        "VLX-NODE-LIVE 1\n{{\"node\":\"s2\",\"at\":{},\"addresses\":[\"10.66.0.250\"],\"shared\":true}}\n",
        now()
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open(&san)
        .unwrap()
        .write_all_at(block.as_bytes(), record("s2") + cluster::slots::LIVE_OFFSET)
        .unwrap();

    let o = vlx_install(&["status", "--live", "--json", "--san", san.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let live: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let up: Vec<(&str, bool)> = live["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["name"].as_str().unwrap(), n["up"].as_bool().unwrap()))
        .collect();
    assert_eq!(up, [("s1", true), ("s2", true), ("s3", false)], "{live:#}");
    assert_eq!(live["vips"][0]["vip"], "10.66.0.250");
    assert_eq!(live["vips"][0]["holders"], serde_json::json!(["s2"]));
    assert_eq!(live["shared"], serde_json::json!(["s2"]));
    assert_eq!(live["nodes"][0]["store"]["state"], "fresh");
    let o = vlx_install(&["status", "--live", "--san", san.to_str().unwrap()]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("VIP 10.66.0.250: s2"), "{t}");
    assert!(t.contains("DOWN (never published)"), "{t}");
    assert!(t.contains("shared volume: mounted on s2"), "{t}");

    // A one-slot install has nowhere its nodes publish to.
    let prof1 = profile(d.path(), 1);
    let san1 = d.path().join("san1.img");
    std::fs::File::create(&san1).unwrap().set_len(SAN).unwrap();
    let o = apply(&prof1, &img, &san1, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let o = vlx_install(&["status", "--live", "--san", san1.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("storage.slots = 2"), "{}", text(&o));
}
