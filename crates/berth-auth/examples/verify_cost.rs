//! What a verification costs, per algorithm, with and without the verified-token cache.
//!
//! `cargo run --release -p berth-auth --example verify_cost`
//!
//! Prints microseconds per verification: "cold" verifies a fresh token each time (signature
//! work), "cached" repeats one token (cache hit), and their ratio.

use std::time::Instant;

use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{self, KeySize};
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use berth_auth::Verifier;
use berth_core::policy::{AuthPolicy, Issuer};
use serde_json::json;

const N: u32 = 2_000;

fn b64(b: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn main() {
    let rng = SystemRandom::new();
    let rsa = rsa::KeyPair::generate(KeySize::Rsa2048).expect("rsa");
    let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("ec");
    let ed = Ed25519KeyPair::generate().expect("ed");
    let secret = "bench-secret-bench-secret-bench-secret";
    let hs = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());

    let p = ec.public_key().as_ref();
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "rs",
         "n": b64(rsa.public_key().modulus().big_endian_without_leading_zero()),
         "e": b64(rsa.public_key().exponent().big_endian_without_leading_zero())},
        {"kty": "EC", "crv": "P-256", "kid": "es", "x": b64(&p[1..33]), "y": b64(&p[33..65])},
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64(ed.public_key().as_ref())},
    ]})
    .to_string();
    let issuers = [Issuer {
        name: "bench".into(),
        issuer: "https://bench".into(),
        jwks: Some(jwks),
        hs256_secret: Some(secret.into()),
    }];
    let policy = AuthPolicy {
        issuers: vec!["bench".into()],
        audiences: vec!["app".into()],
        team: None,
        subscribers: None,
    };
    let now = 1_800_000_000i64;

    let sign = |alg: &str, kid: Option<&str>, i: u32| -> String {
        let header = match kid {
            Some(kid) => json!({"alg": alg, "kid": kid}),
            None => json!({"alg": alg}),
        };
        let claims = json!({"iss": "https://bench", "sub": "u", "aud": "app",
                            "exp": now + 600, "jti": i});
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let sig = match alg {
            "RS256" => {
                let mut sig = vec![0; rsa.public_modulus_len()];
                rsa.sign(&RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut sig)
                    .expect("sign");
                sig
            }
            "ES256" => ec
                .sign(&rng, input.as_bytes())
                .expect("sign")
                .as_ref()
                .to_vec(),
            "EdDSA" => ed.sign(input.as_bytes()).as_ref().to_vec(),
            _ => hmac::sign(&hs, input.as_bytes()).as_ref().to_vec(),
        };
        format!("{input}.{}", b64(sig))
    };

    println!("alg    cold µs  cached µs  cold/cached");
    for (alg, kid) in [
        ("RS256", Some("rs")),
        ("ES256", Some("es")),
        ("EdDSA", Some("ed")),
        ("HS256", None),
    ] {
        let tokens: Vec<String> = (0..N).map(|i| sign(alg, kid, i)).collect();
        let v = Verifier::with_cache_capacity(0);
        let start = Instant::now();
        for t in &tokens {
            v.verify_at(t, &policy, &issuers, now).expect("valid");
        }
        let cold = start.elapsed().as_secs_f64() * 1e6 / f64::from(N);

        let v = Verifier::new();
        v.verify_at(&tokens[0], &policy, &issuers, now)
            .expect("valid");
        let start = Instant::now();
        for _ in 0..N {
            v.verify_at(&tokens[0], &policy, &issuers, now)
                .expect("valid");
        }
        let cached = start.elapsed().as_secs_f64() * 1e6 / f64::from(N);
        println!("{alg}  {cold:9.1}  {cached:9.1}  {:9.1}", cold / cached);
    }
}
