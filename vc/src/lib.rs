//! vlx virtual clusters (VCs): sets of VMs booted from one guest image and
//! placed on the blades by a policy, with no master.
//!
//! * [`model`]: names, ids, policies, a VC's specification, blades.
//! * [`profile`]: VC profiles and blades files (TOML), every problem with
//!   file, line, column and key.
//! * [`place`](mod@place): pure, deterministic placement (Block/Cyclic × Strict/Free).
//! * [`show`]: the printed forms (text and JSON) of plans and states.
//! * [`etcd`]: a small etcd v3 client over its JSON gateway.
//! * [`state`]: the key layout in etcd and every change as one planned
//!   transaction (`docs/contracts.md` has the layout).
//! * [`cli`]: `vlx-vc`, one front door the binary dispatches to.
//! * [`agent`]: `vlx-vcd`, the agent of every blade: registration under a
//!   lease, the placer's election, reconciling its blade (planned, then
//!   executed), self-fencing.
//! * [`netreload`]: what the blade's daemons are told when `vlx-vcd`
//!   rewrites a VC network file (SIGHUP to the cluster dnsmasq,
//!   `exportfs -r` on the storage holder).
//! * [`vm`]: the VM executor: QEMU daemonized and driven over [`qmp`],
//!   overlays written by [`qcow2`], guest import.
//! * [`tiny`]: the tiny test guest; [`rig`]: the VC rig (`vlx-vc-rig`).
//!
//! Tests, by tier: pure unit and property tests (`placement_props`),
//! `plan_cli`; against a real etcd (`etcd_cli`); with real QEMU guests
//! (`vcd`, `blade_loss`, `fence`); the whole rig in network namespaces
//! (`rig`, needs root).

pub mod agent;
pub mod cli;
pub mod etcd;
pub mod failure;
pub mod model;
pub mod netreload;
pub mod place;
pub mod profile;
pub mod qcow2;
pub mod qmp;
pub mod rig;
pub mod show;
pub mod state;
pub mod tiny;
pub mod vm;

pub use model::{Blade, Fit, Policy, Restart, VcId, VcName, VcSpec, VmIndex, vm_mac};
pub use place::{Placement, Refusal, place};
