//! The boot-storm rig end to end at a small size, so that `cargo xtask
//! bench storm` cannot rot: 50 blades of a generated cluster ask for their
//! addresses at once (perfdhcp, with the cluster's own MACs) from the
//! rendered dnsmasq of 2 serving blades in network namespaces; every
//! client must get its own fixed address from whichever blade answers,
//! read from perfdhcp's own lease report. Then 20 clients fetch the PXE
//! tree's kernel and initramfs over both blades' HTTP. No timings are
//! judged here: the benchmark measures speed.
//!
//! Needs root (network, mount and PID namespaces) and perfdhcp (Debian
//! package kea-admin, installed by `cargo xtask deps`); fails saying so
//! otherwise.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use bench::storm_setup::{HttpStorm, Storm};

const CLIENTS: usize = 50;
const SERVERS: usize = 2;
/// Bounds each storm; at this size both end within seconds.
const DEADLINE: Duration = Duration::from_secs(120);

fn preconditions() {
    // SAFETY: getuid has no preconditions.
    assert_eq!(
        unsafe { libc::getuid() },
        0,
        "the storm test needs root (network, mount and PID namespaces)"
    );
    assert!(
        Path::new("/usr/sbin/perfdhcp").exists(),
        "no /usr/sbin/perfdhcp: install Debian package kea-admin (cargo xtask deps)"
    );
}

fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn live_storm_every_client_gets_its_own_address_from_either_blade() {
    preconditions();
    let dir = tempfile::tempdir().unwrap();
    let storm = Storm::new(workspace(), CLIENTS, SERVERS, dir.path()).unwrap();
    // A kernel and an initramfs of distinct sizes stand in for the image's.
    let (kernel, initramfs) = (dir.path().join("vmlinuz"), dir.path().join("initramfs.img"));
    std::fs::write(&kernel, vec![0x4b; 300_000]).unwrap();
    std::fs::write(&initramfs, vec![0x49; 700_001]).unwrap();
    let tree = dir.path().join("tftp");
    storm.pxe_tree(&kernel, &initramfs, &tree).unwrap();

    let round = storm
        .round(
            "t",
            SERVERS,
            &tree,
            Some(HttpStorm {
                files: &["vmlinuz", "initramfs.img"],
                clients: 20,
            }),
            DEADLINE,
        )
        .unwrap();

    // round() already checked the leases: 50 ACKs, 50 distinct addresses,
    // exactly the clients' reservations.
    assert_eq!(round.dhcp.acks, CLIENTS as u64, "{:?}", round.dhcp);
    assert_eq!(round.dhcp.leases.len(), CLIENTS);
    assert!(
        round.dhcp.took.is_some(),
        "perfdhcp did not finish: {:?}",
        round.dhcp
    );
    // Each lease was handed out by one of the two blades and written to its
    // lease file.
    let granted: usize = round.per_blade.iter().map(|(_, n)| n).sum();
    assert_eq!(granted, CLIENTS, "{:?}", round.per_blade);

    let http = round.http.unwrap();
    assert_eq!(http.failed, 0, "{:?}", http.failures);
    assert_eq!(http.complete, 20);
    assert_eq!(http.bytes, 20 * (300_000 + 700_001));
}

/// A client range that does not start on a `:00` octet is refused before
/// anything runs, because perfdhcp's numbering would leave the cluster's
/// MACs.
#[test]
fn storm_refuses_macs_perfdhcp_cannot_count() {
    let dir = tempfile::tempdir().unwrap();
    let storm = Storm::new(workspace(), 300, 1, dir.path()).unwrap();
    let mut clients = storm.client_nodes();
    clients.remove(0);
    let err = bench::dhcp_storm::check_macs(&clients).unwrap_err();
    assert!(err.to_string().contains("without carry"), "{err}");
}
