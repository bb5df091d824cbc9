//! Environment quotas (docs/environments.md#quotas): what an environment's applications may
//! use in all, `berth env create --cpus N --memory SIZE`.
//!
//! Rules it keeps:
//! - A revision's use is the sum over its services of `deploy.resources.limits` × replicas; a
//!   service without a limit counts [`DEFAULT_CPUS_MILLI`] / [`DEFAULT_MEMORY`] per replica
//!   (documented), so a quota cannot be dodged by leaving limits out.
//! - Checked when a revision is committed (apply, scale, rollback, release, clone), against the
//!   current revisions of the environment's other applications, before anything starts:
//!   `quota_exceeded` names the service and the numbers.

use crate::error::CpError;
use crate::spec::RevisionSpec;
use crate::ControlPlane;
use berth_core::team::{self, DEV_ENV};

/// A service without `resources.limits.cpus` counts half a CPU per replica.
pub const DEFAULT_CPUS_MILLI: i64 = 500;
/// A service without `resources.limits.memory` counts 256 MiB per replica.
pub const DEFAULT_MEMORY: i64 = 256 * 1024 * 1024;

/// `--cpus N` in thousandths (more than 0, at most 4096).
pub fn parse_cpus(cpus: f64) -> Result<i64, CpError> {
    if !(cpus.is_finite() && cpus > 0.0 && cpus <= 4096.0) {
        return Err(CpError::InvalidArgument(format!(
            "invalid --cpus {cpus}: use a number of CPUs above 0 (e.g. 2 or 0.5)"
        )));
    }
    // In range by the check above.
    #[allow(clippy::cast_possible_truncation)]
    Ok((cpus * 1000.0).round() as i64)
}

/// `--memory SIZE` in bytes (at least 4 MiB).
pub fn parse_memory(text: &str) -> Result<i64, CpError> {
    let bytes = berth_compose::parse_memory(text.trim())
        .map_err(|m| CpError::InvalidArgument(format!("invalid --memory: {m}")))?;
    if bytes < 4 * 1024 * 1024 {
        return Err(CpError::InvalidArgument(format!(
            "invalid --memory {text:?}: at least 4M"
        )));
    }
    Ok(bytes)
}

/// One service's use: (thousandths of a CPU, bytes), for all its replicas.
fn service_use(svc: &berth_compose::Service) -> (i64, i64) {
    let n = i64::from(svc.replicas);
    let limits = &svc.resources;
    // `cpus` was validated by the Compose loader (finite, non-negative).
    #[allow(clippy::cast_possible_truncation)]
    let cpus = limits
        .cpus
        .map_or(DEFAULT_CPUS_MILLI, |c| (c * 1000.0).round() as i64);
    let mem = limits.memory_bytes.unwrap_or(DEFAULT_MEMORY);
    (cpus.saturating_mul(n), mem.saturating_mul(n))
}

fn spec_use(spec: &RevisionSpec) -> (i64, i64) {
    spec.project
        .services
        .values()
        .map(service_use)
        .fold((0, 0), |(c, m), (a, b)| {
            (c.saturating_add(a), m.saturating_add(b))
        })
}

fn cpus_text(milli: i64) -> String {
    if milli % 1000 == 0 {
        format!("{}", milli / 1000)
    } else {
        format!("{}.{:03}", milli / 1000, milli % 1000)
            .trim_end_matches('0')
            .to_string()
    }
}

fn mem_text(bytes: i64) -> String {
    const MIB: i64 = 1024 * 1024;
    if bytes % (1024 * MIB) == 0 {
        format!("{}GiB", bytes / (1024 * MIB))
    } else {
        format!("{}MiB", bytes / MIB)
    }
}

impl ControlPlane {
    /// `quota_exceeded` unless `spec` fits `app`'s environment's quota with the environment's
    /// other applications as they are now.
    pub(crate) fn check_quota(&self, app: &str, spec: &RevisionSpec) -> Result<(), CpError> {
        let (t, env, _) = team::split_app(app);
        if env == DEV_ENV {
            return Ok(());
        }
        let Some(e) = self.inner.store.env(t, env)? else {
            return Ok(());
        };
        if e.cpus_milli.is_none() && e.memory_bytes.is_none() {
            return Ok(());
        }
        let (mut other_cpus, mut other_mem) = (0i64, 0i64);
        for (other, ospec) in self.current_specs()? {
            let (ot, oenv, _) = team::split_app(&other);
            if other != app && ot == t && oenv == env {
                let (c, m) = spec_use(&ospec);
                other_cpus = other_cpus.saturating_add(c);
                other_mem = other_mem.saturating_add(m);
            }
        }
        let (cpus, mem) = spec_use(spec);
        // The service that uses the most of what is short is the one the message names.
        let biggest = |f: fn(&(i64, i64)) -> i64| {
            spec.project
                .services
                .iter()
                .map(|(n, s)| (n, s, service_use(s)))
                .max_by_key(|(_, _, u)| f(u))
        };
        if let Some(limit) = e.cpus_milli {
            if cpus.saturating_add(other_cpus) > limit {
                let detail = biggest(|u| u.0).map_or_else(String::new, |(n, s, u)| {
                    format!(
                        "services.{n}: {} replica(s) × {} CPU = {} CPU{}; ",
                        s.replicas,
                        cpus_text(u.0 / i64::from(s.replicas.max(1))),
                        cpus_text(u.0),
                        if s.resources.cpus.is_none() {
                            " (no limit set: counted at the default 0.5)"
                        } else {
                            ""
                        }
                    )
                });
                return Err(CpError::QuotaExceeded(format!(
                    "{detail}the application needs {} CPU and the environment's other applications use {}, over environment {env:?}'s quota of {} CPU",
                    cpus_text(cpus),
                    cpus_text(other_cpus),
                    cpus_text(limit)
                )));
            }
        }
        if let Some(limit) = e.memory_bytes {
            if mem.saturating_add(other_mem) > limit {
                let detail = biggest(|u| u.1).map_or_else(String::new, |(n, s, u)| {
                    format!(
                        "services.{n}: {} replica(s) × {} = {}{}; ",
                        s.replicas,
                        mem_text(u.1 / i64::from(s.replicas.max(1))),
                        mem_text(u.1),
                        if s.resources.memory_bytes.is_none() {
                            " (no limit set: counted at the default 256MiB)"
                        } else {
                            ""
                        }
                    )
                });
                return Err(CpError::QuotaExceeded(format!(
                    "{detail}the application needs {} of memory and the environment's other applications use {}, over environment {env:?}'s quota of {}",
                    mem_text(mem),
                    mem_text(other_mem),
                    mem_text(limit)
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{cpus_text, mem_text, parse_cpus, parse_memory};

    #[test]
    fn quota_figures_parse_and_print() {
        assert_eq!(parse_cpus(2.0).unwrap(), 2000);
        assert_eq!(parse_cpus(0.25).unwrap(), 250);
        assert!(parse_cpus(0.0).is_err() && parse_cpus(f64::NAN).is_err());
        assert_eq!(parse_memory("1g").unwrap(), 1 << 30);
        assert_eq!(parse_memory("512M").unwrap(), 512 << 20);
        assert!(parse_memory("1k").is_err() && parse_memory("lots").is_err());
        assert_eq!(cpus_text(2500), "2.5");
        assert_eq!(cpus_text(3000), "3");
        assert_eq!(mem_text(1 << 30), "1GiB");
        assert_eq!(mem_text(768 << 20), "768MiB");
    }
}
