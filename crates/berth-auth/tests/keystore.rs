//! Berth's own issuer: key files, issuance, JWKS round trip through the verifier, rotation.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use berth_auth::{KeyStore, KeyStoreError, Reject, Verifier, BERTH_ISSUER, RETIRED_KEY_GRACE};
use berth_core::policy::AuthPolicy;
use serde_json::{json, Value};

const URL: &str = "https://berth.example";
const HOUR: Duration = Duration::from_secs(3600);

fn policy() -> AuthPolicy {
    AuthPolicy {
        issuers: vec![BERTH_ISSUER.into()],
        audiences: vec!["shop".into()],
        team: None,
        subscribers: None,
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn at(t: u64) -> i64 {
    i64::try_from(t).unwrap()
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn open_creates_one_private_key_and_reopens_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let store = KeyStore::open(&dir).unwrap();
    let keys = store.keys();
    assert_eq!(keys.len(), 1);
    assert_eq!(mode(&dir), 0o700);
    let file = dir.join(format!("{}.pem", keys[0].kid));
    assert_eq!(mode(&file), 0o600);
    let pem = std::fs::read_to_string(&file).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));

    let again = KeyStore::open(&dir).unwrap();
    assert_eq!(again.keys(), keys);
    assert_eq!(again.jwks(), store.jwks());
}

#[test]
fn jwks_lists_public_keys_only() {
    let tmp = tempfile::tempdir().unwrap();
    let store = KeyStore::open(tmp.path()).unwrap();
    store.rotate().unwrap();
    let jwks: Value = serde_json::from_str(&store.jwks()).unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["kid"], store.current_kid(), "newest first");
    for k in keys {
        assert_eq!(k["kty"], "EC");
        assert_eq!(k["crv"], "P-256");
        assert_eq!(k["alg"], "ES256");
        assert_eq!(k["use"], "sig");
        assert!(k.get("d").is_none(), "private part leaked");
    }
    assert_eq!(berth_auth::validate_issuer(&store.issuer(URL)), Ok(2));
}

#[test]
fn issued_tokens_verify_through_the_jwks() {
    let tmp = tempfile::tempdir().unwrap();
    let store = KeyStore::open(tmp.path()).unwrap();
    let extra = BTreeMap::from([
        ("scope".to_owned(), json!("orders:read")),
        ("tenant".to_owned(), json!(42)),
    ]);
    let token = store
        .issue("ci-bot", &["shop".into()], HOUR, extra, URL)
        .unwrap();
    let issuer = store.issuer(URL);
    assert_eq!(issuer.name, "berth");
    assert_eq!(issuer.issuer, URL);
    assert!(issuer.hs256_secret.is_none());

    let v = Verifier::new();
    let got = v
        .check(&token, &policy(), std::slice::from_ref(&issuer))
        .unwrap();
    assert_eq!(got.subject, "ci-bot");
    assert_eq!(got.issuer, "berth");
    let claims: Value = serde_json::from_str(&got.claims_json).unwrap();
    assert_eq!(claims["scope"], "orders:read");
    assert_eq!(claims["tenant"], 42);
    assert_eq!(claims["aud"], "shop");
    assert_eq!(claims["iss"], URL);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        3600
    );
    assert_eq!(claims["nbf"], claims["iat"]);
    assert_eq!(claims["jti"].as_str().unwrap().len(), 32);

    // The header names the current key.
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(&support_b64(header)).unwrap();
    assert_eq!(
        header,
        json!({"alg": "ES256", "typ": "JWT", "kid": store.current_kid()})
    );

    // Several audiences become an array; any one of them is enough.
    let token = store
        .issue(
            "u",
            &["web".into(), "shop".into()],
            HOUR,
            BTreeMap::new(),
            URL,
        )
        .unwrap();
    let got = v
        .check(&token, &policy(), std::slice::from_ref(&issuer))
        .unwrap();
    let claims: Value = serde_json::from_str(&got.claims_json).unwrap();
    assert_eq!(claims["aud"], json!(["web", "shop"]));

    // Another Berth (other keys, same URL) cannot mint tokens for this one.
    let tmp2 = tempfile::tempdir().unwrap();
    let impostor = KeyStore::open(tmp2.path()).unwrap();
    let forged = impostor
        .issue("admin", &["shop".into()], HOUR, BTreeMap::new(), URL)
        .unwrap();
    assert_eq!(
        v.check(&forged, &policy(), &[issuer]),
        Err(Reject::UnknownKid)
    );
}

#[test]
fn issued_tokens_decode_with_jsonwebtoken() {
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
    let tmp = tempfile::tempdir().unwrap();
    let store = KeyStore::open(tmp.path()).unwrap();
    let token = store
        .issue("s", &["shop".into()], HOUR, BTreeMap::new(), URL)
        .unwrap();
    let set: JwkSet = serde_json::from_str(&store.jwks()).unwrap();
    let kid = decode_header(&token).unwrap().kid.unwrap();
    let key = DecodingKey::from_jwk(set.find(&kid).unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&["shop"]);
    validation.set_issuer(&[URL]);
    let data = decode::<Value>(&token, &key, &validation).unwrap();
    assert_eq!(data.claims["sub"], "s");
}

#[test]
fn issue_refuses_bad_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let store = KeyStore::open_with(tmp.path(), 2 * HOUR).unwrap();
    let aud = ["shop".to_owned()];
    let none = BTreeMap::new;
    assert!(matches!(
        store.issue("s", &aud, 3 * HOUR, none(), URL),
        Err(KeyStoreError::BadTtl { max_secs: 7200 })
    ));
    assert!(matches!(
        store.issue("s", &aud, Duration::ZERO, none(), URL),
        Err(KeyStoreError::BadTtl { .. })
    ));
    assert!(matches!(
        store.issue("s", &[], HOUR, none(), URL),
        Err(KeyStoreError::MissingSubjectOrAudience)
    ));
    assert!(matches!(
        store.issue("", &aud, HOUR, none(), URL),
        Err(KeyStoreError::MissingSubjectOrAudience)
    ));
    for reserved in berth_auth::RESERVED_CLAIMS {
        let extra = BTreeMap::from([(reserved.to_owned(), json!(1))]);
        assert!(
            matches!(
                store.issue("s", &aud, HOUR, extra, URL),
                Err(KeyStoreError::ReservedClaim(ref c)) if c == reserved
            ),
            "{reserved}"
        );
    }
}

#[test]
fn rotation_keeps_old_keys_until_their_tokens_must_be_dead() {
    let tmp = tempfile::tempdir().unwrap();
    let max_ttl = 2 * HOUR;
    let store = KeyStore::open_with(tmp.path(), max_ttl).unwrap();
    let t0 = now();
    let old_kid = store.current_kid();
    let old_token = store
        .issue_at("s", &["shop".into()], max_ttl, BTreeMap::new(), URL, t0)
        .unwrap();

    // Rotate: new tokens use the new key, the old token still verifies.
    let new_kid = store.rotate_at(t0 + 60).unwrap();
    assert_ne!(new_kid, old_kid);
    assert_eq!(store.current_kid(), new_kid);
    let new_token = store
        .issue_at("s", &["shop".into()], HOUR, BTreeMap::new(), URL, t0 + 60)
        .unwrap();
    let v = Verifier::new();
    let issuers = [store.issuer(URL)];
    for token in [&old_token, &new_token] {
        assert!(v
            .verify_at(token, &policy(), &issuers, at(t0 + 120))
            .is_ok());
    }

    // A rotation before the old key's tokens can all have expired keeps it.
    let keep_for = (max_ttl + RETIRED_KEY_GRACE).as_secs();
    store.rotate_at(t0 + 60 + keep_for - 10).unwrap();
    assert_eq!(store.keys().len(), 3);

    // Once the old key has been retired for max ttl + grace, the next rotation prunes it.
    store.rotate_at(t0 + 60 + keep_for + 1).unwrap();
    let kids: Vec<String> = store.keys().into_iter().map(|k| k.kid).collect();
    assert!(!kids.contains(&old_kid), "{kids:?}");
    assert!(kids.contains(&new_kid), "retired later, still kept");
    assert!(!tmp.path().join(format!("{old_kid}.pem")).exists());

    let issuers = [store.issuer(URL)];
    // (Checked at a time the token would otherwise still be valid.)
    assert_eq!(
        v.verify_at(&old_token, &policy(), &issuers, at(t0 + 120)),
        Err(Reject::UnknownKid)
    );
    assert!(v
        .verify_at(&new_token, &policy(), &issuers, at(t0 + 120))
        .is_ok());

    // The pruned state survives a reopen.
    let reopened = KeyStore::open_with(tmp.path(), max_ttl).unwrap();
    assert_eq!(reopened.keys(), store.keys());
    assert_eq!(reopened.current_kid(), store.current_kid());
}

#[test]
fn rapid_rotations_keep_a_strict_order() {
    let tmp = tempfile::tempdir().unwrap();
    let store = KeyStore::open(tmp.path()).unwrap();
    let t = now();
    let a = store.rotate_at(t).unwrap();
    let b = store.rotate_at(t).unwrap();
    assert_eq!(store.current_kid(), b);
    let reopened = KeyStore::open(tmp.path()).unwrap();
    assert_eq!(reopened.current_kid(), b);
    assert_ne!(a, b);
}

#[test]
fn foreign_files_in_the_key_dir() {
    let tmp = tempfile::tempdir().unwrap();
    KeyStore::open(tmp.path()).unwrap();
    // Other files are ignored.
    std::fs::write(tmp.path().join("README"), "hello").unwrap();
    assert_eq!(KeyStore::open(tmp.path()).unwrap().keys().len(), 1);
    // A .pem that is not a Berth key is an error, never silently replaced.
    std::fs::write(tmp.path().join("123-abcd.pem"), "garbage").unwrap();
    assert!(matches!(
        KeyStore::open(tmp.path()),
        Err(KeyStoreError::BadKeyFile { .. })
    ));
    std::fs::remove_file(tmp.path().join("123-abcd.pem")).unwrap();
    std::fs::write(tmp.path().join("mykey.pem"), "garbage").unwrap();
    assert!(matches!(
        KeyStore::open(tmp.path()),
        Err(KeyStoreError::BadKeyFile { .. })
    ));
}

fn support_b64(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

#[test]
fn a_berth_token_is_good_only_for_routes_of_its_team() {
    let tmp = tempfile::tempdir().unwrap();
    let store = KeyStore::open(tmp.path()).unwrap();
    let issuer = store.issuer(URL);
    let issuers = std::slice::from_ref(&issuer);
    let token = |team: Option<&str>| {
        let claims = team.map_or_else(BTreeMap::new, |t| {
            BTreeMap::from([("berth_team".to_owned(), json!(t))])
        });
        store
            .issue("u", &["shop".into()], HOUR, claims, URL)
            .unwrap()
    };
    let route = |team: Option<&str>| AuthPolicy {
        team: team.map(str::to_owned),
        ..policy()
    };
    let v = Verifier::new();
    // Team default's route: a token of team default, or one issued before teams.
    assert!(v
        .check(&token(Some("default")), &route(None), issuers)
        .is_ok());
    assert!(v.check(&token(None), &route(None), issuers).is_ok());
    // Team a's route: only team a's tokens, also when the token was verified (and cached)
    // for another route first.
    let a = token(Some("a"));
    assert_eq!(
        v.check(&a, &route(None), issuers).unwrap_err(),
        Reject::TeamNotAllowed
    );
    assert!(v.check(&a, &route(Some("a")), issuers).is_ok());
    assert_eq!(
        v.check(&a, &route(Some("b")), issuers).unwrap_err(),
        Reject::TeamNotAllowed
    );
    assert_eq!(
        v.check(&token(None), &route(Some("a")), issuers)
            .unwrap_err(),
        Reject::TeamNotAllowed
    );
    // Another issuer's tokens are not Berth's: the claim means nothing there.
    let mut other = issuer.clone();
    other.name = "a/idp".into();
    let policy = AuthPolicy {
        issuers: vec!["a/idp".into()],
        ..route(Some("a"))
    };
    assert!(v
        .check(&token(Some("b")), &policy, std::slice::from_ref(&other))
        .is_ok());
}
