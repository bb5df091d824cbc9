//! Push webhooks: `POST /api/v1/hooks/{service}` from GitHub or Gitea (HMAC-SHA256 of the body
//! with the service's webhook secret, in `X-Hub-Signature-256: sha256=HEX` or
//! `X-Gitea-Signature: HEX`) or GitLab (`X-Gitlab-Token: SECRET`). A verified push of the
//! service's branch (or of a tag) queues a build of that ref; other pushes are acknowledged and
//! ignored. Comparisons are constant-time; secrets are never logged.
//!
//! The path is public, so a refusal says nothing about what exists: an unknown service (or
//! team), a service without a webhook secret and a bad signature all answer 401 with one
//! message ([`REFUSED`]), after a signature check each.

use crate::{ControlPlane, CpError};
use berth_core::api::{BuildStart, BuildView};
use sha2::{Digest, Sha256};

/// What a webhook call led to.
#[derive(Debug)]
pub enum HookOutcome {
    /// A build was queued.
    Build(BuildView),
    /// Verified, but nothing to build (a ping, another branch, a branch deletion).
    Ignored(String),
}

/// A webhook that cannot be accepted.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// No valid signature or token.
    #[error("{0}")]
    Unauthorized(String),
    /// The payload is not usable, or the state failed.
    #[error(transparent)]
    Cp(#[from] CpError),
}

/// HMAC-SHA256 (RFC 2104).
#[must_use]
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Check a request's signature headers against the secret.
#[must_use]
pub fn verify(secret: &str, header: &dyn Fn(&str) -> Option<String>, body: &[u8]) -> bool {
    let expected = hex::encode(hmac_sha256(secret.as_bytes(), body));
    if let Some(sig) = header("x-hub-signature-256") {
        if let Some(hex_sig) = sig.trim().strip_prefix("sha256=") {
            return constant_time_eq(hex_sig.to_ascii_lowercase().as_bytes(), expected.as_bytes());
        }
        return false;
    }
    if let Some(sig) = header("x-gitea-signature") {
        return constant_time_eq(
            sig.trim().to_ascii_lowercase().as_bytes(),
            expected.as_bytes(),
        );
    }
    if let Some(token) = header("x-gitlab-token") {
        return constant_time_eq(token.as_bytes(), secret.as_bytes());
    }
    false
}

/// The one answer of a refused webhook, whatever was wrong.
pub const REFUSED: &str = "bad or missing webhook signature";

/// Checked against when there is no secret, so a refusal takes the time a check takes.
const UNSET_SECRET: &str = "berth-no-webhook-secret-is-set-for-this-path";

impl ControlPlane {
    /// Set the secret that signs a service's push webhooks.
    pub fn set_webhook_secret(&self, service: &str, secret: &str) -> Result<(), CpError> {
        if secret.len() < 16 {
            return Err(CpError::InvalidArgument(
                "a webhook secret needs at least 16 characters".into(),
            ));
        }
        if !self.inner.store.set_webhook_secret(service, secret)? {
            return Err(CpError::UnknownBuildService(service.into()));
        }
        Ok(())
    }

    /// Handle a push webhook (see the module docs).
    pub fn webhook(
        &self,
        service: &str,
        header: &dyn Fn(&str) -> Option<String>,
        body: &[u8],
    ) -> Result<HookOutcome, HookError> {
        // The path is public: a missing service, one without a secret and a bad signature
        // answer alike (same status, same message, a signature checked in each case), so the
        // hook cannot be used to probe which services exist.
        let rec = self
            .inner
            .store
            .get_service(service)
            .map_err(CpError::from)?;
        let secret = match &rec {
            Some(_) => self
                .inner
                .store
                .webhook_secret(service)
                .map_err(CpError::from)?,
            None => None,
        };
        let verified = match &secret {
            Some(secret) => verify(secret, header, body),
            None => {
                let _ = verify(UNSET_SECRET, header, body);
                false
            }
        };
        let Some(rec) = rec.filter(|_| verified) else {
            tracing::warn!(
                service,
                known = secret.is_some(),
                "webhook refused: unknown service, no secret, or a bad or missing signature"
            );
            return Err(HookError::Unauthorized(REFUSED.into()));
        };
        if header("x-github-event").as_deref() == Some("ping")
            || header("x-gitea-event").as_deref() == Some("ping")
        {
            return Ok(HookOutcome::Ignored("ping".into()));
        }
        let payload: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
            CpError::InvalidArgument(format!("the webhook payload is not JSON: {e}"))
        })?;
        let Some(git_ref) = payload.get("ref").and_then(|r| r.as_str()) else {
            return Ok(HookOutcome::Ignored("no `ref` in the payload".into()));
        };
        let wanted = rec.source.branch();
        // A branch other than the service's, when the service previews them
        // (docs/environments.md#preview-environments).
        let preview = match &rec.source {
            berth_core::source::ServiceSource::Git(g) => g.preview_app.as_ref().and_then(|app| {
                let branch = git_ref.strip_prefix("refs/heads/")?;
                (Some(branch) != wanted).then(|| crate::preview::Preview {
                    branch: branch.to_string(),
                    app: app.clone(),
                    ttl: g.preview_ttl_secs.map_or(
                        crate::preview::DEFAULT_PREVIEW_TTL,
                        std::time::Duration::from_secs,
                    ),
                })
            }),
            berth_core::source::ServiceSource::Svn(_) => None,
        };
        if payload.get("deleted").and_then(serde_json::Value::as_bool) == Some(true) {
            if let Some(p) = &preview {
                if let Some(env) = self.recycle_preview(service, &p.branch)? {
                    tracing::info!(
                        service,
                        branch = p.branch,
                        env,
                        "branch deleted: preview environment removed"
                    );
                    return Ok(HookOutcome::Ignored(format!(
                        "{git_ref} was deleted: preview environment {env} removed"
                    )));
                }
            }
            return Ok(HookOutcome::Ignored(format!("{git_ref} was deleted")));
        }
        if let Some(p) = preview {
            tracing::info!(
                service,
                branch = p.branch,
                app = p.app,
                "push webhook: queueing a preview build"
            );
            let build = BuildStart {
                git_ref: Some(p.branch.clone()),
            };
            return Ok(HookOutcome::Build(self.start_build_then(
                service,
                &build,
                Some(p),
            )?));
        }
        let build_ref = if let Some(tag) = git_ref.strip_prefix("refs/tags/") {
            tag.to_string()
        } else if let Some(branch) = git_ref.strip_prefix("refs/heads/") {
            if wanted.is_some_and(|w| w != branch) {
                return Ok(HookOutcome::Ignored(format!(
                    "push to {branch}, the service builds {}",
                    wanted.unwrap_or_default()
                )));
            }
            branch.to_string()
        } else {
            return Ok(HookOutcome::Ignored(format!(
                "{git_ref} is neither a branch nor a tag"
            )));
        };
        tracing::info!(
            service,
            git_ref = build_ref,
            "push webhook: queueing a build"
        );
        Ok(HookOutcome::Build(self.start_build(
            service,
            &BuildStart {
                git_ref: Some(build_ref),
            },
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn signatures() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let good = format!(
            "sha256={}",
            hex::encode(hmac_sha256(b"0123456789abcdef", body))
        );
        let h = |name: &'static str, v: String| move |k: &str| (k == name).then(|| v.clone());
        assert!(verify(
            "0123456789abcdef",
            &h("x-hub-signature-256", good.clone()),
            body
        ));
        assert!(!verify(
            "0123456789abcdef",
            &h("x-hub-signature-256", good.replace('a', "b")),
            body
        ));
        assert!(!verify(
            "0123456789abcdef",
            &h("x-hub-signature-256", good.clone()),
            b"{}"
        ));
        assert!(verify(
            "0123456789abcdef",
            &h("x-gitea-signature", good[7..].to_string()),
            body
        ));
        assert!(verify(
            "0123456789abcdef",
            &h("x-gitlab-token", "0123456789abcdef".into()),
            body
        ));
        assert!(!verify(
            "0123456789abcdef",
            &h("x-gitlab-token", "wrong".into()),
            body
        ));
        assert!(!verify("0123456789abcdef", &|_| None, body));
    }
}
