//! Planning: profile text to plan JSON, from 10 to 10,000 nodes. The time
//! should grow linearly with the node count. (For scale: Cobbler needed
//! 9.2 s to sync 542 systems.)

use std::time::Duration;

use cluster::{SanFacts, Source, Trusting};

use crate::util::{fastest, mib, ms, peak_rss};

/// A profile of `n` nodes, as one range or as `n` explicit tables. Past the
/// GPT limit the per-node volumes go to the pool layout.
fn profile(n: usize, explicit: bool) -> String {
    let mut s = format!(
        "[cluster]\nname = \"bench\"\nuuid = \"6f1c0a4e-3b8e-4d3a-9d2a-1f0e5c7b9a10\"\ndomain = \"bench.test\"\n\
         [network]\ncidr = \"10.0.0.0/16\"\nvips = [\"10.0.255.250\"]\n\
         [san]\nlayout = \"{}\"\n[storage]\ncow = \"64MiB\"\nswap = \"64MiB\"\n\
         [image]\nhost = \"h.toml\"\n",
        if n > 120 { "pool" } else { "gpt" }
    );
    if explicit {
        for i in 0..n {
            let mac = 0x5254_0000_0000u64 + i as u64 + 1;
            let b = mac.to_be_bytes();
            s.push_str(&format!(
                "[[nodes]]\nname = \"n{i:05}\"\nmac = \"{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}\"\nip = \"10.0.{}.{}\"\n",
                b[2], b[3], b[4], b[5], b[6], b[7],
                (i + 11) / 256,
                (i + 11) % 256
            ));
        }
    } else {
        s.push_str(&format!("[[nodes]]\nname = \"n[00001-{n:05}]\"\nmac = \"52:54:00:00:00:01\"\nip = \"10.0.0.11\"\n"));
    }
    s
}

fn plan_json(text: &str, san: SanFacts) -> anyhow::Result<usize> {
    let source = Source::new("bench.toml", text);
    let (_, plan) = cluster::load(&source, &Trusting, san).map_err(|d| anyhow::anyhow!("{d}"))?;
    Ok(plan.to_json().len())
}

pub fn run() -> anyhow::Result<()> {
    let san = SanFacts {
        size: Some(cluster::Bytes(4 << 40)),
        sector_size: None,
    };
    println!(
        "{:>8} {:>10} {:>12} {:>14} {:>12}",
        "nodes", "form", "time ms", "µs per node", "JSON MiB"
    );
    let mut per_node = Vec::new();
    for explicit in [false, true] {
        for n in [10, 100, 1_000, 10_000] {
            let text = profile(n, explicit);
            let (t, len) = fastest(5, || plan_json(&text, san));
            let len = len?;
            let us = t.as_secs_f64() * 1e6 / n as f64;
            per_node.push(us);
            println!(
                "{n:>8} {:>10} {:>12.2} {:>14.2} {:>12.2}",
                if explicit { "explicit" } else { "range" },
                ms(t),
                us,
                mib(len as u64)
            );
            if n == 10_000 {
                let verdict = if t < Duration::from_millis(200) {
                    "within"
                } else {
                    "OVER"
                };
                println!(
                    "         10,000 nodes in {:.1} ms: {verdict} the 200 ms goal",
                    ms(t)
                );
            }
        }
    }
    let peak = peak_rss()?;
    println!(
        "peak memory of the whole run (an upper bound for 10,000 nodes): {:.1} MiB ({} the 100 MiB goal)",
        mib(peak),
        if peak < 100 << 20 { "within" } else { "OVER" }
    );
    Ok(())
}
