//! JWT issuers: Berth's own (an ES256 key store in the data directory) and the ones added with
//! `berth issuer add`. The control plane turns them into `berth_core::policy::Issuer`s in the
//! routing table (public keys, and HS256 secrets, which the table API redacts); the gateway's
//! verifier only ever reads the table.
//!
//! Rules it keeps: an issuer's keys are validated before it is stored; a JWKS URL is fetched
//! outside the request path (on add, then every [`JWKS_REFRESH`]); a failed refresh keeps the
//! last good keys; secrets are never logged or returned.

use crate::{ControlPlane, CpError, Inner};
use berth_auth::KeyStore;
use berth_core::api::{IssuerRequest, IssuerView, TokenIssued, TokenRequest};
use berth_core::policy::Issuer;
use berth_store::IssuerRecord;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The claim every token Berth issues carries: the team it was issued for (docs/teams.md). The
/// gateway accepts a Berth token on a route only if this is the route's team.
pub const TEAM_CLAIM: &str = berth_core::policy::TEAM_CLAIM;

/// How often JWKS URLs are fetched again.
pub const JWKS_REFRESH: Duration = Duration::from_secs(300);
/// Default lifetime of a token from `berth token issue`.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// Berth's own issuer: its key store and the `iss` value of its tokens.
pub(crate) struct OwnIssuer {
    pub keys: Arc<KeyStore>,
    pub url: String,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn to_issuer(r: &IssuerRecord) -> Issuer {
    Issuer {
        name: r.name.clone(),
        issuer: r.issuer.clone(),
        jwks: r.jwks.clone(),
        hs256_secret: r.hs256_secret.clone(),
    }
}

async fn fetch_jwks(url: &str) -> Result<String, String> {
    // reqwest's rustls has no provider of its own (the `berth` binary installs aws-lc-rs at
    // start; this covers other processes, e.g. test binaries). Already installed: no-op.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let resp = client.get(url).send().await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("answered {}", resp.status()));
    }
    let body = resp.text().await.map_err(|e| e.to_string())?;
    if body.len() > 256 * 1024 {
        return Err("JWKS larger than 256 KiB".into());
    }
    Ok(body)
}

impl Inner {
    /// Recompute the issuers of the routing table and publish it.
    pub(crate) fn refresh_issuers(&self) {
        let mut list = Vec::new();
        if let Some(own) = self.own_issuer.get() {
            list.push(own.keys.issuer(&own.url));
        }
        match self.store.list_issuers() {
            Ok(records) => list.extend(
                records
                    .iter()
                    .filter(|r| r.jwks.is_some() || r.hs256_secret.is_some())
                    .map(to_issuer),
            ),
            Err(e) => tracing::warn!(error = %e, "cannot read issuers"),
        }
        let mut mem = self.mem();
        if mem.issuers != list {
            mem.issuers = list;
            crate::pass::publish_table(self, &mem);
        }
    }
}

impl ControlPlane {
    /// Turn on Berth's own issuer (tokens signed with `keys`, `iss` = `url`) and start
    /// refreshing JWKS URLs.
    pub fn enable_issuer(&self, keys: Arc<KeyStore>, url: String, shutdown: CancellationToken) {
        let _ = self.inner.own_issuer.set(OwnIssuer { keys, url });
        self.inner.refresh_issuers();
        tokio::spawn(refresh_loop(Arc::downgrade(&self.inner), shutdown));
    }

    fn own(&self) -> Result<&OwnIssuer, CpError> {
        self.inner
            .own_issuer
            .get()
            .ok_or_else(|| CpError::InvalidArgument("this server has no token issuer".into()))
    }

    /// Names of issuers routes may use.
    pub(crate) fn issuer_names(&self) -> Vec<String> {
        let mut names = vec![crate::policy::BERTH_ISSUER.to_string()];
        names.extend(
            self.inner
                .store
                .list_issuers()
                .unwrap_or_default()
                .into_iter()
                .map(|r| r.name),
        );
        names
    }

    /// Berth's public keys (`/.well-known/jwks.json`).
    pub fn jwks(&self) -> Result<String, CpError> {
        Ok(self.own()?.keys.jwks())
    }

    /// Sign a token with Berth's current key for `team`: its audiences are the request's (the
    /// caller checked they are the team's applications' global names), and it carries the
    /// reserved claim [`TEAM_CLAIM`], which a request may not set.
    pub fn issue_token(&self, team: &str, req: &TokenRequest) -> Result<TokenIssued, CpError> {
        let own = self.own()?;
        if req.subject.is_empty() {
            return Err(CpError::InvalidArgument(
                "the subject must not be empty".into(),
            ));
        }
        if req.audiences.iter().any(|a| a.starts_with("market:")) {
            return Err(CpError::InvalidArgument(
                "`market:` audiences are the market's credentials, which only subscriptions get"
                    .into(),
            ));
        }
        if req.claims.contains_key(TEAM_CLAIM) {
            return Err(CpError::InvalidArgument(format!(
                "the claim {TEAM_CLAIM:?} is reserved: Berth sets it to the token's team"
            )));
        }
        let ttl = req.ttl_secs.map_or(DEFAULT_TOKEN_TTL, Duration::from_secs);
        let audiences = if req.audiences.is_empty() {
            vec!["berth".to_string()]
        } else {
            req.audiences.clone()
        };
        let mut claims = req.claims.clone();
        claims.insert(TEAM_CLAIM.into(), serde_json::Value::String(team.into()));
        let token = own
            .keys
            .issue(&req.subject, &audiences, ttl, claims, &own.url)
            .map_err(|e| CpError::InvalidArgument(e.to_string()))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        tracing::info!(subject = %req.subject, ttl_secs = ttl.as_secs(), "token issued");
        Ok(TokenIssued {
            token,
            expires_at: now + ttl.as_secs(),
        })
    }

    /// Make a new signing key current; older keys keep verifying their tokens until they expire.
    pub fn rotate_key(&self) -> Result<String, CpError> {
        let kid = self
            .own()?
            .keys
            .rotate()
            .map_err(|e| CpError::InvalidArgument(e.to_string()))?;
        tracing::info!(kid, "signing key rotated");
        self.inner.refresh_issuers();
        Ok(kid)
    }

    /// Accept tokens from another issuer.
    pub async fn add_issuer(&self, req: IssuerRequest) -> Result<IssuerView, CpError> {
        // A global name (docs/teams.md): the team's name of the issuer, and its team.
        let (team, local) = berth_core::team::split_global(&req.name);
        if !valid_name(local)
            || !berth_core::team::valid_team_name(team)
            || local == crate::policy::BERTH_ISSUER
        {
            return Err(CpError::InvalidArgument(format!(
                "invalid issuer name {:?}: 1-64 letters, digits, '-', '_', '.'; `berth` is Berth's own",
                req.name
            )));
        }
        if req.issuer.is_empty() {
            return Err(CpError::InvalidArgument(
                "--issuer (the `iss` value) is required".into(),
            ));
        }
        let sources = [
            req.jwks_url.is_some(),
            req.jwks.is_some(),
            req.hs256_secret.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err(CpError::InvalidArgument(
                "give exactly one of a JWKS URL, a public key (JWKS) or an HS256 secret".into(),
            ));
        }
        let mut record = IssuerRecord {
            name: req.name.clone(),
            issuer: req.issuer.clone(),
            jwks: req.jwks.clone(),
            jwks_url: req.jwks_url.clone(),
            hs256_secret: req.hs256_secret.clone(),
            created_at: String::new(),
        };
        if let Some(url) = &req.jwks_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(CpError::InvalidArgument(format!(
                    "JWKS URL {url:?} must be http:// or https://"
                )));
            }
            let jwks = fetch_jwks(url).await.map_err(|e| {
                CpError::InvalidArgument(format!("cannot fetch the JWKS from {url}: {e}"))
            })?;
            record.jwks = Some(jwks);
        }
        let keys = berth_auth::validate_issuer(&to_issuer(&record))
            .map_err(|e| CpError::InvalidArgument(format!("issuer {:?}: {e}", req.name)))?;
        self.inner.store.put_issuer(&record)?;
        tracing::info!(name = %req.name, issuer = %req.issuer, keys, "issuer added");
        self.inner.refresh_issuers();
        Ok(view(&record))
    }

    /// Issuers (secrets not shown), Berth's own first.
    pub fn issuers(&self) -> Result<Vec<IssuerView>, CpError> {
        let mut out = Vec::new();
        if let Some(own) = self.inner.own_issuer.get() {
            out.push(IssuerView {
                name: crate::policy::BERTH_ISSUER.into(),
                issuer: own.url.clone(),
                kind: "berth".into(),
                jwks_url: None,
                keys: own.keys.keys().len(),
            });
        }
        out.extend(self.inner.store.list_issuers()?.iter().map(view));
        Ok(out)
    }

    /// Stop accepting an issuer's tokens.
    pub fn remove_issuer(&self, name: &str) -> Result<(), CpError> {
        if !self.inner.store.delete_issuer(name)? {
            return Err(CpError::InvalidArgument(format!(
                "no issuer named {name:?}"
            )));
        }
        self.inner.refresh_issuers();
        Ok(())
    }
}

fn view(r: &IssuerRecord) -> IssuerView {
    let kind = if r.jwks_url.is_some() {
        "jwks_url"
    } else if r.hs256_secret.is_some() {
        "hs256"
    } else {
        "jwks"
    };
    IssuerView {
        name: r.name.clone(),
        issuer: r.issuer.clone(),
        kind: kind.into(),
        jwks_url: r.jwks_url.clone(),
        keys: berth_auth::validate_issuer(&to_issuer(r)).unwrap_or(0),
    }
}

async fn refresh_loop(inner: Weak<Inner>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(JWKS_REFRESH) => {}
        }
        let Some(i) = inner.upgrade() else { return };
        let records = i.store.list_issuers().unwrap_or_default();
        drop(i);
        for r in records {
            let Some(url) = &r.jwks_url else { continue };
            match fetch_jwks(url).await {
                Ok(jwks) => {
                    let mut candidate = to_issuer(&r);
                    candidate.jwks = Some(jwks.clone());
                    if berth_auth::validate_issuer(&candidate).is_ok()
                        && r.jwks.as_deref() != Some(&jwks)
                    {
                        if let Some(i) = inner.upgrade() {
                            let _ = i.store.set_issuer_jwks(&r.name, &jwks);
                            i.refresh_issuers();
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(issuer = %r.name, url, error = %e, "JWKS refresh failed; keeping the last keys")
                }
            }
        }
    }
}
