//! The verifier against valid tokens of every algorithm, a table of hostile tokens, and the
//! caches.

mod support;

use berth_auth::{Reject, Verifier, LEEWAY_SECS};
use berth_core::auth::{TokenVerifier, VerifiedToken};
use berth_core::policy::AuthPolicy;
use serde_json::{json, Value};
use support::*;

fn accept(v: &Verifier, w: &World, token: &str) -> VerifiedToken {
    match v.verify_at(token, &w.policy, &w.issuers, NOW) {
        Ok(t) => t,
        Err(e) => panic!("valid token refused: {e}"),
    }
}

#[test]
fn valid_tokens_of_every_algorithm() {
    let w = World::new();
    let v = Verifier::new();
    let cases = [
        (&w.rs, Some("rs1"), RS_ISS, "rs"),
        (&w.es, Some("es1"), ES_ISS, "es"),
        (&w.ed, Some("ed1"), ED_ISS, "ed"),
        (&w.hs, None, HS_ISS, "hs"),
        (&w.nokid, None, NOKID_ISS, "nokid"),
    ];
    for (key, kid, iss, name) in cases {
        let token = sign(key, kid, &claims(iss));
        let got = accept(&v, &w, &token);
        assert_eq!(got.subject, "alice", "{name}");
        assert_eq!(got.issuer, name);
        let claims: Value = serde_json::from_str(&got.claims_json).unwrap();
        assert_eq!(claims["iss"], iss);
    }
}

#[test]
fn valid_variants() {
    let w = World::new();
    let v = Verifier::new();
    let mut c = claims(ES_ISS);
    c["aud"] = json!(["someone-else", "app2"]);
    accept(&v, &w, &sign(&w.es, Some("es1"), &c));

    // Within leeway on both ends.
    let mut c = claims(ES_ISS);
    c["exp"] = json!(NOW - LEEWAY_SECS + 1);
    c["nbf"] = json!(NOW + LEEWAY_SECS);
    accept(&v, &w, &sign(&w.es, Some("es1"), &c));

    // Fractional NumericDates, no nbf/iat, typ at+jwt, an ignored embedded jwk.
    let c = json!({"iss": ES_ISS, "sub": "bob", "aud": "app", "exp": (NOW + 60) as f64 + 0.5});
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": "es1",
                        "jwk": w.other.jwk(None)});
    accept(
        &v,
        &w,
        &sign_raw(&w.es, &header.to_string(), &c.to_string()),
    );
}

#[test]
fn tokens_signed_by_jsonwebtoken_verify() {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let ec = ec_pkcs8();
    let ed = ed_pkcs8();
    let ec_pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &ec,
    )
    .unwrap();
    let ed_pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(&ed).unwrap();
    let issuers = vec![
        issuer(
            "ec",
            ES_ISS,
            Some(jwks(&[TestKey::Es(ec_pair).jwk(Some("a"))])),
            None,
        ),
        issuer(
            "ed",
            ED_ISS,
            Some(jwks(&[TestKey::Ed(ed_pair).jwk(Some("b"))])),
            None,
        ),
        issuer("hs", HS_ISS, None, Some(HS_SECRET)),
    ];
    let policy = AuthPolicy {
        issuers: vec!["ec".into(), "ed".into(), "hs".into()],
        audiences: vec!["app".into()],
        team: None,
        subscribers: None,
    };
    let v = Verifier::new();
    let cases = [
        (
            Algorithm::ES256,
            EncodingKey::from_ec_der(&ec),
            Some("a"),
            ES_ISS,
        ),
        (
            Algorithm::EdDSA,
            EncodingKey::from_ed_der(&ed),
            Some("b"),
            ED_ISS,
        ),
        (
            Algorithm::HS256,
            EncodingKey::from_secret(HS_SECRET.as_bytes()),
            None,
            HS_ISS,
        ),
    ];
    let now = i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap();
    for (alg, key, kid, iss) in cases {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        let c = json!({"iss": iss, "sub": "s", "aud": ["app"], "exp": now + 60});
        let token = encode(&header, &c, &key).unwrap();
        let got = v.check(&token, &policy, &issuers);
        assert!(got.is_ok(), "{alg:?}: {got:?}");
    }
}

/// One hostile case: a name, the token, and the rejection expected.
struct Case {
    name: &'static str,
    token: String,
    expect: Reject,
}

fn case(name: &'static str, token: String, expect: Reject) -> Case {
    Case {
        name,
        token,
        expect,
    }
}

fn with(mut c: Value, key: &str, value: Value) -> Value {
    c[key] = value;
    c
}

fn without(mut c: Value, key: &str) -> Value {
    c.as_object_mut().unwrap().remove(key);
    c
}

fn hostile_cases(w: &World) -> Vec<Case> {
    use Reject::*;
    let es = |c: &Value| sign(&w.es, Some("es1"), c);
    let es_claims = claims(ES_ISS);
    let valid = es(&es_claims);
    let (h, p, s) = {
        let mut it = valid.split('.');
        (
            it.next().unwrap().to_owned(),
            it.next().unwrap().to_owned(),
            it.next().unwrap().to_owned(),
        )
    };
    let payload = es_claims.to_string();
    let hdr = |alg: &str| json!({"alg": alg, "typ": "JWT", "kid": "es1"}).to_string();
    let with_header = |header: Value| sign_raw(&w.es, &header.to_string(), &payload);
    let unsigned = |header: &str| format!("{}.{}.{}", b64(header), b64(&payload), b64("sig"));
    let hmac_with =
        |bytes: Vec<u8>, iss: &str, kid: &str| sign(&TestKey::Hs(bytes), Some(kid), &claims(iss));

    let mut cases = vec![
        // alg none, several spellings, and with the signature dropped.
        case(
            "alg none, empty signature",
            format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(&payload)),
            Malformed("empty segment"),
        ),
        case("alg none", unsigned(r#"{"alg":"none"}"#), AlgNone),
        case("alg None", unsigned(r#"{"alg":"None"}"#), AlgNone),
        case("alg NONE", unsigned(r#"{"alg":"NONE"}"#), AlgNone),
        case("alg nOnE", unsigned(r#"{"alg":"nOnE"}"#), AlgNone),
        case("alg ' none '", unsigned(r#"{"alg":" none "}"#), AlgNone),
        // Algorithm confusion: HMAC keyed with public key bytes, and other mix-ups.
        case(
            "HS256 with the RSA public key as secret",
            hmac_with(w.rs.public_bytes(), RS_ISS, "rs1"),
            AlgNotAllowed,
        ),
        case(
            "HS256 with the RSA JWK text as secret",
            hmac_with(
                w.rs.jwk(Some("rs1")).to_string().into_bytes(),
                RS_ISS,
                "rs1",
            ),
            AlgNotAllowed,
        ),
        case(
            "HS256 with the EC public point as secret",
            hmac_with(w.es.public_bytes(), ES_ISS, "es1"),
            AlgNotAllowed,
        ),
        case(
            "HS256 with the Ed25519 public key as secret",
            hmac_with(w.ed.public_bytes(), ED_ISS, "ed1"),
            AlgNotAllowed,
        ),
        case(
            "RS256 token for an HS256 issuer",
            sign(&w.rs, None, &claims(HS_ISS)),
            AlgNotAllowed,
        ),
        case(
            "ES256 signature labelled RS256",
            sign_raw(&w.es, &hdr("RS256"), &payload),
            AlgNotAllowed,
        ),
        case(
            "EdDSA token for an RSA-only issuer",
            sign(&w.ed, Some("rs1"), &claims(RS_ISS)),
            AlgNotAllowed,
        ),
        case(
            "EdDSA token whose kid names the issuer's ES key",
            sign(&w.ed, Some("es1"), &es_claims),
            UnknownKid,
        ),
        // Signatures.
        case(
            "signature of another key",
            sign(&ec_key(), Some("es1"), &es_claims),
            BadSignature,
        ),
        case(
            "signature bytes flipped",
            {
                let mut sig = base64_decode(&s);
                sig[10] ^= 1;
                format!("{h}.{p}.{}", b64(sig))
            },
            BadSignature,
        ),
        case(
            "payload swapped under a valid signature",
            format!(
                "{h}.{}.{s}",
                b64(with(es_claims.clone(), "sub", json!("root")).to_string())
            ),
            BadSignature,
        ),
        case(
            "ES256 signature in DER form",
            sign(&es_der_key(), Some("es1"), &es_claims),
            BadSignature,
        ),
        case(
            "RS256 signed by another RSA key",
            sign(&TestKey::Rs(rsa_key2()), Some("rs1"), &claims(RS_ISS)),
            BadSignature,
        ),
        case(
            "HS256 with the wrong secret",
            sign(
                &TestKey::Hs(b"another-secret-that-is-long-enough-0000".to_vec()),
                None,
                &claims(HS_ISS),
            ),
            BadSignature,
        ),
        case(
            "embedded jwk header with the attacker's key",
            {
                let attacker = ec_key();
                let header = json!({"alg": "ES256", "kid": "es1", "jwk": attacker.jwk(None)});
                sign_raw(&attacker, &header.to_string(), &payload)
            },
            BadSignature,
        ),
        case(
            "signature truncated",
            format!("{h}.{p}.{}", b64(&base64_decode(&s)[..60])),
            BadSignature,
        ),
        // Time.
        case(
            "expired",
            es(&with(es_claims.clone(), "exp", json!(NOW - 60))),
            Expired,
        ),
        case(
            "expired exactly at the leeway",
            es(&with(es_claims.clone(), "exp", json!(NOW - LEEWAY_SECS))),
            Expired,
        ),
        case(
            "nbf beyond the leeway",
            es(&with(es_claims.clone(), "nbf", json!(NOW + 60))),
            NotYetValid,
        ),
        case(
            "exp missing",
            es(&without(es_claims.clone(), "exp")),
            MissingClaim("exp"),
        ),
        case(
            "exp as a string",
            es(&with(es_claims.clone(), "exp", json!("1900000000"))),
            InvalidClaim("exp"),
        ),
        case(
            "exp negative",
            es(&with(es_claims.clone(), "exp", json!(-1))),
            InvalidClaim("exp"),
        ),
        case(
            "exp zero",
            es(&with(es_claims.clone(), "exp", json!(0))),
            InvalidClaim("exp"),
        ),
        case(
            "exp null",
            es(&with(es_claims.clone(), "exp", Value::Null)),
            InvalidClaim("exp"),
        ),
        case(
            "exp boolean",
            es(&with(es_claims.clone(), "exp", json!(true))),
            InvalidClaim("exp"),
        ),
        case(
            "nbf as a string",
            es(&with(es_claims.clone(), "nbf", json!("0"))),
            InvalidClaim("nbf"),
        ),
        case(
            "iat as an object",
            es(&with(es_claims.clone(), "iat", json!({}))),
            InvalidClaim("iat"),
        ),
        // Issuer.
        case(
            "unknown iss",
            es(&with(
                es_claims.clone(),
                "iss",
                json!("https://evil.example"),
            )),
            UnknownIssuer,
        ),
        case(
            "iss with a trailing slash",
            es(&with(es_claims.clone(), "iss", json!(format!("{ES_ISS}/")))),
            UnknownIssuer,
        ),
        case(
            "iss of a configured issuer the route does not accept",
            sign(&w.other, Some("other1"), &claims(OTHER_ISS)),
            IssuerNotAllowed,
        ),
        case(
            "kid of another issuer's key",
            sign(&w.other, Some("other1"), &es_claims),
            UnknownKid,
        ),
        case(
            "iss missing",
            es(&without(es_claims.clone(), "iss")),
            MissingClaim("iss"),
        ),
        case(
            "iss as an array",
            es(&with(es_claims.clone(), "iss", json!([ES_ISS]))),
            InvalidClaim("iss"),
        ),
        // Audience and subject.
        case(
            "wrong aud",
            es(&with(es_claims.clone(), "aud", json!("evil"))),
            AudienceNotAllowed,
        ),
        case(
            "aud array without a match",
            es(&with(es_claims.clone(), "aud", json!(["x", "y"]))),
            AudienceNotAllowed,
        ),
        case(
            "aud empty array",
            es(&with(es_claims.clone(), "aud", json!([]))),
            InvalidClaim("aud"),
        ),
        case(
            "aud array with a number",
            es(&with(es_claims.clone(), "aud", json!(["app", 1]))),
            InvalidClaim("aud"),
        ),
        case(
            "aud missing",
            es(&without(es_claims.clone(), "aud")),
            MissingClaim("aud"),
        ),
        case(
            "aud case differs",
            es(&with(es_claims.clone(), "aud", json!("APP"))),
            AudienceNotAllowed,
        ),
        case(
            "sub missing",
            es(&without(es_claims.clone(), "sub")),
            MissingClaim("sub"),
        ),
        case(
            "sub a number",
            es(&with(es_claims.clone(), "sub", json!(7))),
            InvalidClaim("sub"),
        ),
        // kid.
        case(
            "unknown kid",
            sign(&w.es, Some("nope"), &es_claims),
            UnknownKid,
        ),
        case(
            "kid missing where keys have kids",
            sign(&w.es, None, &es_claims),
            UnknownKid,
        ),
        case(
            "kid given for a kid-less key",
            sign(&w.nokid, Some("x"), &claims(NOKID_ISS)),
            UnknownKid,
        ),
        case(
            "kid a number",
            with_header(json!({"alg": "ES256", "kid": 1})),
            BadHeader("kid not a short non-empty string"),
        ),
        case(
            "kid empty",
            with_header(json!({"alg": "ES256", "kid": ""})),
            BadHeader("kid not a short non-empty string"),
        ),
        // Shape.
        case("empty token", String::new(), Malformed("empty token")),
        case("just dots", "..".into(), Malformed("empty segment")),
        case(
            "two segments",
            format!("{h}.{p}"),
            Malformed("not three segments"),
        ),
        case(
            "four segments",
            format!("{h}.{p}.{s}.{s}"),
            Malformed("not three segments"),
        ),
        case(
            "five segments (JWE shape)",
            format!("{h}.{p}.{s}.{s}.{s}"),
            Malformed("not three segments"),
        ),
        case(
            "signature stripped",
            format!("{h}.{p}."),
            Malformed("empty segment"),
        ),
        case(
            "trailing dot",
            format!("{valid}."),
            Malformed("empty segment"),
        ),
        case(
            "leading dot",
            format!(".{valid}"),
            Malformed("empty segment"),
        ),
        case(
            "leading space",
            format!(" {valid}"),
            Malformed("character outside base64url"),
        ),
        case(
            "trailing newline",
            format!("{valid}\n"),
            Malformed("character outside base64url"),
        ),
        case(
            "inner space",
            format!("{h}. {p}.{s}"),
            Malformed("character outside base64url"),
        ),
        case(
            "Bearer prefix left on",
            format!("Bearer {valid}"),
            Malformed("character outside base64url"),
        ),
        case(
            "padded base64",
            format!("{h}=.{p}.{s}"),
            Malformed("character outside base64url"),
        ),
        case(
            "standard base64 alphabet",
            format!("{}.{p}.{s}", h.replace('-', "+").replace('_', "/") + "+/"),
            Malformed("character outside base64url"),
        ),
        case(
            "non-canonical base64 (trailing bits)",
            // "e30" is "{}"; "e31" decodes to the same bytes with non-zero trailing bits.
            format!("e31.{p}.{s}"),
            BadHeader("not canonical base64url"),
        ),
        case(
            "impossible base64 length",
            format!("{h}a.{p}.{s}"),
            BadHeader("not canonical base64url"),
        ),
        case(
            "signature not base64url",
            format!("{h}.{p}.A"),
            Malformed("signature not base64url"),
        ),
        case(
            "non-ASCII",
            format!("{h}.{p}.{s}é"),
            Malformed("character outside base64url"),
        ),
        case(
            "huge token",
            es(&with(es_claims.clone(), "pad", json!("x".repeat(9000)))),
            Malformed("token longer than 8 KiB"),
        ),
        // Header content.
        case(
            "header not JSON",
            format!("{}.{p}.{s}", b64("alg=ES256")),
            BadHeader("not a JSON object"),
        ),
        case(
            "header a JSON array",
            format!("{}.{p}.{s}", b64(r#"["ES256"]"#)),
            BadHeader("not a JSON object"),
        ),
        case(
            "header JSON with trailing garbage",
            format!("{}.{p}.{s}", b64(format!("{}x", hdr("ES256")))),
            BadHeader("not a JSON object"),
        ),
        case(
            "header with duplicate alg",
            sign_raw(
                &w.es,
                r#"{"alg":"ES256","alg":"none","kid":"es1"}"#,
                &payload,
            ),
            BadHeader("duplicate member name"),
        ),
        case(
            "alg missing",
            with_header(json!({"kid": "es1"})),
            BadHeader("alg missing"),
        ),
        case(
            "alg a number",
            with_header(json!({"alg": 256, "kid": "es1"})),
            BadHeader("alg not a string"),
        ),
        case(
            "alg HS512",
            with_header(json!({"alg": "HS512"})),
            UnsupportedAlg,
        ),
        case(
            "alg HS384",
            with_header(json!({"alg": "HS384"})),
            UnsupportedAlg,
        ),
        case(
            "alg RS512",
            with_header(json!({"alg": "RS512"})),
            UnsupportedAlg,
        ),
        case(
            "alg PS256",
            with_header(json!({"alg": "PS256"})),
            UnsupportedAlg,
        ),
        case(
            "alg ES384",
            with_header(json!({"alg": "ES384"})),
            UnsupportedAlg,
        ),
        case(
            "alg ES256K",
            with_header(json!({"alg": "ES256K"})),
            UnsupportedAlg,
        ),
        case(
            "alg lower-case es256",
            with_header(json!({"alg": "es256", "kid": "es1"})),
            UnsupportedAlg,
        ),
        case(
            "alg with a NUL",
            with_header(json!({"alg": "ES256\u{0}", "kid": "es1"})),
            UnsupportedAlg,
        ),
        case(
            "crit header",
            with_header(json!({"alg": "ES256", "kid": "es1", "crit": ["exp"], "exp": 1})),
            CritHeader,
        ),
        case(
            "crit empty",
            with_header(json!({"alg": "ES256", "kid": "es1", "crit": []})),
            CritHeader,
        ),
        case(
            "unencoded payload (b64 false)",
            with_header(json!({"alg": "ES256", "kid": "es1", "b64": false})),
            UnsupportedHeader("b64"),
        ),
        case(
            "JWE enc header",
            with_header(json!({"alg": "ES256", "kid": "es1", "enc": "A256GCM"})),
            UnsupportedHeader("enc"),
        ),
        case(
            "zip header",
            with_header(json!({"alg": "ES256", "kid": "es1", "zip": "DEF"})),
            UnsupportedHeader("zip"),
        ),
        case(
            "nested token (cty JWT)",
            with_header(json!({"alg": "ES256", "kid": "es1", "cty": "JWT"})),
            UnsupportedHeader("cty"),
        ),
        case(
            "typ JWE",
            with_header(json!({"alg": "ES256", "kid": "es1", "typ": "JWE"})),
            UnsupportedHeader("typ"),
        ),
        case(
            "typ a number",
            with_header(json!({"alg": "ES256", "kid": "es1", "typ": 1})),
            UnsupportedHeader("typ"),
        ),
        case(
            "typ secevent",
            with_header(json!({"alg": "ES256", "kid": "es1", "typ": "secevent+jwt"})),
            UnsupportedHeader("typ"),
        ),
        // Payload content.
        case(
            "payload not JSON",
            sign_raw(&w.es, &hdr("ES256"), "sub=root"),
            BadClaims("not a JSON object"),
        ),
        case(
            "payload a JSON string",
            sign_raw(&w.es, &hdr("ES256"), r#""claims""#),
            BadClaims("not a JSON object"),
        ),
        case(
            "payload null",
            sign_raw(&w.es, &hdr("ES256"), "null"),
            BadClaims("not a JSON object"),
        ),
        case(
            "payload with duplicate exp",
            sign_raw(
                &w.es,
                &hdr("ES256"),
                &format!(
                    r#"{{"iss":"{ES_ISS}","sub":"a","aud":"app","exp":1,"exp":{}}}"#,
                    NOW + 600
                ),
            ),
            BadClaims("duplicate member name"),
        ),
        case(
            "payload not UTF-8",
            {
                let input = format!("{}.{}", b64(hdr("ES256")), b64(b"{\"sub\":\"\xff\"}"));
                let sig = w.es.sign(input.as_bytes());
                format!("{input}.{}", b64(sig))
            },
            BadClaims("not a JSON object"),
        ),
        case(
            "deeply nested claims",
            sign_raw(
                &w.es,
                &hdr("ES256"),
                &format!("{}{}", "[".repeat(200), "]".repeat(200)),
            ),
            BadClaims("not a JSON object"),
        ),
    ];
    // The same valid signature under every other issuer name still fails.
    cases.push(case(
        "valid ES256 token presented for an RS issuer",
        es(&claims(RS_ISS)),
        AlgNotAllowed,
    ));
    cases
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

#[test]
fn hostile_tokens_are_all_rejected() {
    let w = World::new();
    let v = Verifier::new();
    // The untouched token of the table really is valid, so each case fails for its own reason.
    accept(&v, &w, &sign(&w.es, Some("es1"), &claims(ES_ISS)));

    let cases = hostile_cases(&w);
    assert!(cases.len() >= 30, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        match v.verify_at(&c.token, &w.policy, &w.issuers, NOW) {
            Ok(t) => failures.push(format!("{}: ACCEPTED ({})", c.name, t.subject)),
            Err(e) if e != c.expect => {
                failures.push(format!("{}: {e:?}, expected {:?}", c.name, c.expect));
            }
            Err(_) => {}
        }
        // And through the trait the gateway uses.
        let dynv: &dyn TokenVerifier = &v;
        assert!(
            dynv.verify(&c.token, &w.policy, &w.issuers).is_err(),
            "{}",
            c.name
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!("{} hostile tokens rejected", cases.len());
}

#[test]
fn failure_reason_reaches_the_trait() {
    let w = World::new();
    let v = Verifier::new();
    // The trait uses the real clock.
    let now = NOW.min(berth_auth_now());
    let c = json!({"iss": ES_ISS, "sub": "a", "aud": "app", "exp": now + 3600});
    let token = sign(&w.es, Some("nope"), &c);
    let err = TokenVerifier::verify(&v, &token, &w.policy, &w.issuers).unwrap_err();
    assert_eq!(err.reason, "unknown kid");
}

#[test]
fn empty_policy_accepts_nothing() {
    let w = World::new();
    let v = Verifier::new();
    let token = sign(&w.es, Some("es1"), &claims(ES_ISS));
    let none = AuthPolicy::default();
    assert_eq!(
        v.verify_at(&token, &none, &w.issuers, NOW),
        Err(Reject::IssuerNotAllowed)
    );
    let no_aud = AuthPolicy {
        issuers: w.policy.issuers.clone(),
        audiences: vec![],
        team: None,
        subscribers: None,
    };
    assert_eq!(
        v.verify_at(&token, &no_aud, &w.issuers, NOW),
        Err(Reject::AudienceNotAllowed)
    );
}

#[test]
fn weak_hs256_secret_is_refused() {
    let short = "short-secret";
    let issuers = vec![issuer("hs", HS_ISS, None, Some(short))];
    let policy = AuthPolicy {
        issuers: vec!["hs".into()],
        audiences: vec!["app".into()],
        team: None,
        subscribers: None,
    };
    let token = sign(
        &TestKey::Hs(short.as_bytes().to_vec()),
        None,
        &claims(HS_ISS),
    );
    assert_eq!(
        Verifier::new().verify_at(&token, &policy, &issuers, NOW),
        Err(Reject::AlgNotAllowed)
    );
    assert_eq!(
        berth_auth::validate_issuer(&issuers[0]),
        Err(berth_auth::KeyError::WeakSecret)
    );
}

#[test]
fn validate_issuer_reports_bad_keys() {
    use berth_auth::{validate_issuer, KeyError};
    let w = World::new();
    assert_eq!(validate_issuer(&w.issuers[1]), Ok(2));
    let bad = |jwks: &str| validate_issuer(&issuer("x", "x", Some(jwks.into()), None));
    assert_eq!(bad("[]"), Err(KeyError::NotAJwks));
    assert_eq!(bad(r#"{"keys":[]}"#), Err(KeyError::NoKeys));
    for (jwk, why) in [
        (json!({"kty": "oct", "k": "c2VjcmV0"}), "symmetric"),
        (
            json!({"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}),
            "P-384",
        ),
        (
            json!({"kty": "EC", "crv": "P-256", "x": b64([1; 32]), "y": b64([2; 32])}),
            "off-curve",
        ),
        (
            json!({"kty": "RSA", "n": b64([0xff; 128]), "e": "AQAB"}),
            "1024-bit RSA",
        ),
        (
            with(w.es.jwk(Some("k")), "alg", json!("RS256")),
            "alg mismatch",
        ),
    ] {
        assert!(
            matches!(bad(&jwks(&[jwk])), Err(KeyError::BadKey { index: 0, .. })),
            "{why}"
        );
    }
    // Encryption keys are skipped, not errors; alone they leave no usable key.
    assert_eq!(
        bad(&jwks(&[with(w.es.jwk(Some("k")), "use", json!("enc"))])),
        Err(KeyError::NoKeys)
    );
}

#[test]
fn asymmetric_tokens_are_verified_once_then_cached() {
    let w = World::new();
    let v = Verifier::new();
    for (key, kid, iss) in [
        (&w.rs, Some("rs1"), RS_ISS),
        (&w.es, Some("es1"), ES_ISS),
        (&w.ed, Some("ed1"), ED_ISS),
    ] {
        let token = sign(key, kid, &claims(iss));
        let before = v.signature_checks();
        let first = accept(&v, &w, &token);
        assert_eq!(v.signature_checks(), before + 1);
        let hits = v.cache_hits();
        let second = accept(&v, &w, &token);
        assert_eq!(
            v.signature_checks(),
            before + 1,
            "second verify did signature work"
        );
        assert_eq!(v.cache_hits(), hits + 1);
        assert_eq!(first, second);
    }
    assert_eq!(v.cached_tokens(), 3);

    // HS256 is cached too: the gateway benchmark measured a hit cheaper than parse + HMAC.
    let token = sign(&w.hs, None, &claims(HS_ISS));
    accept(&v, &w, &token);
    accept(&v, &w, &token);
    assert_eq!(v.signature_checks(), 4);
    assert_eq!(v.cached_tokens(), 4);
}

#[test]
fn cached_tokens_still_meet_policy_and_clock() {
    let w = World::new();
    let v = Verifier::new();
    let token = sign(&w.rs, Some("rs1"), &claims(RS_ISS));
    accept(&v, &w, &token);
    let checks = v.signature_checks();

    let other_aud = AuthPolicy {
        issuers: w.policy.issuers.clone(),
        audiences: vec!["billing".into()],
        team: None,
        subscribers: None,
    };
    assert_eq!(
        v.verify_at(&token, &other_aud, &w.issuers, NOW),
        Err(Reject::AudienceNotAllowed)
    );
    let other_issuers = AuthPolicy {
        issuers: vec!["es".into()],
        audiences: w.policy.audiences.clone(),
        team: None,
        subscribers: None,
    };
    assert_eq!(
        v.verify_at(&token, &other_issuers, &w.issuers, NOW),
        Err(Reject::IssuerNotAllowed)
    );
    assert_eq!(
        v.verify_at(&token, &w.policy, &w.issuers, NOW + 600 + LEEWAY_SECS),
        Err(Reject::Expired)
    );
    // The issuer's iss changed in configuration: the cached claims no longer match it.
    let mut moved = w.issuers.clone();
    moved[0].issuer = "https://moved.example".into();
    assert_eq!(
        v.verify_at(&token, &w.policy, &moved, NOW),
        Err(Reject::UnknownIssuer)
    );
    assert_eq!(
        v.signature_checks(),
        checks,
        "policy refusals need no signature work"
    );
    accept(&v, &w, &token);
}

#[test]
fn changed_key_material_invalidates_cached_tokens() {
    let w = World::new();
    let v = Verifier::new();
    let token = sign(&w.es, Some("es1"), &claims(ES_ISS));
    accept(&v, &w, &token);

    // Same kid, different key: the cached verdict must not survive.
    let mut replaced = w.issuers.clone();
    replaced[1].jwks = Some(jwks(&[ec_key().jwk(Some("es1"))]));
    let checks = v.signature_checks();
    assert_eq!(
        v.verify_at(&token, &w.policy, &replaced, NOW),
        Err(Reject::BadSignature)
    );
    assert_eq!(v.signature_checks(), checks + 1);

    // Key added (rotation at the issuer): verified again once, then cached again.
    let mut rotated = w.issuers.clone();
    rotated[1].jwks = Some(jwks(&[ec_key().jwk(Some("es2")), w.es.jwk(Some("es1"))]));
    assert!(v.verify_at(&token, &w.policy, &rotated, NOW).is_ok());
    assert!(v.verify_at(&token, &w.policy, &rotated, NOW).is_ok());
    assert_eq!(v.signature_checks(), checks + 2);
}

#[test]
fn keys_are_parsed_once_per_key_material() {
    let w = World::new();
    let v = Verifier::new();
    for i in 0..50 {
        let mut c = claims(ES_ISS);
        c["jti"] = json!(i);
        accept(&v, &w, &sign(&w.es, Some("es1"), &c));
        accept(
            &v,
            &w,
            &sign(&w.hs, None, &with(claims(HS_ISS), "jti", json!(i))),
        );
    }
    assert_eq!(v.key_parses(), 2);
}

#[test]
fn token_cache_is_bounded() {
    let w = World::new();
    let v = Verifier::with_cache_capacity(4);
    for i in 0..10 {
        let c = with(claims(ED_ISS), "jti", json!(i));
        accept(&v, &w, &sign(&w.ed, Some("ed1"), &c));
    }
    assert_eq!(v.cached_tokens(), 4);
}

#[test]
fn verifier_is_shareable_across_threads() {
    let w = std::sync::Arc::new(World::new());
    let v = std::sync::Arc::new(Verifier::new());
    let token = sign(&w.es, Some("es1"), &claims(ES_ISS));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (w, v, token) = (w.clone(), v.clone(), token.clone());
            std::thread::spawn(move || {
                for _ in 0..100 {
                    assert!(v.verify_at(&token, &w.policy, &w.issuers, NOW).is_ok());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(v.signature_checks() <= 4);
    assert!(v.cache_hits() >= 396);
}

fn berth_auth_now() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(d.as_secs()).unwrap()
}

/// What a verification says may be remembered is exactly when the verifier accepts the token:
/// checked one second inside and outside each end, with and without `nbf`.
#[test]
fn the_reported_validity_is_the_accepted_time_window() {
    let w = World::new();
    let mut with_nbf = claims(ES_ISS);
    with_nbf["nbf"] = json!(NOW - 30);
    for c in [claims(ES_ISS), with_nbf] {
        let token = sign(&w.es, Some("es1"), &c);
        // A fresh verifier each time: no cache hit decides in its place.
        let at = |now: i64| Verifier::new().verify_at(&token, &w.policy, &w.issuers, now);
        let valid = at(NOW)
            .unwrap()
            .valid
            .expect("a verified token has a window");
        assert_eq!(valid.end, c["exp"].as_i64().unwrap() + LEEWAY_SECS);
        assert!(at(valid.end - 1).is_ok());
        assert_eq!(at(valid.end).unwrap_err(), Reject::Expired);
        if let Some(nbf) = c["nbf"].as_i64() {
            assert_eq!(valid.start, nbf - LEEWAY_SECS);
            assert!(at(valid.start).is_ok());
            assert_eq!(at(valid.start - 1).unwrap_err(), Reject::NotYetValid);
        } else {
            assert_eq!(valid.start, i64::MIN);
        }
    }
}
