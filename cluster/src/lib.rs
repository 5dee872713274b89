//! The vlx cluster model.
//!
//! A cluster profile (TOML) goes in; a [`Plan`] comes out: the node table,
//! the SAN layout with its GPT, the services every node runs and the one
//! kernel command line every blade boots. Everything here is pure: the only
//! input is the profile text, the SAN's size, and an [`Env`] that says
//! whether named files exist. The installer and the node agent both use
//! this crate, so they cannot disagree about where a volume lives.

pub mod diag;
pub mod diff;
pub mod etcd;
pub mod gpt;
pub mod layout;
pub mod locate;
pub mod name;
pub mod net;
pub mod nodelist;
pub mod plan;
pub mod profile;
mod read;
mod show;
pub mod slots;
pub mod typed;
pub mod units;
pub mod validate;
pub mod vcpool;

pub use diag::{Diagnostic, Diagnostics, Source};
pub use layout::{DiskLayout, Partition, Role};
pub use locate::{GptVolumes, Locate, Located, PoolVolumes, Volumes};
pub use name::NodeName;
pub use net::{Ipv4Net, MacAddr};
pub use plan::{NodePlan, Plan, SanFacts, Service, load};
pub use profile::{Env, FsEnv, Profile, Trusting};
pub use units::{Bytes, Lba, SectorSize};
