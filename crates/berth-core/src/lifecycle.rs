//! A version's lifecycle (docs/lifecycle.md): `built → submitted → approved | rejected →
//! published → deprecated → retired`, as a pure state machine.
//!
//! [`next`] is the only place a state changes; everything that moves a version (the API, the
//! store's compare-and-set) asks it first. Who may make each transition is the permission
//! table's business (`berth_access::policy`), and the four-eyes rule (a reviewer is not the
//! submitter) is [`reviewer_may`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a version stands.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum VersionState {
    /// A successful build made it; nobody asked for a review yet.
    #[default]
    Built,
    /// Waiting for an approver of the owning team.
    Submitted,
    /// An approver found it fit; it may be published.
    Approved,
    /// An approver found it unfit (the reason says why); it may be submitted again.
    Rejected,
    /// Offered to other teams (the market).
    Published,
    /// Still usable, but its users are told to move on.
    Deprecated,
    /// No longer usable by new deployments.
    Retired,
}

impl VersionState {
    /// Every state, in lifecycle order.
    pub const ALL: [VersionState; 7] = [
        VersionState::Built,
        VersionState::Submitted,
        VersionState::Approved,
        VersionState::Rejected,
        VersionState::Published,
        VersionState::Deprecated,
        VersionState::Retired,
    ];

    /// The state's name, as the API and the store write it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            VersionState::Built => "built",
            VersionState::Submitted => "submitted",
            VersionState::Approved => "approved",
            VersionState::Rejected => "rejected",
            VersionState::Published => "published",
            VersionState::Deprecated => "deprecated",
            VersionState::Retired => "retired",
        }
    }

    /// A reviewed version a protected application may run: approved, published or deprecated.
    #[must_use]
    pub fn is_approved(self) -> bool {
        matches!(
            self,
            VersionState::Approved | VersionState::Published | VersionState::Deprecated
        )
    }
}

impl fmt::Display for VersionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for VersionState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        VersionState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown version state {s:?}"))
    }
}

/// What someone does to a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    Submit,
    Approve,
    Reject,
    Publish,
    Deprecate,
    Retire,
}

impl Transition {
    /// Every transition.
    pub const ALL: [Transition; 6] = [
        Transition::Submit,
        Transition::Approve,
        Transition::Reject,
        Transition::Publish,
        Transition::Deprecate,
        Transition::Retire,
    ];

    /// The transition's name: the last segment of its API path and its CLI command.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Submit => "submit",
            Transition::Approve => "approve",
            Transition::Reject => "reject",
            Transition::Publish => "publish",
            Transition::Deprecate => "deprecate",
            Transition::Retire => "retire",
        }
    }

    /// Approve and reject are reviews: the four-eyes rule applies ([`reviewer_may`]).
    #[must_use]
    pub fn is_review(self) -> bool {
        matches!(self, Transition::Approve | Transition::Reject)
    }

    /// The reason is required for a review (what the submitter reads back).
    #[must_use]
    pub fn needs_reason(self) -> bool {
        self.is_review()
    }
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Transition {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Transition::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown transition {s:?}"))
    }
}

/// A transition the state does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidTransition {
    pub from: VersionState,
    pub transition: Transition,
}

impl fmt::Display for InvalidTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let need: Vec<&str> = VersionState::ALL
            .into_iter()
            .filter(|s| next(*s, self.transition).is_ok())
            .map(VersionState::as_str)
            .collect();
        write!(
            f,
            "cannot {} a version that is {} (only a version that is {} can be)",
            self.transition,
            self.from,
            need.join(" or ")
        )
    }
}

impl std::error::Error for InvalidTransition {}

/// The state after `transition` from `from`, or why not.
pub fn next(from: VersionState, transition: Transition) -> Result<VersionState, InvalidTransition> {
    use Transition as T;
    use VersionState as S;
    let to = match (from, transition) {
        (S::Built | S::Rejected, T::Submit) => S::Submitted,
        (S::Submitted, T::Approve) => S::Approved,
        (S::Submitted, T::Reject) => S::Rejected,
        (S::Approved, T::Publish) => S::Published,
        (S::Published, T::Deprecate) => S::Deprecated,
        (S::Published | S::Deprecated, T::Retire) => S::Retired,
        _ => return Err(InvalidTransition { from, transition }),
    };
    Ok(to)
}

/// The four-eyes rule: a review (approve, reject) is never made by the version's submitter.
#[must_use]
pub fn reviewer_may(transition: Transition, actor: &str, submitter: Option<&str>) -> bool {
    !(transition.is_review() && submitter == Some(actor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Transition as T;
    use VersionState as S;

    /// Every state × every transition: the table in docs/lifecycle.md.
    #[test]
    fn table() {
        #[rustfmt::skip]
        let rows: [(S, [Option<S>; 6]); 7] = [
            //               submit              approve            reject             publish             deprecate            retire
            (S::Built,      [Some(S::Submitted), None,              None,              None,               None,                None]),
            (S::Submitted,  [None,               Some(S::Approved), Some(S::Rejected), None,               None,                None]),
            (S::Approved,   [None,               None,              None,              Some(S::Published), None,                None]),
            (S::Rejected,   [Some(S::Submitted), None,              None,              None,               None,                None]),
            (S::Published,  [None,               None,              None,              None,               Some(S::Deprecated), Some(S::Retired)]),
            (S::Deprecated, [None,               None,              None,              None,               None,                Some(S::Retired)]),
            (S::Retired,    [None,               None,              None,              None,               None,                None]),
        ];
        for (from, tos) in rows {
            for (t, want) in T::ALL.into_iter().zip(tos) {
                let got = next(from, t).ok();
                assert_eq!(got, want, "{from} --{t}-->");
            }
        }
    }

    #[test]
    fn a_refusal_names_both_states() {
        let e = next(S::Built, T::Publish).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot publish a version that is built (only a version that is approved can be)"
        );
        let e = next(S::Submitted, T::Retire).unwrap_err();
        assert!(e.to_string().contains("published or deprecated"), "{e}");
    }

    #[test]
    fn names_round_trip() {
        for s in S::ALL {
            assert_eq!(s.as_str().parse::<S>().unwrap(), s);
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        for t in T::ALL {
            assert_eq!(t.as_str().parse::<T>().unwrap(), t);
        }
        assert!("shipped".parse::<S>().is_err());
    }

    #[test]
    fn four_eyes() {
        assert!(!reviewer_may(T::Approve, "ann", Some("ann")));
        assert!(!reviewer_may(T::Reject, "ann", Some("ann")));
        assert!(reviewer_may(T::Approve, "bob", Some("ann")));
        assert!(reviewer_may(T::Publish, "ann", Some("ann")));
        assert!(reviewer_may(T::Approve, "ann", None));
    }

    #[test]
    fn only_reviewed_versions_are_approved() {
        let ok: Vec<S> = S::ALL.into_iter().filter(|s| s.is_approved()).collect();
        assert_eq!(ok, [S::Approved, S::Published, S::Deprecated]);
    }
}
