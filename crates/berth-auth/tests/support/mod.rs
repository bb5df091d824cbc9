//! Test keys, token building and a standard set of issuers.
#![allow(dead_code)]

use std::sync::OnceLock;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ECDSA_P256_SHA256_ASN1_SIGNING,
    ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
};
use aws_lc_rs::{hmac, rsa};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use berth_core::policy::{AuthPolicy, Issuer};
use serde_json::{json, Value};

/// A fixed "now" so tests do not depend on the clock.
pub const NOW: i64 = 1_800_000_000;

pub const HS_SECRET: &str = "berth-test-secret-0123456789abcdef-0123456789";

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A signing key of one of the supported types.
pub enum TestKey {
    Hs(Vec<u8>),
    Rs(&'static rsa::KeyPair),
    Es(EcdsaKeyPair),
    /// ECDSA with an ASN.1 DER signature instead of JWS's fixed `r || s`.
    EsDer(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

pub fn rsa_key() -> &'static rsa::KeyPair {
    static KEY: OnceLock<rsa::KeyPair> = OnceLock::new();
    KEY.get_or_init(|| rsa::KeyPair::generate(KeySize::Rsa2048).expect("rsa keygen"))
}

pub fn rsa_key2() -> &'static rsa::KeyPair {
    static KEY: OnceLock<rsa::KeyPair> = OnceLock::new();
    KEY.get_or_init(|| rsa::KeyPair::generate(KeySize::Rsa2048).expect("rsa keygen"))
}

pub fn ec_pkcs8() -> Vec<u8> {
    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .expect("ec keygen")
        .as_ref()
        .to_vec()
}

pub fn ec_key() -> TestKey {
    TestKey::Es(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("ec keygen"))
}

pub fn ed_pkcs8() -> Vec<u8> {
    Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .expect("ed keygen")
        .as_ref()
        .to_vec()
}

pub fn ed_key() -> TestKey {
    TestKey::Ed(Ed25519KeyPair::generate().expect("ed keygen"))
}

impl TestKey {
    pub fn alg(&self) -> &'static str {
        match self {
            TestKey::Hs(_) => "HS256",
            TestKey::Rs(_) => "RS256",
            TestKey::Es(_) | TestKey::EsDer(_) => "ES256",
            TestKey::Ed(_) => "EdDSA",
        }
    }

    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            TestKey::Hs(secret) => {
                let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
                hmac::sign(&key, msg).as_ref().to_vec()
            }
            TestKey::Rs(pair) => {
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, msg, &mut sig)
                    .expect("rsa sign");
                sig
            }
            TestKey::Es(pair) => pair.sign(&rng, msg).expect("ec sign").as_ref().to_vec(),
            TestKey::EsDer(pair) => pair.sign(&rng, msg).expect("ec sign").as_ref().to_vec(),
            TestKey::Ed(pair) => pair.sign(msg).as_ref().to_vec(),
        }
    }

    /// The public key as a JWK (without `kid` when `kid` is `None`).
    pub fn jwk(&self, kid: Option<&str>) -> Value {
        let mut jwk = match self {
            TestKey::Hs(_) => panic!("no JWK for a secret"),
            TestKey::Rs(pair) => {
                let public = pair.public_key();
                json!({
                    "kty": "RSA",
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero()),
                })
            }
            TestKey::Es(pair) | TestKey::EsDer(pair) => {
                let p = pair.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&p[1..33]), "y": b64(&p[33..65])})
            }
            TestKey::Ed(pair) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())})
            }
        };
        if let Some(kid) = kid {
            jwk["kid"] = kid.into();
        }
        jwk
    }

    /// Raw public key bytes, as an attacker would feed them to HMAC in an alg-confusion attack.
    pub fn public_bytes(&self) -> Vec<u8> {
        match self {
            TestKey::Hs(s) => s.clone(),
            TestKey::Rs(pair) => pair.public_key().as_ref().to_vec(),
            TestKey::Es(pair) | TestKey::EsDer(pair) => pair.public_key().as_ref().to_vec(),
            TestKey::Ed(pair) => pair.public_key().as_ref().to_vec(),
        }
    }
}

pub fn es_der_key() -> TestKey {
    TestKey::EsDer(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("ec keygen"))
}

pub fn jwks(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

/// A token from raw header and payload JSON text, signed by `key`.
pub fn sign_raw(key: &TestKey, header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", b64(sig))
}

/// A token with header `{"alg": key.alg(), "typ": "JWT", "kid": kid}` and `claims`.
pub fn sign(key: &TestKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = json!({"alg": key.alg(), "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = kid.into();
    }
    sign_raw(key, &header.to_string(), &claims.to_string())
}

/// Valid claims for issuer URL `iss`, audience `app`, valid ten minutes around [`NOW`].
pub fn claims(iss: &str) -> Value {
    json!({
        "iss": iss,
        "sub": "alice",
        "aud": "app",
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 600,
    })
}

/// The issuers every verifier test uses, with their signing keys.
pub struct World {
    pub rs: TestKey,
    pub es: TestKey,
    pub ed: TestKey,
    pub hs: TestKey,
    pub nokid: TestKey,
    pub other: TestKey,
    pub issuers: Vec<Issuer>,
    pub policy: AuthPolicy,
}

pub const RS_ISS: &str = "https://rs.example";
pub const ES_ISS: &str = "https://es.example";
pub const ED_ISS: &str = "https://ed.example";
pub const HS_ISS: &str = "https://hs.example";
pub const NOKID_ISS: &str = "https://nokid.example";
pub const OTHER_ISS: &str = "https://other.example";

pub fn issuer(name: &str, iss: &str, jwks: Option<String>, secret: Option<&str>) -> Issuer {
    Issuer {
        name: name.into(),
        issuer: iss.into(),
        jwks,
        hs256_secret: secret.map(str::to_owned),
    }
}

impl World {
    pub fn new() -> World {
        let rs = TestKey::Rs(rsa_key());
        let es = ec_key();
        let ed = ed_key();
        let hs = TestKey::Hs(HS_SECRET.as_bytes().to_vec());
        let nokid = ec_key();
        let other = ec_key();
        let issuers = vec![
            issuer("rs", RS_ISS, Some(jwks(&[rs.jwk(Some("rs1"))])), None),
            issuer(
                "es",
                ES_ISS,
                Some(jwks(&[es.jwk(Some("es1")), ed_key().jwk(Some("es-ed"))])),
                None,
            ),
            issuer("ed", ED_ISS, Some(jwks(&[ed.jwk(Some("ed1"))])), None),
            issuer("hs", HS_ISS, None, Some(HS_SECRET)),
            issuer("nokid", NOKID_ISS, Some(jwks(&[nokid.jwk(None)])), None),
            issuer(
                "other",
                OTHER_ISS,
                Some(jwks(&[other.jwk(Some("other1"))])),
                None,
            ),
        ];
        let policy = AuthPolicy {
            issuers: ["rs", "es", "ed", "hs", "nokid"].map(String::from).to_vec(),
            audiences: vec!["app".into(), "app2".into()],
            team: None,
            subscribers: None,
        };
        World {
            rs,
            es,
            ed,
            hs,
            nokid,
            other,
            issuers,
            policy,
        }
    }
}
