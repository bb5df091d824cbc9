//! Image retention and image alerts: the pure decisions (which version images to remove, when
//! an alert is raised or cleared). The pass that lists the engine and acts is in [`crate::images`];
//! see `docs/architecture.md` ("Image retention").
//!
//! Rules [`plan`] keeps, per service, over its versions newest first:
//! - an image that an application runs now (**deployed**) or that a converged revision pins
//!   (**rollback target**) is kept, whatever its age;
//! - the newest `keep` versions are kept (counted over version records, present or not, so the
//!   set kept does not shift when an image vanishes behind Berth's back);
//! - an image restored by `berth image restore` within [`RESTORE_GRACE`] is kept, so it can be
//!   deployed before the next pass removes it again;
//! - everything else that is on the engine is removed; a version whose image is not on the
//!   engine needs nothing.
//!
//! Digests decide pins: two versions with the same image ID are both kept when it is pinned.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// How long a restored image is protected from retention.
pub const RESTORE_GRACE: Duration = Duration::from_secs(3600);

/// One version of a service, as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The version name.
    pub version: String,
    /// Its image ID.
    pub digest: String,
    /// Its tag points at its image on the engine (per the pass's full listing).
    pub on_engine: bool,
    /// Restored less than [`RESTORE_GRACE`] ago.
    pub restored_recently: bool,
}

/// Why an image stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepReason {
    /// An application's current revision runs it.
    Deployed,
    /// A converged revision pins it.
    RollbackTarget,
    /// Among the newest `keep` versions.
    Newest,
    /// Restored recently.
    Restored,
}

/// What to do with one version's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Leave it.
    Keep(KeepReason),
    /// Remove it (untag `berth/NAME:VERSION`; the engine refuses while a container uses it).
    Remove,
    /// It is not on the engine: nothing to do.
    Gone,
}

/// The verdict for each candidate (same order). `candidates` are newest first.
#[must_use]
pub fn plan(
    candidates: &[Candidate],
    keep: usize,
    deployed: &HashSet<String>,
    targets: &HashSet<String>,
) -> Vec<Verdict> {
    candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if !c.on_engine {
                Verdict::Gone
            } else if deployed.contains(&c.digest) {
                Verdict::Keep(KeepReason::Deployed)
            } else if targets.contains(&c.digest) {
                Verdict::Keep(KeepReason::RollbackTarget)
            } else if i < keep {
                Verdict::Keep(KeepReason::Newest)
            } else if c.restored_recently {
                Verdict::Keep(KeepReason::Restored)
            } else {
                Verdict::Remove
            }
        })
        .collect()
}

/// A threshold crossing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// The value went above the threshold (it was not before).
    Raised,
    /// The value is back at or below the threshold.
    Cleared,
}

/// The edge, if any, given whether the alert is active and the value now. "Passes" means
/// strictly above.
#[must_use]
pub fn edge(active: bool, value: u64, threshold: u64) -> Option<Edge> {
    match (active, value > threshold) {
        (false, true) => Some(Edge::Raised),
        (true, false) => Some(Edge::Cleared),
        _ => None,
    }
}

/// Which alerts are active, by key (e.g. `disk`, `count:web`): an alert is raised once per
/// crossing, not on every pass.
#[derive(Debug, Default)]
pub struct Alerts {
    active: HashMap<String, bool>,
}

impl Alerts {
    /// Record the value of `key`; returns the edge to report, if any.
    pub fn update(&mut self, key: &str, value: u64, threshold: u64) -> Option<Edge> {
        let active = self.active.get(key).copied().unwrap_or(false);
        let e = edge(active, value, threshold);
        match e {
            Some(Edge::Raised) => {
                self.active.insert(key.to_string(), true);
            }
            Some(Edge::Cleared) => {
                self.active.remove(key);
            }
            None => {}
        }
        e
    }
}

/// `1.5 GiB`, `300.0 MiB`, `512 B`.
#[must_use]
#[allow(clippy::cast_precision_loss)] // a display value
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use KeepReason::*;
    use Verdict::*;

    fn c(version: &str, digest: &str, on_engine: bool) -> Candidate {
        Candidate {
            version: version.into(),
            digest: digest.into(),
            on_engine,
            restored_recently: false,
        }
    }

    fn set(items: &[&str]) -> HashSet<String> {
        items.iter().map(|s| (*s).to_string()).collect()
    }

    /// (case, candidates newest first, keep, deployed, targets, expected)
    type Case = (
        &'static str,
        Vec<Candidate>,
        usize,
        HashSet<String>,
        HashSet<String>,
        Vec<Verdict>,
    );

    #[test]
    fn retention_table() {
        let cases: Vec<Case> = vec![
            (
                "nothing pinned: the newest N stay",
                vec![
                    c("v4", "d4", true),
                    c("v3", "d3", true),
                    c("v2", "d2", true),
                    c("v1", "d1", true),
                ],
                2,
                set(&[]),
                set(&[]),
                vec![Keep(Newest), Keep(Newest), Remove, Remove],
            ),
            (
                "an old deployed version and a rollback target stay",
                vec![
                    c("v5", "d5", true),
                    c("v4", "d4", true),
                    c("v3", "d3", true),
                    c("v2", "d2", true),
                    c("v1", "d1", true),
                ],
                2,
                set(&["d1"]),
                set(&["d1", "d2"]),
                vec![
                    Keep(Newest),
                    Keep(Newest),
                    Remove,
                    Keep(RollbackTarget),
                    Keep(Deployed),
                ],
            ),
            (
                "versions not on the engine count towards N and need nothing",
                vec![
                    c("v3", "d3", false),
                    c("v2", "d2", true),
                    c("v1", "d1", true),
                ],
                2,
                set(&[]),
                set(&[]),
                vec![Gone, Keep(Newest), Remove],
            ),
            (
                "a pinned digest shared by two versions keeps both",
                vec![
                    c("v3", "d3", true),
                    c("v2", "dx", true),
                    c("v1", "dx", true),
                ],
                1,
                set(&["dx"]),
                set(&[]),
                vec![Keep(Newest), Keep(Deployed), Keep(Deployed)],
            ),
            (
                "fewer versions than N: nothing removed",
                vec![c("v1", "d1", true)],
                5,
                set(&[]),
                set(&[]),
                vec![Keep(Newest)],
            ),
            (
                "keep 0 removes everything unpinned",
                vec![c("v2", "d2", true), c("v1", "d1", true)],
                0,
                set(&[]),
                set(&["d1"]),
                vec![Remove, Keep(RollbackTarget)],
            ),
            ("no versions", vec![], 3, set(&[]), set(&[]), vec![]),
        ];
        for (case, cands, keep, deployed, targets, want) in cases {
            assert_eq!(plan(&cands, keep, &deployed, &targets), want, "{case}");
        }
    }

    #[test]
    fn a_recent_restore_is_kept() {
        let mut old = c("v1", "d1", true);
        old.restored_recently = true;
        let cands = vec![c("v2", "d2", true), old];
        assert_eq!(
            plan(&cands, 1, &set(&[]), &set(&[])),
            vec![Keep(Newest), Keep(Restored)]
        );
    }

    #[test]
    fn edge_table() {
        // (active, value, threshold, expected)
        let cases = [
            (false, 5, 10, None),
            (false, 10, 10, None),
            (false, 11, 10, Some(Edge::Raised)),
            (true, 12, 10, None),
            (true, 10, 10, Some(Edge::Cleared)),
            (true, 0, 10, Some(Edge::Cleared)),
            (false, 0, 0, None),
            (false, 1, 0, Some(Edge::Raised)),
        ];
        for (active, value, threshold, want) in cases {
            assert_eq!(
                edge(active, value, threshold),
                want,
                "{active} {value} {threshold}"
            );
        }
    }

    #[test]
    fn alerts_fire_once_per_crossing() {
        let mut a = Alerts::default();
        let seq: Vec<Option<Edge>> = [3, 4, 5, 6, 2, 2, 7]
            .iter()
            .map(|v| a.update("count:web", *v, 3))
            .collect();
        assert_eq!(
            seq,
            vec![
                None,
                Some(Edge::Raised),
                None,
                None,
                Some(Edge::Cleared),
                None,
                Some(Edge::Raised)
            ]
        );
        // Keys are independent.
        assert_eq!(a.update("count:api", 9, 3), Some(Edge::Raised));
        assert_eq!(a.update("disk", 1, 3), None);
    }

    #[test]
    fn bytes_for_people() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(10 * 1024 * 1024 * 1024), "10.0 GiB");
    }
}
