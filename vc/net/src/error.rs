//! Errors of the model: all of them are bad input (exit 2).

use cluster::{Ipv4Net, MacAddr};

/// What is wrong with a VC network request or a placement. Each names the
/// subnet, VC, VM or blade concerned and, for an overlap, what it overlaps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("{file}: [vc]: {detail}")]
    Profile { file: String, detail: String },
    #[error("{file}: [vc] subnet_pool = \"{pool}\": {reason}")]
    Pool {
        file: String,
        pool: Ipv4Net,
        reason: String,
    },
    #[error(
        "the VC subnet pool {pool} is exhausted: no free /{prefix} is left beside the cluster's networks and the {taken} VC subnet(s) in use (destroy a VC, or give the new one a subnet outside the pool)"
    )]
    PoolExhausted {
        pool: Ipv4Net,
        prefix: u8,
        taken: usize,
    },
    #[error("subnet {subnet} of VC {vc} overlaps {what} ({other})")]
    Overlap {
        vc: String,
        subnet: Ipv4Net,
        what: String,
        other: Ipv4Net,
    },
    #[error(
        "subnet {subnet} of VC {vc} is not private: use a subnet inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16"
    )]
    NotPrivate { vc: String, subnet: Ipv4Net },
    #[error(
        "subnet {subnet} of VC {vc} is too small: a VC needs at least a /30 (its gateway and one VM)"
    )]
    TooSmall { vc: String, subnet: Ipv4Net },
    #[error(
        "VC {vc} asks for {asked} addresses but its subnet {subnet} holds {holds} VMs (its host addresses less the gateway)"
    )]
    TooManyVms {
        vc: String,
        subnet: Ipv4Net,
        asked: u64,
        holds: u64,
    },
    #[error(
        "{what} name `{name}` is not a DNS label (lowercase letters, digits and `-`, up to 63)"
    )]
    BadName { what: &'static str, name: String },
    #[error("{what} {name} appears twice")]
    Duplicate { what: &'static str, name: String },
    #[error("VM {vm} has the multicast MAC {mac}")]
    BadMac { vm: String, mac: MacAddr },
    #[error("VM {vm} runs on blade `{blade}`, which is not in the blade list")]
    UnknownBlade { vm: String, blade: String },
    #[error("no blade `{0}` in the plan")]
    NoSuchBlade(String),
    #[error("no VC `{0}` in the plan")]
    NoSuchVc(String),
    #[error("no VM `{0}` in the plan")]
    NoSuchVm(String),
    #[error("VC {vc} has {vms} VMs but its groups give roles to {roles}")]
    RoleCount {
        vc: String,
        vms: usize,
        roles: usize,
    },
}

impl NetError {
    /// The process exit code a front end gives this error: 2, bad input.
    pub fn exit_code(&self) -> i32 {
        2
    }
}
