//! PEM public keys → JWKS: keys generated here, converted, and proven by verifying tokens
//! signed with the matching private keys; then the files that must be refused.

mod support;

use aws_lc_rs::agreement;
use aws_lc_rs::encoding::{AsBigEndian as _, AsDer as _, EcPublicKeyCompressedBin};
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_FIXED_SIGNING,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use berth_auth::{jwks_from_public_pem, validate_issuer, PemError, Reject, Verifier};
use berth_core::auth::VerifiedToken;
use berth_core::policy::AuthPolicy;
use serde_json::Value;
use support::*;

const ISS: &str = "https://pem.example";

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn rsa_spki() -> Vec<u8> {
    rsa_key().public_key().as_der().unwrap().as_ref().to_vec()
}

fn rsa_pkcs1() -> Vec<u8> {
    rsa_key().public_key().as_ref().to_vec()
}

fn ec_pair() -> EcdsaKeyPair {
    EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap()
}

fn ec_spki(pair: &EcdsaKeyPair) -> Vec<u8> {
    pair.public_key().as_der().unwrap().as_ref().to_vec()
}

fn ed_spki(pair: &Ed25519KeyPair) -> Vec<u8> {
    pair.public_key().as_der().unwrap().as_ref().to_vec()
}

fn verify(jwks: &str, key: &TestKey, kid: Option<&str>) -> Result<VerifiedToken, Reject> {
    let issuers = vec![issuer("pem", ISS, Some(jwks.to_owned()), None)];
    let policy = AuthPolicy {
        issuers: vec!["pem".into()],
        audiences: vec!["app".into()],
        team: None,
        subscribers: None,
    };
    Verifier::new().verify_at(&sign(key, kid, &claims(ISS)), &policy, &issuers, NOW)
}

fn keys(jwks: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(jwks).unwrap();
    v["keys"].as_array().unwrap().clone()
}

#[test]
fn rsa_spki_and_pkcs1_convert_and_verify() {
    let rs = TestKey::Rs(rsa_key());
    let expected = rs.jwk(None);
    for (label, der) in [("PUBLIC KEY", rsa_spki()), ("RSA PUBLIC KEY", rsa_pkcs1())] {
        let jwks = jwks_from_public_pem(&pem(label, &der), Some("r1")).unwrap();
        let k = keys(&jwks);
        assert_eq!(k.len(), 1, "{label}");
        let jwk = &k[0];
        assert_eq!(jwk["kty"], "RSA");
        assert_eq!(jwk["n"], expected["n"], "{label}");
        assert_eq!(jwk["e"], expected["e"], "{label}");
        assert_eq!(jwk["alg"], "RS256");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["kid"], "r1");
        assert_eq!(
            validate_issuer(&issuer("pem", ISS, Some(jwks.clone()), None)),
            Ok(1)
        );

        assert_eq!(verify(&jwks, &rs, Some("r1")).unwrap().subject, "alice");
        let other = TestKey::Rs(rsa_key2());
        assert_eq!(
            verify(&jwks, &other, Some("r1")).unwrap_err(),
            Reject::BadSignature
        );
        assert_eq!(
            verify(&jwks, &rs, Some("nope")).unwrap_err(),
            Reject::UnknownKid
        );
    }
}

#[test]
fn ec_p256_converts_and_verifies() {
    let pair = ec_pair();
    let spki = ec_spki(&pair);
    let point = pair.public_key().as_ref().to_vec();
    let jwks = jwks_from_public_pem(&pem("PUBLIC KEY", &spki), Some("e1")).unwrap();
    let jwk = &keys(&jwks)[0];
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["crv"], "P-256");
    assert_eq!(jwk["x"], b64(&point[1..33]));
    assert_eq!(jwk["y"], b64(&point[33..65]));
    assert_eq!(jwk["alg"], "ES256");
    assert_eq!(jwk["use"], "sig");
    assert_eq!(jwk["kid"], "e1");
    let key = TestKey::Es(pair);
    assert_eq!(verify(&jwks, &key, Some("e1")).unwrap().subject, "alice");
    if let TestKey::Es(other) = ec_key() {
        assert_eq!(
            verify(&jwks, &TestKey::Es(other), Some("e1")).unwrap_err(),
            Reject::BadSignature
        );
    }
}

#[test]
fn ed25519_converts_and_verifies() {
    let pair = Ed25519KeyPair::generate().unwrap();
    let spki = ed_spki(&pair);
    let jwks = jwks_from_public_pem(&pem("PUBLIC KEY", &spki), Some("d1")).unwrap();
    let jwk = &keys(&jwks)[0];
    assert_eq!(jwk["kty"], "OKP");
    assert_eq!(jwk["crv"], "Ed25519");
    assert_eq!(jwk["x"], b64(pair.public_key().as_ref()));
    assert_eq!(jwk["alg"], "EdDSA");
    assert_eq!(jwk["use"], "sig");
    assert_eq!(jwk["kid"], "d1");
    let key = TestKey::Ed(pair);
    assert_eq!(verify(&jwks, &key, Some("d1")).unwrap().subject, "alice");
    assert_eq!(
        verify(&jwks, &ed_key(), Some("d1")).unwrap_err(),
        Reject::BadSignature
    );
}

#[test]
fn without_kid_a_single_key_accepts_kidless_tokens() {
    let pair = ec_pair();
    let jwks = jwks_from_public_pem(&pem("PUBLIC KEY", &ec_spki(&pair)), None).unwrap();
    assert!(keys(&jwks)[0].get("kid").is_none());
    assert_eq!(
        verify(&jwks, &TestKey::Es(pair), None).unwrap().subject,
        "alice"
    );
}

#[test]
fn several_blocks_get_numbered_kids() {
    let ec = ec_pair();
    let ed = Ed25519KeyPair::generate().unwrap();
    // CRLF line ends, indentation and explanatory text between blocks, as found in the wild.
    let file = format!(
        "Issuer signing keys\r\n{}\r\nnext key:\n{}  {}",
        pem("RSA PUBLIC KEY", &rsa_pkcs1()).replace('\n', "\r\n"),
        pem("PUBLIC KEY", &ec_spki(&ec)),
        pem("PUBLIC KEY", &ed_spki(&ed)).replace('\n', "\n  "),
    );
    let jwks = jwks_from_public_pem(&file, Some("k")).unwrap();
    let k = keys(&jwks);
    let kids: Vec<&str> = k.iter().map(|j| j["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, ["k-1", "k-2", "k-3"]);
    let algs: Vec<&str> = k.iter().map(|j| j["alg"].as_str().unwrap()).collect();
    assert_eq!(algs, ["RS256", "ES256", "EdDSA"]);
    assert_eq!(
        validate_issuer(&issuer("pem", ISS, Some(jwks.clone()), None)),
        Ok(3)
    );

    let (rs, es, ed) = (TestKey::Rs(rsa_key()), TestKey::Es(ec), TestKey::Ed(ed));
    verify(&jwks, &rs, Some("k-1")).unwrap();
    verify(&jwks, &es, Some("k-2")).unwrap();
    verify(&jwks, &ed, Some("k-3")).unwrap();
    // The key decides the algorithm: an ES256 token naming the RSA key's kid is refused.
    assert_eq!(
        verify(&jwks, &es, Some("k-1")).unwrap_err(),
        Reject::UnknownKid
    );

    // Without a kid: one key per algorithm, so kid-less tokens of each verify.
    let jwks = jwks_from_public_pem(&file, None).unwrap();
    assert!(keys(&jwks).iter().all(|j| j.get("kid").is_none()));
    for key in [&rs, &es, &ed] {
        verify(&jwks, key, None).unwrap();
    }
}

#[test]
fn private_keys_are_refused() {
    let private = [
        ("PRIVATE KEY", ec_pkcs8()),
        ("PRIVATE KEY", ed_pkcs8()),
        ("RSA PRIVATE KEY", vec![0x30, 0x00]),
        ("EC PRIVATE KEY", vec![0x30, 0x00]),
        ("ENCRYPTED PRIVATE KEY", vec![0x30, 0x00]),
        ("OPENSSH PRIVATE KEY", vec![0x30, 0x00]),
    ];
    for (label, der) in &private {
        let err = jwks_from_public_pem(&pem(label, der), Some("k")).unwrap_err();
        assert_eq!(
            err,
            PemError::PrivateKey {
                block: 1,
                label: (*label).to_owned()
            }
        );
        assert!(err.to_string().contains("private key"), "{err}");
    }
    // A public key followed by its private key: the whole file is refused.
    let file = pem("PUBLIC KEY", &rsa_spki()) + &pem("PRIVATE KEY", &ec_pkcs8());
    assert!(matches!(
        jwks_from_public_pem(&file, None),
        Err(PemError::PrivateKey { block: 2, .. })
    ));
    // Reported even after another refused block (`openssl ecparam -genkey` output).
    let file = pem("EC PARAMETERS", &[0x06, 0x01, 0x00]) + &pem("EC PRIVATE KEY", &[0x30, 0x00]);
    assert!(matches!(
        jwks_from_public_pem(&file, None),
        Err(PemError::PrivateKey { block: 2, .. })
    ));
    // Legacy encrypted PEM, with headers.
    let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
                  DEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
    assert!(matches!(
        jwks_from_public_pem(legacy, None),
        Err(PemError::PrivateKey { block: 1, .. })
    ));
}

#[test]
fn certificates_and_other_blocks_are_refused() {
    let body = [0x30, 0x03, 0x02, 0x01, 0x00];
    for label in ["CERTIFICATE", "TRUSTED CERTIFICATE", "X509 CERTIFICATE"] {
        let err = jwks_from_public_pem(&pem(label, &body), None).unwrap_err();
        assert!(
            matches!(&err, PemError::Certificate { block: 1, label: l } if l == label),
            "{err:?}"
        );
        assert!(err.to_string().contains("certificate"), "{err}");
    }
    let chain = pem("PUBLIC KEY", &rsa_spki()) + &pem("CERTIFICATE", &body);
    assert!(matches!(
        jwks_from_public_pem(&chain, None),
        Err(PemError::Certificate { block: 2, .. })
    ));
    for label in [
        "CERTIFICATE REQUEST",
        "X509 CRL",
        "EC PARAMETERS",
        "DH PARAMETERS",
    ] {
        assert!(
            matches!(
                jwks_from_public_pem(&pem(label, &body), None),
                Err(PemError::NotAPublicKey { block: 1, .. })
            ),
            "{label}"
        );
    }
}

#[test]
fn garbage_is_refused() {
    let valid = pem("PUBLIC KEY", &rsa_spki());
    for text in [
        "",
        "hello",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH0 user@host",
        r#"{"keys":[]}"#,
    ] {
        assert_eq!(jwks_from_public_pem(text, None), Err(PemError::NoPemBlock));
    }
    let malformed = |text: &str| {
        matches!(
            jwks_from_public_pem(text, None),
            Err(PemError::Malformed { block: 1, .. })
        )
    };
    // Framing.
    assert!(malformed(&valid.replace("-----END PUBLIC KEY-----\n", "")));
    assert!(malformed(
        &valid.replace("END PUBLIC KEY", "END RSA PUBLIC KEY")
    ));
    assert!(malformed(
        "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n"
    ));
    assert!(malformed("-----END PUBLIC KEY-----\n"));
    assert!(malformed(&format!("-----BEGIN PUBLIC KEY-----\n{valid}")));
    // Base64.
    assert!(malformed(&valid.replacen("MII", "M*I", 1)));
    assert!(malformed(
        "-----BEGIN PUBLIC KEY-----\nnot base64 at all!\n-----END PUBLIC KEY-----\n"
    ));
    // DER: random bytes, trailing bytes, an SPKI under the PKCS#1 label.
    assert!(malformed(&pem("PUBLIC KEY", b"definitely not DER")));
    let mut trailing = rsa_spki();
    trailing.push(0);
    assert!(malformed(&pem("PUBLIC KEY", &trailing)));
    assert!(malformed(&pem("RSA PUBLIC KEY", &rsa_spki())));
    assert!(malformed(&pem("PUBLIC KEY", &rsa_pkcs1())));
}

#[test]
fn truncated_der_is_refused() {
    let ed = Ed25519KeyPair::generate().unwrap();
    let cases = [
        ("PUBLIC KEY", rsa_spki()),
        ("RSA PUBLIC KEY", rsa_pkcs1()),
        ("PUBLIC KEY", ec_spki(&ec_pair())),
        ("PUBLIC KEY", ed_spki(&ed)),
    ];
    for (label, der) in cases {
        for len in 1..der.len() {
            let got = jwks_from_public_pem(&pem(label, &der[..len]), None);
            assert!(
                matches!(got, Err(PemError::Malformed { block: 1, .. })),
                "{label} cut to {len} of {} bytes: {got:?}",
                der.len()
            );
        }
        // The uncut key converts.
        assert!(jwks_from_public_pem(&pem(label, &der), None).is_ok());
    }
}

#[test]
fn unsupported_keys_are_refused() {
    let unsupported = |der: &[u8], needle: &str| {
        let err = jwks_from_public_pem(&pem("PUBLIC KEY", der), None).unwrap_err();
        assert!(
            matches!(&err, PemError::UnsupportedKey { block: 1, reason } if reason.contains(needle)),
            "{err:?}"
        );
    };
    let p384 = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
    unsupported(p384.public_key().as_der().unwrap().as_ref(), "P-384");

    let x25519 = agreement::PrivateKey::generate(&agreement::X25519)
        .unwrap()
        .compute_public_key()
        .unwrap();
    unsupported(x25519.as_der().unwrap().as_ref(), "X25519");

    // A compressed P-256 point.
    let ec = ec_pair();
    let compressed: EcPublicKeyCompressedBin = ec.public_key().as_be_bytes().unwrap();
    let mut der = hex_decode("3039301306072a8648ce3d020106082a8648ce3d030107032200");
    der.extend_from_slice(compressed.as_ref());
    unsupported(&der, "compressed");

    // A point that is not on the curve.
    let mut spki = ec_spki(&ec);
    let last = spki.len() - 1;
    spki[last] ^= 1;
    unsupported(&spki, "not on the curve");

    // A 1024-bit RSA key (PKCS#1: SEQUENCE { INTEGER n, INTEGER 65537 }).
    let mut n = vec![0xc5; 129];
    n[0] = 0;
    let mut pkcs1 = vec![0x30, 0x81, 0x89, 0x02, 0x81, 0x81];
    pkcs1.extend(&n);
    pkcs1.extend([0x02, 0x03, 0x01, 0x00, 0x01]);
    let err = jwks_from_public_pem(&pem("RSA PUBLIC KEY", &pkcs1), None).unwrap_err();
    assert!(
        matches!(&err, PemError::UnsupportedKey { reason, .. } if reason.contains("2048")),
        "{err:?}"
    );

    // An unknown algorithm OID is named in the message.
    let mut other = ed_spki(&Ed25519KeyPair::generate().unwrap());
    other[8] = 0x7f; // 1.3.101.112 → 1.3.101.127
    unsupported(&other, "1.3.101.127");

    assert_eq!(
        jwks_from_public_pem(&pem("PUBLIC KEY", &rsa_spki()), Some("")),
        Err(PemError::EmptyKid)
    );
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
