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
            // Someone moved it first: answer from where it is now.
            let now = self.lifecycle_of(service, version)?;
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
        // The last published version: the newest other version that is published or
        // deprecated (what consumers may be running).
        let states = self.inner.store.lifecycles(Some(service))?;
        let published = states
            .iter()
            .filter(|l| l.version != version)
            .filter(|l| matches!(l.state, VersionState::Published | VersionState::Deprecated))
            .max_by(|a, b| a.state_changed_at.cmp(&b.state_changed_at));
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
            (Some(m), Some((v, Some(t)))) => {
                let changes = berth_core::contract::diff(t, m);
                let breaking = changes.iter().filter(|c| c.breaking).count();
                let summary = if changes.is_empty() {
                    format!("no changes from {v}")
                } else {
                    format!("{} change(s) from {v}, {breaking} breaking", changes.len())
                };
                (changes, summary)
            }
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

    /// `version_not_approved` unless every image of `spec` is a reviewed version: approved,
    /// published or deprecated when it is the team's own, published or deprecated when it is
    /// another team's. Only for protected applications, and applications of protected
    /// environments (docs/environments.md).
    pub(crate) fn check_protected(&self, app: &str, spec: &RevisionSpec) -> Result<(), CpError> {
        let env_protected = self.env_protected(app)?;
        if !env_protected && !self.inner.store.app_protected(app)? {
            return Ok(());
        }
        let my_team = team::team_of(app);
        let mut refused = Vec::new();
        for (svc, digest) in &spec.images {
            let versions = self.inner.store.versions_by_digest(digest)?;
            let ok = versions.iter().any(|(service, _, state)| {
                if team::team_of(service) == my_team {
                    state.is_approved()
                } else {
                    matches!(state, VersionState::Published | VersionState::Deprecated)
                }
            });
            if ok {
                continue;
            }
            let image = spec
                .project
                .services
                .get(svc)
                .map_or_else(|| digest.clone(), |s| s.image.clone());
            let why = match versions
                .iter()
                .find(|(service, _, _)| team::team_of(service) == my_team)
                .or_else(|| versions.first())
            {
                Some((service, v, state)) => format!(
                    "service {svc:?}: image {image} is version {}:{v}, which is {state}",
                    team::local_name(my_team, service).unwrap_or(service)
                ),
                None => format!(
                    "service {svc:?}: image {image} is no version of any service (build it with `berth build`)"
                ),
            };
            refused.push(why);
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
