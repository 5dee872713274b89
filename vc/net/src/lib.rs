//! Virtual-cluster networks, the seed's routed design (as Calico routes
//! workloads): every blade is the router of the VMs it runs, no overlay, no
//! master.
//!
//! - [`subnet`] and [`model`]: VC subnets (given at creation, or the first free block of
//!   the profile's `[vc] subnet_pool`), never overlapping the cluster's own
//!   networks or another VC; per-VM addresses in index order (the VC's first
//!   host is its gateway, its VMs take the hosts after it); validation of a
//!   placement given as plain data ([`NetInput`]) into a [`NetPlan`].
//! - [`render`]: one blade's part of the plan as text: its /32 routes, its
//!   nftables ruleset, its dnsmasq config, and the NFS export lines.
//! - [`table`]: the VC's table (a role per VM, every VM's name and
//!   address, the frontend, a shared key) as the context of per-VM overlay
//!   templates.
//! - [`apply`]: the executor that puts one blade's part in place inside a
//!   network namespace (or the blade's own), idempotently.
//!
//! Planning is pure and deterministic: the same input gives the same plan
//! and the same text, byte for byte.

pub mod apply;
pub mod cli;
pub mod error;
pub mod model;
pub mod render;
pub mod subnet;
pub mod table;

pub use error::NetError;
pub use model::{
    Blade, BladeNet, LocalVm, NamedNet, NetInput, NetPlan, Route, SubnetPool, VcInput, VcNet,
    VmInput, VmNet,
};
