//! etcd on the blades, from the plan: which blades vote, where each voter
//! listens, the initial cluster and its token, the timers and the data
//! directory. Pure; the installer renders it per node.
//!
//! There is no master: a fixed, small set of voters (3 up to
//! [`FIVE_FROM`]` - 1` blades, 5 from [`FIVE_FROM`] on, or the profile's
//! `etcd.voters`: 3, 5 or 7) spread evenly over the blade list, so that
//! blades that sit together in the profile (one chassis, one rack) do not
//! all vote. Every other blade is a client of every voter.

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::name::NodeName;

/// Clusters of this many blades or more have 5 voters, smaller ones 3 (or
/// every blade, when there are fewer than 3): 5 voters survive two lost
/// blades, and more voters only slow every write down.
pub const FIVE_FROM: usize = 16;
/// The voter counts a profile may ask for (`etcd.voters`): odd, since an
/// even count survives no more lost voters than one fewer; at least 3, or
/// one lost blade stops every write; at most 7, etcd's own advice, since
/// every write waits for a majority of them.
pub const VOTER_CHOICES: [usize; 3] = [3, 5, 7];
/// etcd's client port (IANA).
pub const CLIENT_PORT: u16 = 2379;
/// etcd's peer port (IANA).
pub const PEER_PORT: u16 = 2380;
/// Where a voter keeps its data: on its snapshot root, which persists
/// across boots and is emptied by `reset-node`.
pub const DATA_DIR: &str = "/var/lib/etcd";
/// How many WAL files a member keeps (etcd's default is 5). etcd
/// preallocates each at 64 MB on the voter's root, whose file system has
/// only the host image's headroom free: 2 bound the log to ~128 MB. A file
/// is purged only once a snapshot covers it, so fewer files lose nothing.
pub const MAX_WALS: u32 = 2;
/// Where `vlx-vc` and `vlx-vcd` read the endpoints on every blade
/// (`docs/contracts.md`).
pub const ENDPOINTS_FILE: &str = "/etc/vlx/etcd.conf";

/// Milliseconds, for etcd's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Millis(pub u32);

impl Millis {
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ms", self.0)
    }
}

/// etcd's defaults (100 ms / 1 s), which suit a LAN of real machines.
pub mod defaults {
    use super::Millis;
    pub const HEARTBEAT: Millis = Millis(100);
    pub const ELECTION: Millis = Millis(1000);
    /// etcd refuses an election timeout above 50 s.
    pub const ELECTION_MAX: Millis = Millis(50_000);
    /// etcd refuses an election timeout under 5 heartbeats.
    pub const ELECTION_PER_HEARTBEAT: u32 = 5;
    /// etcd's `backend-batch-interval`: how long writes wait in memory
    /// (their WAL entry already synced) before the backend commits them.
    pub const BATCH: Millis = Millis(100);
}

fn default_batch() -> Millis {
    defaults::BATCH
}

/// The cluster's etcd, as every blade sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdPlan {
    /// `vlx-<cluster uuid>`: two clusters on one network never merge.
    pub token: String,
    #[serde(rename = "heartbeat_ms")]
    pub heartbeat: Millis,
    #[serde(rename = "election_ms")]
    pub election: Millis,
    /// The backend's commit interval (a plan written before it was
    /// planned reads as etcd's default).
    #[serde(rename = "batch_ms", default = "default_batch")]
    pub batch: Millis,
    pub data_dir: String,
    /// The voters, in plan order.
    pub voters: Vec<Voter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Voter {
    /// The blade's index in the plan.
    pub index: usize,
    /// The member's name: the blade's name.
    pub name: NodeName,
    pub peer_url: String,
    pub client_url: String,
}

/// What a plan written before etcd was planned reads as: no voters (so
/// `plan --diff` against it shows the voters a change brings).
impl Default for EtcdPlan {
    fn default() -> EtcdPlan {
        EtcdPlan {
            token: String::new(),
            heartbeat: defaults::HEARTBEAT,
            election: defaults::ELECTION,
            batch: defaults::BATCH,
            data_dir: DATA_DIR.to_owned(),
            voters: Vec::new(),
        }
    }
}

impl EtcdPlan {
    /// The voters among blades `nodes` (plan order, with their
    /// addresses): as many as [`voter_count`] gives for `wanted`.
    pub fn new(
        cluster: Uuid,
        nodes: &[(NodeName, Ipv4Addr)],
        wanted: Option<usize>,
        heartbeat: Millis,
        election: Millis,
    ) -> EtcdPlan {
        let voters = voter_indices(nodes.len(), voter_count(nodes.len(), wanted))
            .into_iter()
            .map(|i| voter(i, &nodes[i]))
            .collect();
        EtcdPlan {
            token: format!("vlx-{cluster}"),
            heartbeat,
            election,
            batch: defaults::BATCH,
            data_dir: DATA_DIR.to_owned(),
            voters,
        }
    }

    /// This plan's voters made to keep `installed`'s: a change of an
    /// installed cluster moves no voter that is still a blade (a move is
    /// a membership change of the running etcd, and adding a blade at the
    /// end of the list would otherwise shift the evenly spaced picks).
    /// Voters kept are those of `installed` still among `nodes` (plan
    /// order, with their addresses; this plan's blades), at most as many as
    /// this plan has;
    /// missing ones are taken from this plan's even spread, then from the
    /// first blades that do not vote yet. An install planned before etcd
    /// (no voters) keeps this plan's.
    pub fn keeping(self, installed: &EtcdPlan, nodes: &[(NodeName, Ipv4Addr)]) -> EtcdPlan {
        if installed.voters.is_empty() {
            return self;
        }
        let count = self.voters.len();
        let at = |name: &NodeName| nodes.iter().position(|(n, _)| n == name);
        let mut picked: Vec<usize> = installed
            .voters
            .iter()
            .filter_map(|v| at(&v.name))
            .take(count)
            .collect();
        let spread = self.voters.iter().map(|v| v.index);
        for i in spread.chain(0..nodes.len()) {
            if picked.len() >= count {
                break;
            }
            if !picked.contains(&i) {
                picked.push(i);
            }
        }
        picked.sort_unstable();
        EtcdPlan {
            voters: picked.into_iter().map(|i| voter(i, &nodes[i])).collect(),
            ..self
        }
    }

    /// `name=peer_url,…` for etcd's `initial-cluster`.
    pub fn initial_cluster(&self) -> String {
        self.voters
            .iter()
            .map(|v| format!("{}={}", v.name, v.peer_url))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every voter's client URL, in plan order: what every blade's
    /// `/etc/vlx/etcd.conf` lists.
    pub fn endpoints(&self) -> Vec<String> {
        self.voters.iter().map(|v| v.client_url.clone()).collect()
    }

    pub fn voter(&self, index: usize) -> Option<&Voter> {
        self.voters.iter().find(|v| v.index == index)
    }
}

/// Blade `index` (`name`, `ip`) as a voter.
fn voter(index: usize, (name, ip): &(NodeName, Ipv4Addr)) -> Voter {
    Voter {
        index,
        name: name.clone(),
        peer_url: format!("http://{ip}:{PEER_PORT}"),
        client_url: format!("http://{ip}:{CLIENT_PORT}"),
    }
}

/// The etcd of a profile whose blades are `nodes`.
pub(crate) fn plan(p: &crate::Profile, nodes: &[crate::NodePlan]) -> EtcdPlan {
    let blades: Vec<(NodeName, Ipv4Addr)> = nodes.iter().map(|n| (n.name.clone(), n.ip)).collect();
    EtcdPlan {
        batch: p.etcd.batch.value,
        ..EtcdPlan::new(
            p.cluster.uuid.value,
            &blades,
            p.etcd.voters.as_ref().map(|v| v.value),
            p.etcd.heartbeat.value,
            p.etcd.election.value,
        )
    }
}

/// How many of `blades` vote: `wanted` (one of [`VOTER_CHOICES`], from the
/// profile) or, without it, 3 below [`FIVE_FROM`] blades and 5 from it on.
/// Fewer blades than that: the largest odd count they have, or every blade
/// when there are fewer than 3.
pub fn voter_count(blades: usize, wanted: Option<usize>) -> usize {
    let wanted = wanted.unwrap_or(if blades >= FIVE_FROM { 5 } else { 3 });
    if blades < 3 {
        blades
    } else {
        wanted.min(blades - (1 - blades % 2))
    }
}

/// `count` voters' indices among `blades`, ascending: evenly spaced,
/// `floor(k * blades / count)`, so the first blade always votes and the
/// gaps between voters differ by at most one.
pub fn voter_indices(blades: usize, count: usize) -> Vec<usize> {
    let count = count.min(blades);
    (0..count).map(|k| k * blades / count).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<(NodeName, Ipv4Addr)> {
        (0..n)
            .map(|i| {
                let name: NodeName = format!("n{}", i + 1).parse().unwrap();
                (
                    name,
                    Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250 + 1) as u8),
                )
            })
            .collect()
    }

    #[test]
    fn three_voters_up_to_fifteen_five_from_sixteen() {
        assert_eq!(voter_count(1, None), 1);
        assert_eq!(voter_count(2, None), 2);
        assert_eq!(voter_count(3, None), 3);
        assert_eq!(voter_count(15, None), 3);
        assert_eq!(voter_count(16, None), 5);
        assert_eq!(voter_count(1000, None), 5);
    }

    #[test]
    fn a_profile_count_is_kept_while_the_blades_have_it() {
        assert_eq!(voter_count(16, Some(3)), 3);
        assert_eq!(voter_count(1000, Some(3)), 3);
        assert_eq!(voter_count(4, Some(5)), 3);
        assert_eq!(voter_count(5, Some(5)), 5);
        assert_eq!(voter_count(6, Some(7)), 5);
        assert_eq!(voter_count(7, Some(7)), 7);
        assert_eq!(voter_count(2, Some(7)), 2);
        assert_eq!(voter_count(1, Some(3)), 1);
    }

    #[test]
    fn voters_are_spread() {
        let spread = |n| voter_indices(n, voter_count(n, None));
        assert_eq!(spread(4), vec![0, 1, 2]);
        assert_eq!(spread(9), vec![0, 3, 6]);
        assert_eq!(spread(15), vec![0, 5, 10]);
        assert_eq!(spread(16), vec![0, 3, 6, 9, 12]);
        assert_eq!(spread(64), vec![0, 12, 25, 38, 51]);
        assert_eq!(voter_indices(16, 3), vec![0, 5, 10]);
        assert_eq!(voter_indices(70, 7), vec![0, 10, 20, 30, 40, 50, 60]);
    }

    fn names(p: &EtcdPlan) -> Vec<String> {
        p.voters.iter().map(|v| v.name.to_string()).collect()
    }

    fn planned(nodes: &[(NodeName, Ipv4Addr)]) -> EtcdPlan {
        EtcdPlan::new(Uuid::nil(), nodes, None, Millis(250), Millis(2500))
    }

    #[test]
    fn a_change_keeps_the_installed_voters_that_are_still_blades() {
        let four = nodes(4);
        let installed = planned(&four);
        assert_eq!(names(&installed), ["n1", "n2", "n3"]);
        // A fifth blade: the even spread alone would move n3's vote to n4.
        let five = nodes(5);
        assert_eq!(names(&planned(&five)), ["n1", "n2", "n4"]);
        let kept = planned(&five).keeping(&installed, &five);
        assert_eq!(names(&kept), ["n1", "n2", "n3"]);
        assert_eq!(kept.voter(2).unwrap().client_url, "http://10.0.0.3:2379");
        // n2 removed: n1 and n3 keep voting, one more comes from the spread.
        let without: Vec<_> = four
            .iter()
            .filter(|(n, _)| n.as_str() != "n2")
            .cloned()
            .collect();
        let kept = planned(&without).keeping(&installed, &without);
        assert_eq!(names(&kept), ["n1", "n3", "n4"]);
        assert_eq!(
            kept.voters.iter().map(|v| v.index).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        // Growing to 16 blades calls for 5 voters: the 3 stay.
        let sixteen = nodes(16);
        let kept = planned(&sixteen).keeping(&installed, &sixteen);
        assert_eq!(names(&kept), ["n1", "n2", "n3", "n4", "n7"]);
        // Shrinking to 15 calls for 3: the first 3 installed voters stay.
        let fifteen = nodes(15);
        let back = planned(&fifteen).keeping(&kept, &fifteen);
        assert_eq!(names(&back), ["n1", "n2", "n3"]);
        // A profile asking for 3 voters of 16 blades: the first 3
        // installed voters stay, none comes in.
        let three = EtcdPlan::new(Uuid::nil(), &sixteen, Some(3), Millis(250), Millis(2500));
        assert_eq!(names(&three), ["n1", "n6", "n11"]);
        assert_eq!(names(&three.keeping(&kept, &sixteen)), ["n1", "n2", "n3"]);
        // An install planned before etcd: the fresh plan's voters.
        let fresh = planned(&five);
        assert_eq!(fresh.clone().keeping(&EtcdPlan::default(), &five), fresh);
    }

    #[test]
    fn urls_and_initial_cluster_name_each_voter() {
        let plan = EtcdPlan::new(Uuid::nil(), &nodes(9), None, Millis(250), Millis(2500));
        assert_eq!(
            plan.initial_cluster(),
            "n1=http://10.0.0.1:2380,n4=http://10.0.0.4:2380,n7=http://10.0.0.7:2380"
        );
        assert_eq!(
            plan.endpoints(),
            vec![
                "http://10.0.0.1:2379",
                "http://10.0.0.4:2379",
                "http://10.0.0.7:2379"
            ]
        );
        assert_eq!(plan.token, "vlx-00000000-0000-0000-0000-000000000000");
        assert_eq!(plan.data_dir, "/var/lib/etcd");
        assert!(plan.voter(3).is_some() && plan.voter(1).is_none());
    }
}
