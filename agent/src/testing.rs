//! Plans for the unit tests, made by the cluster crate from a profile.

use cluster::{Plan, SanFacts, Source, Trusting};

/// A three-node plan (`n1` to `n3`, MACs from 52:54:00:77:00:01) with swap,
/// at `sector` bytes per logical sector.
pub(crate) fn plan(sector: u32) -> Plan {
    plan_in(sector, "gpt")
}

/// The same cluster in the given `san.layout`.
pub(crate) fn plan_in(sector: u32, layout: &str) -> Plan {
    // BIOS boot needs 512-byte sectors.
    let firmware = if sector == 512 { "both" } else { "uefi" };
    let text = format!(
        r#"
[cluster]
name = "t"
uuid = "6f1c0a4e-3b8e-4d3a-9d2a-1f0e5c7b9a10"
domain = "t.test"
[network]
cidr = "10.77.0.0/24"
vips = ["10.77.0.250"]
[[nodes]]
name = "n[1-3]"
mac = "52:54:00:77:00:01"
ip = "10.77.0.11"
[san]
sector_size = {sector}
layout = "{layout}"
[storage]
esp = "260MiB"
meta = "64MiB"
origin = "64MiB"
cow = "16MiB"
swap = "8MiB"
shared = "64MiB"
[boot]
firmware = "{firmware}"
[image]
host = "h.toml"
"#
    );
    let facts = SanFacts {
        size: Some(cluster::Bytes::mib(1024)),
        sector_size: None,
    };
    cluster::load(&Source::new("t.toml", text), &Trusting, facts)
        .unwrap()
        .1
}
