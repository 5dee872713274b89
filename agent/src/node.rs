//! Knowing oneself: the cluster table from `vlx-meta` and the blade's MACs.

use cluster::plan::PlanFormatError;
use cluster::profile::Layout;
use cluster::{MacAddr, NodePlan, Plan};
use uuid::Uuid;

/// Where the cluster table lives on `vlx-meta`.
pub const PLAN_FILE: &str = contracts::names::meta::PLAN;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{PLAN_FILE} on vlx-meta is unreadable: {0}")]
    Format(#[source] PlanFormatError),
    #[error(
        "{PLAN_FILE} on vlx-meta belongs to cluster {plan}, but the kernel command line says vlx.cluster={cmdline}"
    )]
    OtherCluster { plan: Uuid, cmdline: Uuid },
    #[error("{PLAN_FILE} on vlx-meta says the pool layout but holds no pool table")]
    NoPoolTable,
    #[error("no node of cluster {cluster} has any of this blade's MACs ({})", mac_list(.seen))]
    UnknownMac { cluster: Uuid, seen: Vec<MacAddr> },
}

fn mac_list(macs: &[MacAddr]) -> String {
    if macs.is_empty() {
        return "it has no network interface".to_owned();
    }
    macs.iter()
        .map(MacAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads `plan.json` and checks that it is the command line's cluster, and
/// that a pool layout comes with its table.
pub fn read_plan(text: &str, cluster: Uuid) -> Result<Plan, NodeError> {
    let plan = Plan::from_json(text).map_err(NodeError::Format)?;
    if plan.cluster.uuid != cluster {
        return Err(NodeError::OtherCluster {
            plan: plan.cluster.uuid,
            cmdline: cluster,
        });
    }
    if plan.san.layout == Layout::Pool && plan.disk.pool.is_none() {
        return Err(NodeError::NoPoolTable);
    }
    Ok(plan)
}

/// Reads one `/sys/class/net/*/address`; `None` for what is not a NIC's
/// MAC (the loopback's zeros, InfiniBand's 20-byte addresses, multicast).
pub fn parse_mac(text: &str) -> Option<MacAddr> {
    let mac: MacAddr = text.trim().parse().ok()?;
    (mac.0 != [0; 6] && !mac.is_multicast()).then_some(mac)
}

/// The node owning one of `macs`.
pub fn find<'a>(plan: &'a Plan, macs: &[MacAddr]) -> Result<&'a NodePlan, NodeError> {
    plan.node_by_mac(macs).ok_or_else(|| NodeError::UnknownMac {
        cluster: plan.cluster.uuid,
        seen: macs.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::plan;

    fn mac(s: &str) -> MacAddr {
        s.parse().unwrap()
    }

    #[test]
    fn finds_the_node_by_any_of_its_macs() {
        let plan = plan(512);
        let cases: &[(&[&str], Option<&str>)] = &[
            (&["52:54:00:77:00:01"], Some("n1")),
            (&["02:00:00:00:00:09", "52:54:00:77:00:03"], Some("n3")),
            (&["52:54:00:77:00:02", "52:54:00:77:00:03"], Some("n2")),
            (&["52:54:00:77:00:04"], None),
            (&[], None),
        ];
        for (macs, want) in cases {
            let macs: Vec<MacAddr> = macs.iter().map(|m| mac(m)).collect();
            let got = find(&plan, &macs).map(|n| n.name.as_str().to_owned());
            match want {
                Some(name) => assert_eq!(got.unwrap(), *name),
                None => {
                    let text = got.unwrap_err().to_string();
                    assert!(text.contains(&plan.cluster.uuid.to_string()), "{text}");
                    for m in &macs {
                        assert!(text.contains(&m.to_string()), "{text}");
                    }
                }
            }
        }
    }

    #[test]
    fn reads_only_this_clusters_plan() {
        let p = plan(4096);
        let json = p.to_json();
        assert_eq!(read_plan(&json, p.cluster.uuid).unwrap(), p);
        let other = Uuid::from_u128(42);
        let err = read_plan(&json, other).unwrap_err().to_string();
        assert!(err.contains(&other.to_string()) && err.contains(&p.cluster.uuid.to_string()));
        let err = read_plan("{\"format\": 9}", p.cluster.uuid).unwrap_err();
        assert!(err.to_string().contains("format 9"), "{err}");
        let err = read_plan("not json", p.cluster.uuid).unwrap_err();
        assert!(matches!(err, NodeError::Format(_)));
    }

    #[test]
    fn refuses_a_pool_layout_without_its_table() {
        let mut p = plan(512);
        p.san.layout = Layout::Pool;
        let err = read_plan(&p.to_json(), p.cluster.uuid).unwrap_err();
        assert!(matches!(err, NodeError::NoPoolTable), "{err}");
    }

    #[test]
    fn reads_nic_addresses_only() {
        for (text, want) in [
            ("52:54:00:12:34:56\n", Some("52:54:00:12:34:56")),
            ("00:00:00:00:00:00\n", None),
            ("01:00:5e:00:00:01\n", None),
            (
                "80:00:02:08:fe:80:00:00:00:00:00:00:00:02:c9:03:00:0a:bb:cc\n",
                None,
            ),
            ("", None),
        ] {
            assert_eq!(parse_mac(text), want.map(mac), "{text}");
        }
    }
}
