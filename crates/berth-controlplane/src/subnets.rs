//! Subnets for application networks, from a pool Berth owns (`--network-pool`, split into
//! `--network-prefix` subnets), instead of Docker's default address pools, which hold about 30
//! networks: the 31st application stayed pending with only a log line to say why.
//!
//! Rules it keeps:
//! - A subnet is recorded in the store before the network is created (desired state before the
//!   Docker call), and the store keys rows by subnet: one subnet is never handed out twice, a
//!   restart included.
//! - Several servers (and anything else) may share the engine and start from the same pool. A
//!   subnet that overlaps any existing Docker network's is skipped (a complete listing of every
//!   network, or no allocation at all); if the engine still refuses one as overlapping (another
//!   server won a race), the next is tried.
//! - A recorded subnet that no existing network uses any more is freed when the next allocation
//!   lists the engine, and a network's subnet is freed when the reconciler removes it.
//! - Allocation runs under `Inner::network_gate`, so this server never races itself.
//! - When no subnet is left, or the engine refuses, the error is the create step's: it is
//!   reported like any failed create, not only logged.

use crate::{CpError, Inner};
use berth_docker::NetworkSummary;
use berth_store::SubnetRecord;
use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

/// An IPv4 network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    addr: u32,
    len: u8,
}

impl Cidr {
    /// Parse `a.b.c.d/n`; `None` for anything else (IPv6 included) or host bits set.
    #[must_use]
    pub fn parse(s: &str) -> Option<Cidr> {
        let (ip, len) = s.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
        let c = Cidr {
            addr: u32::from(ip),
            len,
        };
        (c.addr & c.mask() == c.addr).then_some(c)
    }

    fn mask(self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - self.len)
        }
    }

    /// Whether the two share any address.
    #[must_use]
    pub fn overlaps(self, other: Cidr) -> bool {
        let m = self.mask() & other.mask(); // the shorter prefix's mask
        self.addr & m == other.addr & m
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.addr), self.len)
    }
}

/// The pool application networks' subnets come from: `pool` split into `/prefix` subnets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkPool {
    pool: Cidr,
    prefix: u8,
}

impl NetworkPool {
    /// The default `--network-pool`: inside 10.0.0.0/8, away from Docker's own default pools
    /// (172.17.0.0/16–172.31.0.0/16, 192.168.0.0/16).
    pub const DEFAULT_POOL: &'static str = "10.200.0.0/14";
    /// The default `--network-prefix`: /24 subnets (254 addresses each), 1024 of them in the
    /// default pool.
    pub const DEFAULT_PREFIX: u8 = 24;
    /// The longest prefix allowed: a /29 holds 6 addresses (5 containers and the gateway).
    pub const MAX_PREFIX: u8 = 29;

    /// Validate `--network-pool` and `--network-prefix`; the error is one line naming the flag.
    pub fn new(pool: &str, prefix: u8) -> Result<NetworkPool, String> {
        let Some(p) = Cidr::parse(pool) else {
            return Err(format!(
                "--network-pool {pool:?}: expected an IPv4 network in CIDR notation with no host bits set, e.g. {}",
                Self::DEFAULT_POOL
            ));
        };
        if prefix > Self::MAX_PREFIX {
            return Err(format!(
                "--network-prefix {prefix}: at most {} (a /{} network holds 6 addresses)",
                Self::MAX_PREFIX,
                Self::MAX_PREFIX
            ));
        }
        if prefix < p.len {
            return Err(format!(
                "--network-prefix {prefix}: shorter than the pool's /{} (--network-pool {pool}); a subnet must fit in the pool",
                p.len
            ));
        }
        Ok(NetworkPool { pool: p, prefix })
    }

    /// How many subnets the pool holds.
    #[must_use]
    pub fn capacity(&self) -> u64 {
        1u64 << (self.prefix - self.pool.len)
    }

    /// Every subnet of the pool, lowest first.
    pub fn subnets(&self) -> impl Iterator<Item = Cidr> + '_ {
        let step = 1u64 << (32 - self.prefix);
        (0..self.capacity()).map(move |i| Cidr {
            addr: u32::try_from(u64::from(self.pool.addr) + i * step).unwrap_or(u32::MAX),
            len: self.prefix,
        })
    }

    /// The first subnet that overlaps none of `used`.
    #[must_use]
    pub fn first_free(&self, used: &[Cidr]) -> Option<Cidr> {
        self.subnets()
            .find(|c| !used.iter().any(|u| u.overlaps(*c)))
    }
}

impl Default for NetworkPool {
    fn default() -> Self {
        NetworkPool::new(Self::DEFAULT_POOL, Self::DEFAULT_PREFIX).unwrap_or(NetworkPool {
            pool: Cidr {
                addr: 0x0AC8_0000,
                len: 14,
            },
            prefix: 24,
        })
    }
}

impl fmt::Display for NetworkPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in /{} subnets", self.pool, self.prefix)
    }
}

/// How many times a subnet the engine calls overlapping (a race with another server) is
/// followed by another try within one create.
const OVERLAP_RETRIES: usize = 32;

/// Create network `name` of `app` (Compose key `key`) on a subnet of the pool and return its
/// ID. The caller holds `Inner::network_gate`. A name that is taken comes back as
/// `DockerError::Conflict`, for the caller to judge.
pub(crate) async fn create_network(
    inner: &Inner,
    app: &str,
    key: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
    internal: bool,
) -> Result<String, CpError> {
    let pool = inner.config.network_pool;
    // Every network on the engine, not only ours: a partial listing could hand out a subnet in use.
    let all = inner.docker.list_networks(&[]).await?;
    let mut used: Vec<Cidr> = all
        .iter()
        .flat_map(NetworkSummary::subnets)
        .filter_map(Cidr::parse)
        .collect();
    for r in inner.store.subnets()? {
        match Cidr::parse(&r.subnet) {
            Some(c) if used.contains(&c) => {}
            _ => {
                tracing::info!(subnet = %r.subnet, app = %r.app, network = %r.name, "network gone; subnet freed");
                inner.store.free_subnet(&r.subnet)?;
            }
        }
    }
    let mut overlaps = 0;
    loop {
        let Some(subnet) = pool.first_free(&used) else {
            return Err(CpError::Network(format!(
                "cannot create network {name}: the network pool ({pool}) has no free subnet left; \
                 remove applications, or give the server a larger --network-pool or a longer --network-prefix"
            )));
        };
        used.push(subnet);
        let record = SubnetRecord {
            subnet: subnet.to_string(),
            app: app.into(),
            network: key.into(),
            name: name.into(),
        };
        if !inner.store.record_subnet(&record)? {
            continue; // recorded but its network not listed yet: never hand it out twice
        }
        match inner
            .docker
            .create_network_in(name, labels, internal, Some(&record.subnet))
            .await
        {
            Ok(id) => {
                tracing::debug!(app, network = name, subnet = %subnet, "network subnet allocated");
                return Ok(id);
            }
            Err(e) => {
                inner.store.free_subnet(&record.subnet)?;
                if e.is_address_overlap() && overlaps < OVERLAP_RETRIES {
                    // Taken since the listing (another server): try the next one.
                    overlaps += 1;
                    tracing::debug!(app, network = name, subnet = %subnet, "subnet taken meanwhile; trying the next");
                    continue;
                }
                return Err(e.into());
            }
        }
    }
}

/// Free the subnets of a network the reconciler removed.
pub(crate) fn forget(inner: &Inner, network: &NetworkSummary) {
    for s in network.subnets() {
        if let Err(e) = inner.store.free_subnet(s) {
            tracing::warn!(network = %network.name, error = %e, "cannot free a network's subnet");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        Cidr::parse(s).unwrap()
    }

    #[test]
    fn cidrs_parse_and_overlap() {
        assert_eq!(c("10.200.3.0/24").to_string(), "10.200.3.0/24");
        assert!(Cidr::parse("10.200.3.1/24").is_none(), "host bits");
        assert!(Cidr::parse("10.200.3.0/33").is_none());
        assert!(Cidr::parse("fd00::/64").is_none());
        assert!(Cidr::parse("10.200.3.0").is_none());
        assert!(c("10.0.0.0/8").overlaps(c("10.200.3.0/24")));
        assert!(c("10.200.3.0/24").overlaps(c("10.0.0.0/8")));
        assert!(!c("10.200.3.0/24").overlaps(c("10.200.4.0/24")));
        assert!(c("0.0.0.0/0").overlaps(c("192.168.0.0/16")));
    }

    #[test]
    fn flags_are_validated_in_one_line() {
        for (pool, prefix, says) in [
            ("10.200.0.0", 24, "--network-pool"),
            ("10.200.1.0/14", 24, "--network-pool"),
            ("nonsense/8", 24, "--network-pool"),
            ("10.200.0.0/14", 12, "shorter than the pool's /14"),
            ("10.200.0.0/14", 30, "at most 29"),
        ] {
            let e = NetworkPool::new(pool, prefix).unwrap_err();
            assert!(e.contains(says), "{pool} /{prefix}: {e}");
            assert!(!e.contains('\n'));
        }
        let p = NetworkPool::new("10.200.0.0/14", 24).unwrap();
        assert_eq!(p, NetworkPool::default());
        assert!(
            p.capacity() >= 1000,
            "the default holds a thousand networks"
        );
        assert_eq!(NetworkPool::new("10.9.0.0/16", 16).unwrap().capacity(), 1);
    }

    #[test]
    fn the_default_pool_avoids_dockers_default_pools() {
        let p = NetworkPool::default();
        let docker = [c("172.16.0.0/12"), c("192.168.0.0/16")];
        assert!(p.subnets().all(|s| docker.iter().all(|d| !d.overlaps(s))));
    }

    #[test]
    fn first_free_skips_used_and_overlapping_subnets() {
        let p = NetworkPool::new("10.9.0.0/22", 24).unwrap();
        assert_eq!(p.first_free(&[]), Some(c("10.9.0.0/24")));
        assert_eq!(p.first_free(&[c("10.9.0.0/24")]), Some(c("10.9.1.0/24")));
        // Another network's /23 covers two of ours.
        assert_eq!(
            p.first_free(&[c("10.9.0.0/23"), c("10.9.2.128/25")]),
            Some(c("10.9.3.0/24"))
        );
        assert_eq!(p.first_free(&[c("10.0.0.0/8")]), None);
        let all: Vec<Cidr> = p.subnets().collect();
        assert_eq!(all.len(), 4);
        assert_eq!(p.first_free(&all), None);
    }
}
