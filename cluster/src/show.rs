//! The plan as readable tables, for `vlx-install plan`.

use std::fmt;

use crate::layout::Role;
use crate::plan::Plan;
use crate::profile::{Firmware, Layout, Transport};

/// Writes rows as left-aligned columns, two spaces apart.
fn table(f: &mut fmt::Formatter<'_>, rows: &[Vec<String>]) -> fmt::Result {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        writeln!(f, "{}", line.trim_end())?;
    }
    Ok(())
}

fn role_name(r: &Role) -> &'static str {
    match r {
        Role::Esp => "esp",
        Role::Meta => "meta",
        Role::Origin => "origin",
        Role::OriginB => "origin-b",
        Role::Cow { .. } => "cow",
        Role::Swap { .. } => "swap",
        Role::Shared => "shared",
        Role::Pool => "pool",
        Role::Payload => "payload",
        Role::Record { .. } => "record",
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.disk;
        writeln!(
            f,
            "cluster {} ({}), domain {}",
            self.cluster.name, self.cluster.uuid, self.cluster.domain
        )?;
        let transport = match &self.san.transport {
            Transport::Disk => "disk".to_owned(),
            Transport::Iscsi(i) => format!(
                "iscsi {}:{} target {}",
                i.storage_ip, i.storage_port, i.ivid
            ),
        };
        writeln!(
            f,
            "SAN {} ({} sectors of {} B), {} partition entries, transport {transport}",
            d.size, d.lbas, d.sector_size, d.entries
        )?;
        writeln!(f, "\nNodes ({}):", self.nodes.len())?;
        let mut rows = vec![
            ["NODE", "MAC", "IP", "COW", "SWAP", "VRRP"]
                .map(String::from)
                .to_vec(),
        ];
        for n in &self.nodes {
            let mut ips = n.ip.to_string();
            for x in &n.extra_ips {
                ips.push_str(&format!(" {}={}", x.network, x.ip));
            }
            let vrrp: Vec<String> = n
                .vrrp
                .iter()
                .map(|v| {
                    format!(
                        "{}:{}{}",
                        v.vip,
                        v.priority,
                        if v.master { "*" } else { "" }
                    )
                })
                .collect();
            rows.push(vec![
                n.name.to_string(),
                n.macs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                ips,
                n.cow.clone(),
                n.swap.clone().unwrap_or_else(|| "-".into()),
                if vrrp.is_empty() {
                    "-".into()
                } else {
                    vrrp.join(" ")
                },
            ]);
        }
        table(f, &rows)?;
        writeln!(f, "(VRRP: vip:priority, * = starts as master)")?;

        writeln!(f, "\nPartitions ({}):", d.partitions.len())?;
        let mut rows = vec![
            ["#", "LABEL", "ROLE", "FIRST LBA", "LAST LBA", "SIZE"]
                .map(String::from)
                .to_vec(),
        ];
        for p in &d.partitions {
            rows.push(vec![
                p.number.to_string(),
                p.label.clone(),
                role_name(&p.role).into(),
                p.first_lba.to_string(),
                p.last_lba.to_string(),
                p.size.to_string(),
            ]);
        }
        table(f, &rows)?;
        if let (Layout::Pool, Some(pool)) = (self.san.layout, &d.pool) {
            let total = pool
                .extents
                .iter()
                .fold(0u64, |acc, e| acc.saturating_add(e.size.get()));
            writeln!(
                f,
                "vlx-pool holds {} extents (the snapshot stores and swap of {} nodes), {} in all, aligned to {}; their offsets are in plan.json",
                pool.extents.len(),
                self.nodes.len(),
                crate::units::Bytes(total),
                pool.align
            )?;
        }

        let services: Vec<_> = self
            .nodes
            .first()
            .map(|n| n.services.iter().map(|s| s.name()).collect())
            .unwrap_or_default();
        writeln!(
            f,
            "\nServices on every node: {}",
            if services.is_empty() {
                "none".into()
            } else {
                services.join(" ")
            }
        )?;
        for v in &self.network.vips {
            writeln!(f, "VIP {} (VRRP router id {})", v.address, v.vrid)?;
        }
        let e = &self.etcd;
        let voters: Vec<&str> = e.voters.iter().map(|v| v.name.as_str()).collect();
        writeln!(
            f,
            "etcd voters: {} (heartbeat {}, election {}, batch {}); the other nodes are clients",
            if voters.is_empty() {
                "none".into()
            } else {
                voters.join(" ")
            },
            e.heartbeat,
            e.election,
            e.batch
        )?;
        if let Some(vc) = &self.vc {
            writeln!(f, "VC subnets: /{} from {}", vc.prefix, vc.subnet_pool)?;
        }
        let fw = match self.boot.firmware {
            Firmware::Uefi => "UEFI",
            Firmware::Bios => "BIOS",
            Firmware::Both => "UEFI and BIOS",
        };
        writeln!(f, "Boot ({fw}), every blade: {}", self.boot.cmdline)
    }
}
