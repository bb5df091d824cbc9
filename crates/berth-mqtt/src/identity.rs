//! Who a client is: a Berth JWT turned into an [`Identity`] (docs/messaging.md, "Who may
//! connect").
//!
//! Rules it keeps:
//! - only Berth's own issuer; audience `mqtt` (an MQTT token of the token's team) or
//!   `market:TEAM/SERVICE` (a subscription credential, whose subject is the consumer
//!   application); the team is the `berth_team` claim (absent: `default`), which the verifier
//!   checks against the policy it is given;
//! - the username must be the token's subject;
//! - the broker keeps the identity as its `user_id` string ([`Identity::user_id`]): it is what a
//!   persisted session is bound to (a session resumes only for the same identity) and what
//!   [`Identity::parse`] reads back for each authorization. The encoding is injective: a team
//!   name has no `/` or `:`, a market one starts with `market:`, which no team name does.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use berth_core::auth::TokenVerifier;
use berth_core::policy::{AuthPolicy, Issuer, TEAM_CLAIM};
use berth_core::team::{self, DEFAULT_TEAM};

/// The audience of MQTT tokens.
pub const MQTT_AUDIENCE: &str = berth_core::policy::MQTT_AUDIENCE;
/// Berth's own issuer's name in the routing table.
pub const BERTH_ISSUER: &str = "berth";
pub(crate) const MARKET_PREFIX: &str = "market:";

/// An authenticated client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// An MQTT token (audience `mqtt`) of `team`.
    Team { team: String, subject: String },
    /// A subscription credential of application `app` (global name) for the market entry
    /// `provider/service`.
    Market {
        provider: String,
        service: String,
        app: String,
    },
}

impl Identity {
    /// The broker's `user_id`: `TEAM/SUBJECT`, or `market:PROVIDER/SERVICE/APP`.
    #[must_use]
    pub fn user_id(&self) -> String {
        match self {
            Identity::Team { team, subject } => format!("{team}/{subject}"),
            Identity::Market {
                provider,
                service,
                app,
            } => format!("{MARKET_PREFIX}{provider}/{service}/{app}"),
        }
    }

    /// The inverse of [`Identity::user_id`].
    #[must_use]
    pub fn parse(user_id: &str) -> Option<Identity> {
        if let Some(rest) = user_id.strip_prefix(MARKET_PREFIX) {
            let mut it = rest.splitn(3, '/');
            let (p, s, app) = (it.next()?, it.next()?, it.next()?);
            return Some(Identity::Market {
                provider: p.into(),
                service: s.into(),
                app: app.into(),
            });
        }
        let (t, s) = user_id.split_once('/')?;
        team::valid_team_name(t).then(|| Identity::Team {
            team: t.into(),
            subject: s.into(),
        })
    }

    /// The team the client acts for.
    #[must_use]
    pub fn team(&self) -> &str {
        match self {
            Identity::Team { team, .. } => team,
            Identity::Market { app, .. } => team::team_of(app),
        }
    }
}

/// Why a login was refused (for the log; the client gets CONNACK 0x86 / 4 whatever it is).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no username or no password")]
    Missing,
    #[error("the password is not a JWT")]
    NotAToken,
    #[error("token refused: {0}")]
    Token(String),
    #[error("the username is not the token's subject")]
    WrongUser,
    #[error("the token is neither an MQTT token nor a subscription credential")]
    WrongAudience,
}

/// The claims a login needs before verifying: which team and audiences to verify against.
/// Read from the unverified payload only to choose the policy; the verifier then checks the
/// signature and that the token's team and audience are the policy's.
fn peek(token: &str) -> Option<(String, Vec<String>)> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let team = match claims.get(TEAM_CLAIM) {
        None => DEFAULT_TEAM.to_string(),
        Some(v) => v.as_str()?.to_string(),
    };
    let aud = match claims.get("aud")? {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => return None,
    };
    Some((team, aud))
}

/// Verify a CONNECT's username and password.
///
/// # Errors
/// [`Refused`], with the reason for the log.
pub fn login(
    verifier: &dyn TokenVerifier,
    issuers: &[Issuer],
    username: Option<&str>,
    password: Option<&[u8]>,
) -> Result<Identity, Refused> {
    login_until(verifier, issuers, username, password).map(|(who, _)| who)
}

/// [`login`], and the token's `exp` (Unix seconds): when the connection it opens must end.
///
/// # Errors
/// [`Refused`], with the reason for the log.
pub fn login_until(
    verifier: &dyn TokenVerifier,
    issuers: &[Issuer],
    username: Option<&str>,
    password: Option<&[u8]>,
) -> Result<(Identity, Option<i64>), Refused> {
    let (Some(user), Some(password)) = (username, password) else {
        return Err(Refused::Missing);
    };
    let token = std::str::from_utf8(password).map_err(|_| Refused::NotAToken)?;
    let token = token.trim();
    let (team, auds) = peek(token).ok_or(Refused::NotAToken)?;
    if !team::valid_team_name(&team) {
        return Err(Refused::Token("invalid team claim".into()));
    }
    // The market audience, if the token is a subscription credential (only one is honoured).
    let market = auds.iter().find(|a| a.starts_with(MARKET_PREFIX)).cloned();
    let mqtt = auds.iter().any(|a| a == MQTT_AUDIENCE);
    let audience = if mqtt {
        MQTT_AUDIENCE.to_string()
    } else if let Some(m) = &market {
        m.clone()
    } else {
        return Err(Refused::WrongAudience);
    };
    let policy = AuthPolicy {
        issuers: vec![BERTH_ISSUER.into()],
        audiences: vec![audience.clone()],
        team: Some(team.clone()),
        subscribers: None,
    };
    let verified = verifier
        .verify(token, &policy, issuers)
        .map_err(|f| Refused::Token(f.reason))?;
    if verified.subject != user {
        return Err(Refused::WrongUser);
    }
    let exp = serde_json::from_str::<serde_json::Value>(&verified.claims_json)
        .ok()
        .and_then(|c| c.get("exp").and_then(serde_json::Value::as_i64));
    if mqtt {
        return Ok((
            Identity::Team {
                team,
                subject: verified.subject,
            },
            exp,
        ));
    }
    // A subscription credential: `sub` is the consumer application's global name, of the
    // token's team.
    let entry = &audience[MARKET_PREFIX.len()..];
    let (provider, service) = entry.split_once('/').ok_or(Refused::WrongAudience)?;
    if !team::valid_team_name(provider)
        || service.is_empty()
        || service.contains('/')
        || team::team_of(&verified.subject) != team
    {
        return Err(Refused::WrongAudience);
    }
    Ok((
        Identity::Market {
            provider: provider.into(),
            service: service.into(),
            app: verified.subject,
        },
        exp,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_auth::{KeyStore, Verifier};
    use std::collections::BTreeMap;
    use std::time::Duration;

    const URL: &str = "http://berth.test";

    struct Fixture {
        _dir: tempfile::TempDir,
        keys: KeyStore,
        verifier: Verifier,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyStore::open(dir.path().join("keys")).unwrap();
        Fixture {
            _dir: dir,
            keys,
            verifier: Verifier::new(),
        }
    }

    impl Fixture {
        fn token(&self, sub: &str, aud: &str, team: Option<&str>) -> String {
            let mut claims = BTreeMap::new();
            if let Some(t) = team {
                claims.insert(TEAM_CLAIM.to_string(), serde_json::json!(t));
            }
            self.keys
                .issue(
                    sub,
                    &[aud.to_string()],
                    Duration::from_secs(60),
                    claims,
                    URL,
                )
                .unwrap()
        }

        fn login(&self, user: &str, token: &str) -> Result<Identity, Refused> {
            login(
                &self.verifier,
                &[self.keys.issuer(URL)],
                Some(user),
                Some(token.as_bytes()),
            )
        }
    }

    #[test]
    fn logins_with_berth_tokens() {
        let f = fixture();
        let t = f.token("alice", "mqtt", Some("shop"));
        assert_eq!(
            f.login("alice", &t),
            Ok(Identity::Team {
                team: "shop".into(),
                subject: "alice".into()
            })
        );
        // No team claim: team default's (tokens from before teams).
        let t = f.token("old", "mqtt", None);
        assert_eq!(f.login("old", &t).unwrap().team(), "default");
        // A subscription credential: the consumer application, for its entry.
        let t = f.token("buyer/web", "market:shop/orders", Some("buyer"));
        assert_eq!(
            f.login("buyer/web", &t),
            Ok(Identity::Market {
                provider: "shop".into(),
                service: "orders".into(),
                app: "buyer/web".into()
            })
        );
    }

    #[test]
    fn a_login_knows_when_its_token_expires() {
        let f = fixture();
        let t = f.token("alice", "mqtt", Some("shop"));
        let (_, exp) = login_until(
            &f.verifier,
            &[f.keys.issuer(URL)],
            Some("alice"),
            Some(t.as_bytes()),
        )
        .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let exp = exp.expect("exp");
        assert!((now + 55..=now + 61).contains(&exp), "{exp} vs {now}");
    }

    #[test]
    fn refusals() {
        let f = fixture();
        let t = f.token("alice", "mqtt", Some("shop"));
        assert_eq!(f.login("bob", &t), Err(Refused::WrongUser));
        assert_eq!(
            login(&f.verifier, &[f.keys.issuer(URL)], Some("alice"), None),
            Err(Refused::Missing)
        );
        assert_eq!(f.login("alice", "secret"), Err(Refused::NotAToken));
        let t = f.token("alice", "shop/web", Some("shop"));
        assert_eq!(f.login("alice", &t), Err(Refused::WrongAudience));
        // A market credential whose application is not of the token's team.
        let t = f.token("other/web", "market:shop/orders", Some("buyer"));
        assert_eq!(f.login("other/web", &t), Err(Refused::WrongAudience));
        // The payload's team changed after signing: the signature no longer verifies.
        let t = f.token("alice", "mqtt", Some("shop"));
        let parts: Vec<&str> = t.split('.').collect();
        let claims = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        let forged = URL_SAFE_NO_PAD.encode(claims.replace("\"shop\"", "\"admin\""));
        let forged = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert!(matches!(f.login("alice", &forged), Err(Refused::Token(_))));
        // Another issuer's keys: unknown issuer.
        let other = fixture();
        let t = other.token("alice", "mqtt", Some("shop"));
        let r = login(
            &f.verifier,
            &[f.keys.issuer("http://elsewhere")],
            Some("alice"),
            Some(t.as_bytes()),
        );
        assert!(matches!(r, Err(Refused::Token(_))), "{r:?}");
    }

    #[test]
    fn user_ids_round_trip() {
        for id in [
            Identity::Team {
                team: "shop".into(),
                subject: "alice".into(),
            },
            Identity::Team {
                team: "default".into(),
                subject: "a/b:c market:x".into(),
            },
            Identity::Market {
                provider: "shop".into(),
                service: "orders".into(),
                app: "buyer/web@staging".into(),
            },
            Identity::Market {
                provider: "default".into(),
                service: "orders".into(),
                app: "web".into(),
            },
        ] {
            assert_eq!(Identity::parse(&id.user_id()), Some(id.clone()));
        }
        assert_eq!(Identity::parse("nobody"), None);
        assert_eq!(Identity::parse("Bad_Team/x"), None);
        assert_eq!(
            Identity::Market {
                provider: "shop".into(),
                service: "orders".into(),
                app: "buyer/web".into()
            }
            .team(),
            "buyer"
        );
    }
}
