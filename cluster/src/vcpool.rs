//! `[vc]`: the pool virtual clusters take their subnets from, as the cluster
//! profile declares it, and the rules every VC subnet follows (private,
//! at most a /30). The VC networks themselves are planned by `vc-net`,
//! which takes these rules from here, so that the profile's check and a
//! VC's cannot drift apart.
//!
//! ```toml
//! [vc]
//! subnet_pool = "10.200.0.0/16"   # VC subnets are taken from here
//! prefix = 24                      # the size of each (default 24)
//! ```

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::diag::{At, Report};
use crate::net::Ipv4Net;
use crate::read::Tbl;

/// The private ranges of RFC 1918: a VC subnet must lie in one of them, so a
/// VC never takes addresses that mean something outside the cluster.
pub const PRIVATE: [(Ipv4Addr, u8); 3] = [
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
];

/// The longest VC prefix: a /30 holds the gateway and one VM; a /31 or /32
/// would hold no VM beside its gateway.
pub const MAX_PREFIX: u8 = 30;

/// The prefix of pool subnets when the profile does not say.
pub const DEFAULT_PREFIX: u8 = 24;

/// True when the two networks share at least one address.
pub fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(b.network()) || b.contains(a.network())
}

/// True when `net` lies inside one of the [`PRIVATE`] ranges.
pub fn is_private(net: Ipv4Net) -> bool {
    PRIVATE.iter().any(|&(a, p)| {
        Ipv4Net::new(a, p).is_some_and(|r| r.prefix() <= net.prefix() && r.contains(net.network()))
    })
}

/// The profile's `[vc]` table, each value with its place.
#[derive(Debug, Clone)]
pub struct VcPool {
    pub subnet_pool: At<Ipv4Net>,
    pub prefix: At<u8>,
}

/// The pool as the plan records it (`plan.json`, key `vc`), and as the
/// installer renders it for `vlx-vc set-net` (`/etc/vlx/vc-net.toml`,
/// table `[pool]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VcPoolPlan {
    pub subnet_pool: Ipv4Net,
    pub prefix: u8,
}

impl VcPool {
    pub fn plan(&self) -> VcPoolPlan {
        VcPoolPlan {
            subnet_pool: self.subnet_pool.value,
            prefix: self.prefix.value,
        }
    }
}

/// Parses `[vc]` (absent: `Ok(None)`, VCs then name their subnets); checks
/// what the table alone decides: the pool is private, its prefix fits.
pub(crate) fn parse(rep: &mut Report<'_>, root: &Tbl<'_, '_>) -> Result<Option<VcPool>, ()> {
    if !root.has("vc") {
        return Ok(None);
    }
    let t = root.table(rep, "vc").ok_or(())?;
    t.check_keys(rep, &["subnet_pool", "prefix"]);
    let pool = t.req_parsed::<Ipv4Net>(
        rep,
        "subnet_pool",
        "the private range VC subnets are taken from, e.g. subnet_pool = \"10.200.0.0/16\"",
    );
    let prefix = if t.has("prefix") {
        let v = t.integer(rep, "prefix").ok_or(())?;
        match u8::try_from(*v) {
            Ok(p) if p <= 32 => v.with(p),
            _ => {
                rep.error(
                    &v.span,
                    &v.key,
                    format!("{} is not a prefix length", *v),
                    Some(format!("write a number up to {MAX_PREFIX}, e.g. 24")),
                );
                return Err(());
            }
        }
    } else {
        At::new(DEFAULT_PREFIX, t.span(), t.key_path("prefix"))
    };
    let pool = pool.ok_or(())?;
    let mut ok = true;
    if !is_private(pool.value) {
        rep.error(
            &pool.span,
            &pool.key,
            format!("the VC subnet pool {} is not private", pool.value),
            Some("use a range inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16".into()),
        );
        ok = false;
    }
    if prefix.value < pool.value.prefix() || prefix.value > MAX_PREFIX {
        rep.error(
            &prefix.span,
            &prefix.key,
            format!(
                "VC subnets of /{} do not fit the pool {}",
                prefix.value, pool.value
            ),
            Some(format!(
                "write a prefix from {} (the pool's own) to {MAX_PREFIX} (a gateway and one VM)",
                pool.value.prefix()
            )),
        );
        ok = false;
    }
    if !ok {
        return Err(());
    }
    Ok(Some(VcPool {
        subnet_pool: pool,
        prefix,
    }))
}
