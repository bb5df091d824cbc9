//! The version lifecycle (docs/lifecycle.md): transitions, the evidence a reviewer sees, and
//! protected applications. The state machine is `berth_core::lifecycle`; the store moves a
//! version by compare-and-set; this module puts them together with the four-eyes rule.
//! Names here are global (`team/service`); the API turns them into the team's.

use crate::events::Level;
use crate::spec::RevisionSpec;
use crate::{ControlPlane, CpError};
use berth_core::api::{ReviewItem, ReviewView, StepEvidence, VersionLifecycle, VersionView};
use berth_core::lifecycle::{self, Transition, VersionState};
use berth_core::team;
use berth_store::{LifecycleRecord, TransitionWrite};

/// Notes and reasons longer than this are refused.
const MAX_TEXT: usize = 4000;

fn view(l: LifecycleRecord) -> VersionLifecycle {
    VersionLifecycle {
        state: l.state,
        submitted_by: l.submitted_by,
        submit_note: l.submit_note,
        reviewed_by: l.reviewed_by,
        review_reason: l.review_reason,
        state_changed_at: l.state_changed_at,
    }
}

impl ControlPlane {
    fn lifecycle_of(&self, service: &str, version: &str) -> Result<LifecycleRecord, CpError> {
        if self.inner.store.get_service(service)?.is_none() {
            return Err(CpError::UnknownBuildService(service.into()));
        }
        self.inner
            .store
            .version_lifecycle(service, version)?
            .ok_or_else(|| CpError::VersionNotFound(service.into(), version.into()))
    }

    /// Move a version along its lifecycle as `actor`. `text` is the submit note, or the
    /// review's reason (required for approve and reject). `app` (publish only, a global name):
    /// the application that serves the market entry (docs/market.md).
    pub fn transition_version(
        &self,
        service: &str,
        version: &str,
        transition: Transition,
        actor: &str,
        text: Option<&str>,
        app: Option<&str>,
    ) -> Result<VersionLifecycle, CpError> {
        if app.is_some() && transition != Transition::Publish {
            return Err(CpError::InvalidArgument(format!(
                "`app` goes with publish, not {transition}"
            )));
        }
        let text = text.map(str::trim).filter(|t| !t.is_empty());
        if text.is_some_and(|t| t.chars().count() > MAX_TEXT) {
            return Err(CpError::InvalidArgument(format!(
                "the note is longer than {MAX_TEXT} characters"
            )));
        }
        if transition.needs_reason() && text.is_none() {
            return Err(CpError::InvalidArgument(format!(
                "to {transition} a version, give a reason (`--reason TEXT`): the submitter reads it"
            )));
        }
        let current = self.lifecycle_of(service, version)?;
        let name = format!("{}:{version}", team::split_global(service).1);
        let to = lifecycle::next(current.state, transition)
            .map_err(|e| CpError::InvalidTransition(name.clone(), e))?;
        if !lifecycle::reviewer_may(transition, actor, current.submitted_by.as_deref()) {
            return Err(CpError::Forbidden(format!(
                "you submitted {name}: another approver of the team reviews it"
            )));
        }
        let provider = match app {
            Some(a) => Some((a, self.provider_service(service, version, a)?)),
            None => None,
        };
        if transition == Transition::Retire {
            self.check_retire(service, version)?;
        }
        let write = match transition {
            Transition::Submit => TransitionWrite {
                submitted: Some((actor, text)),
                reviewed: None,
            },
            Transition::Approve | Transition::Reject => TransitionWrite {
                submitted: None,
                reviewed: Some((actor, text.unwrap_or_default())),
            },
            _ => TransitionWrite::default(),
        };
        if !self
            .inner
            .store
            .transition_version(service, version, current.state, to, write)?
        {
            // Someone moved it first: answer from where it is now. Still in the same state, it
            // was resubmitted by the reviewer meanwhile (the store's four-eyes condition).
            let now = self.lifecycle_of(service, version)?;
            if now.state == current.state
                && !lifecycle::reviewer_may(transition, actor, now.submitted_by.as_deref())
            {
                return Err(CpError::Forbidden(format!(
                    "you submitted {name}: another approver of the team reviews it"
                )));
            }
            return Err(CpError::InvalidTransition(
                name,
                lifecycle::InvalidTransition {
                    from: now.state,
                    transition,
                },
            ));
        }
        if let Some((a, app_service)) = &provider {
            self.bind_market(service, version, a, app_service, actor)?;
        }
        self.inner.events.emit_in(
            Some(team::team_of(service)),
            &format!("version.{to}"),
            Level::Info,
            &format!("{service}:{version}"),
            format!("{actor} {}: {name} is {to}", past(transition)),
        );
        if transition == Transition::Deprecate {
            // Subscribers hear of it in their own team's events.
            for s in self.inner.store.subscribers_of(service)? {
                self.inner.events.emit_in(
                    Some(team::team_of(&s.app)),
                    "subscription.deprecated",
                    Level::Warn,
                    &s.app,
                    format!(
                        "{} version {version}, which application {:?} subscribes to, is deprecated",
                        crate::subscriptions::entry_name(service),
                        team::split_global(&s.app).1
                    ),
                );
            }
        }
        Ok(view(self.lifecycle_of(service, version)?))
    }

    /// Retiring the version the provider instance runs, or the last one on the market, is
    /// refused while applications subscribe to the entry.
    fn check_retire(&self, service: &str, version: &str) -> Result<(), CpError> {
        let bound = self
            .inner
            .store
            .market_binding(service)?
            .is_some_and(|b| b.version == version);
        let others = self
            .inner
            .store
            .lifecycles(Some(service))?
            .iter()
            .filter(|l| l.version != version)
            .any(|l| matches!(l.state, VersionState::Published | VersionState::Deprecated));
        if bound || !others {
            self.refuse_if_subscribed(service, &format!("retire version {version}"))?;
        }
        self.refuse_if_installed(service, version)
    }

    /// What waits for review in `team`, oldest first.
    pub fn reviews(&self, team_name: &str) -> Result<Vec<ReviewItem>, CpError> {
        Ok(self
            .inner
            .store
            .versions_in_state(VersionState::Submitted)?
            .into_iter()
            .filter(|l| team::team_of(&l.service) == team_name)
            .map(|l| ReviewItem {
                service: l.service,
                version: l.version,
                submitted_by: l.submitted_by,
                note: l.submit_note,
                submitted_at: l.state_changed_at,
            })
            .collect())
    }

    /// Everything a reviewer sees of a version: the version, its state, each pipeline step with
    /// its test report, the image's size, and its contract's difference from the last published
    /// version's.
    pub async fn review(&self, service: &str, version: &str) -> Result<ReviewView, CpError> {
        let lifecycle = self.lifecycle_of(service, version)?;
        let record = self
            .inner
            .store
            .get_version(service, version)?
            .ok_or_else(|| CpError::VersionNotFound(service.into(), version.into()))?;
        let image_size = match self.inner.docker.inspect_image(&record.digest).await {
            Ok(Some(i)) => Some(i.size),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "review: inspecting the version's image failed");
                None
            }
        };
        let steps: Vec<StepEvidence> = record
            .steps
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        let states = self.inner.store.lifecycles(Some(service))?;
        let published = baseline(&states, version);
        let mine: Option<serde_json::Value> = record
            .contract
            .as_deref()
            .and_then(|c| serde_json::from_str(c).ok());
        let theirs: Option<(String, Option<serde_json::Value>)> = match published {
            None => None,
            Some(p) => {
                let c = self
                    .inner
                    .store
                    .get_version(service, &p.version)?
                    .and_then(|v| v.contract)
                    .and_then(|c| serde_json::from_str(&c).ok());
                Some((p.version.clone(), c))
            }
        };
        let (changes, summary) = match (&mine, &theirs) {
            (None, _) => (
                Vec::new(),
                "no contract: the pipeline names none (`contract: PATH` in berth.pipeline.yaml)"
                    .to_string(),
            ),
            (Some(_), None) => (
                Vec::new(),
                "first contract: no version of the service is published yet".to_string(),
            ),
            (Some(_), Some((v, None))) => (
                Vec::new(),
                format!("the last published version, {v}, has no contract to compare with"),
            ),
            (Some(m), Some((v, Some(t)))) => match berth_core::contract::diff(t, m) {
                Ok(changes) => {
                    let breaking = changes.iter().filter(|c| c.breaking).count();
                    let summary = if changes.is_empty() {
                        format!("no changes from {v}")
                    } else {
                        format!("{} change(s) from {v}, {breaking} breaking", changes.len())
                    };
                    (changes, summary)
                }
                Err(e) => (Vec::new(), format!("not compared with {v}: {e}")),
            },
        };
        let breaking_changes = changes.iter().filter(|c| c.breaking).count() as u64;
        Ok(ReviewView {
            version: VersionView {
                service: record.service,
                name: record.name,
                digest: record.digest,
                tag: record.tag,
                commit: record.commit,
                author: record.author,
                commit_time: record.commit_time,
                build_id: record.build_id,
                created_at: record.created_at,
                state: lifecycle.state,
            },
            lifecycle: view(lifecycle),
            image_size,
            steps,
            contract_operations: mine
                .as_ref()
                .map(|m| berth_core::contract::operation_count(m) as u64),
            compared_with: theirs.map(|(v, _)| v),
            contract_changes: changes,
            breaking_changes,
            contract_summary: summary,
        })
    }

    /// Protect an application (run approved versions only) or lift it.
    pub fn set_protected(&self, app: &str, protected: bool) -> Result<(), CpError> {
        if !self.inner.store.set_app_protected(app, protected)? {
            return Err(CpError::AppNotFound(app.into()));
        }
        self.inner.events.emit_in(
            Some(team::team_of(app)),
            if protected {
                "app.protected"
            } else {
                "app.unprotected"
            },
            Level::Info,
            app,
            format!(
                "application {:?} {}",
                team::split_global(app).1,
                if protected {
                    "runs approved versions only"
                } else {
                    "is no longer protected"
                }
            ),
        );
        Ok(())
    }

    /// See [`check_protected`].
    pub(crate) fn check_protected(&self, app: &str, spec: &RevisionSpec) -> Result<(), CpError> {
        check_protected(&self.inner, app, spec)
    }
}

/// `version_not_approved` unless every image of `spec` is a reviewed version: approved,
/// published or deprecated when it is the team's own, published or deprecated when it is
/// another team's. Only for protected applications, and applications of protected
/// environments (docs/environments.md). Every revision is checked: apply, scale, rollback
/// (`commit`) and the reconciler's automatic rollback (`pass.rs`).
pub(crate) fn check_protected(
    inner: &crate::Inner,
    app: &str,
    spec: &RevisionSpec,
) -> Result<(), CpError> {
    let env_protected = inner.env_protected(app)?;
    if !env_protected && !inner.store.app_protected(app)? {
        return Ok(());
    }
    let my_team = team::team_of(app);
    let mut refused = Vec::new();
    for (svc, digest) in &spec.images {
        let versions = inner.store.versions_by_digest(digest)?;
        let image = spec
            .project
            .services
            .get(svc)
            .map_or(digest.as_str(), |s| s.image.as_str());
        refused.extend(refusal(my_team, svc, image, &versions));
    }
    if refused.is_empty() {
        return Ok(());
    }
    let (_, env, name) = team::split_app(app);
    let what = if env_protected {
        format!("environment {env:?} is protected")
    } else {
        format!("application {name:?} is protected")
    };
    Err(CpError::VersionNotApproved(format!(
        "{what}: it runs approved, published or deprecated versions only; {}",
        refused.join("; ")
    )))
}

/// Why a protected application of `my_team` may not run `image` (the versions whose image it
/// is: global service, version, state), or none if it may. Names only what the team owns:
/// another team's version that is not published is "not published", never its name (names do
/// not cross teams unpublished).
fn refusal(
    my_team: &str,
    svc: &str,
    image: &str,
    versions: &[(String, String, VersionState)],
) -> Option<String> {
    let ok = versions.iter().any(|(service, _, state)| {
        if team::team_of(service) == my_team {
            state.is_approved()
        } else {
            matches!(state, VersionState::Published | VersionState::Deprecated)
        }
    });
    if ok {
        return None;
    }
    let mine = versions
        .iter()
        .find(|(service, _, _)| team::team_of(service) == my_team);
    Some(match mine {
        Some((service, v, state)) => format!(
            "service {svc:?}: image {image} is version {}:{v}, which is {state}",
            team::split_global(service).1
        ),
        None if !versions.is_empty() => format!(
            "service {svc:?}: image {image} is another team's version, which is not published"
        ),
        None => format!(
            "service {svc:?}: image {image} is no version of any service (build it with `berth build`)"
        ),
    })
}

/// The version a review compares `version`'s contract with: the other version published last
/// (by when it was published: a deprecation moves a version but publishes nothing) that is still
/// published or deprecated (what consumers may be running).
fn baseline<'a>(states: &'a [LifecycleRecord], version: &str) -> Option<&'a LifecycleRecord> {
    states
        .iter()
        .filter(|l| l.version != version)
        .filter(|l| matches!(l.state, VersionState::Published | VersionState::Deprecated))
        .max_by(|a, b| a.published_at.cmp(&b.published_at))
}

fn past(t: Transition) -> &'static str {
    match t {
        Transition::Submit => "submitted",
        Transition::Approve => "approved",
        Transition::Reject => "rejected",
        Transition::Publish => "published",
        Transition::Deprecate => "deprecated",
        Transition::Retire => "retired",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        version: &str,
        state: VersionState,
        changed: &str,
        published: &str,
    ) -> LifecycleRecord {
        LifecycleRecord {
            service: "t/api".into(),
            version: version.into(),
            state,
            submitted_by: None,
            submit_note: None,
            reviewed_by: None,
            review_reason: None,
            state_changed_at: Some(changed.into()),
            published_at: (!published.is_empty()).then(|| published.into()),
        }
    }

    #[test]
    fn a_refusal_names_only_the_teams_own_versions() {
        let v = |service: &str, name: &str, state| (service.to_string(), name.to_string(), state);
        let cases = [
            (vec![v("shop/api", "v1", VersionState::Approved)], None),
            (
                vec![v("pay/card", "v3", VersionState::Published)],
                None,
            ),
            (
                vec![v("shop/api", "v2", VersionState::Submitted)],
                Some("service \"web\": image img is version api:v2, which is submitted"),
            ),
            (
                vec![v("pay/secret-project", "v9", VersionState::Built)],
                Some("service \"web\": image img is another team's version, which is not published"),
            ),
            (
                vec![
                    v("pay/secret-project", "v9", VersionState::Approved),
                    v("shop/api", "v2", VersionState::Retired),
                ],
                Some("service \"web\": image img is version api:v2, which is retired"),
            ),
            (
                vec![],
                Some("service \"web\": image img is no version of any service (build it with `berth build`)"),
            ),
        ];
        for (versions, want) in cases {
            let got = refusal("shop", "web", "img", &versions);
            assert_eq!(got.as_deref(), want, "{versions:?}");
            assert!(!got.unwrap_or_default().contains("secret-project"));
        }
    }

    #[test]
    fn the_baseline_is_the_last_published_not_the_last_moved() {
        // v1 published first, v2 after it; then v1 was deprecated (its last move is the newest).
        let states = [
            record("v3", VersionState::Submitted, "2024-01-05T00:00:00Z", ""),
            record(
                "v2",
                VersionState::Published,
                "2024-01-02T00:00:00Z",
                "2024-01-02T00:00:00Z",
            ),
            record(
                "v1",
                VersionState::Deprecated,
                "2024-01-04T00:00:00Z",
                "2024-01-01T00:00:00Z",
            ),
            record(
                "v0",
                VersionState::Retired,
                "2024-01-06T00:00:00Z",
                "2023-12-01T00:00:00Z",
            ),
        ];
        assert_eq!(
            baseline(&states, "v3").map(|l| l.version.as_str()),
            Some("v2")
        );
        // A published version under review itself compares with the one before.
        assert_eq!(
            baseline(&states, "v2").map(|l| l.version.as_str()),
            Some("v1")
        );
        assert!(baseline(&states[..1], "v3").is_none());
    }
}
