//! Secrets: token generation and hashing, password hashing and verification (argon2id).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use rand::rngs::OsRng;
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};

/// Every token starts with this.
pub const TOKEN_PREFIX: &str = "berth_";
/// `berth_` + 43 base64url characters (32 bytes).
pub const TOKEN_LEN: usize = TOKEN_PREFIX.len() + 43;
/// The shortest password accepted.
pub const MIN_PASSWORD: usize = 8;
/// The longest password accepted (argon2 takes any length; this bounds the work per request).
pub const MAX_PASSWORD: usize = 1024;
/// Length of a generated password (alphanumeric: ~119 bits).
pub const GENERATED_PASSWORD: usize = 20;

/// A new token secret: `berth_` + 32 bytes from the OS, base64url without padding.
#[must_use]
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Could this be a token Berth issued? (Cheap shape check before any lookup.)
#[must_use]
pub fn looks_like_token(t: &str) -> bool {
    t.len() == TOKEN_LEN
        && t.starts_with(TOKEN_PREFIX)
        && t[TOKEN_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What the store keeps of a token: SHA-256 of the whole secret, lowercase hex.
#[must_use]
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random password (letters and digits), for a first start or `user add` without one.
#[must_use]
pub fn new_password() -> String {
    OsRng
        .sample_iter(rand::distributions::Alphanumeric)
        .take(GENERATED_PASSWORD)
        .map(char::from)
        .collect()
}

/// A random alphanumeric suffix (lowercase), for session names.
#[must_use]
pub fn short_id(n: usize) -> String {
    (0..n)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[OsRng.gen_range(0..36)]))
        .collect()
}

/// argon2id with the OWASP parameters: 19 MiB, 2 passes, 1 lane.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hash a password (a PHC string, salt included). CPU-heavy: call it on the bounded pool.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    OsRng.fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Does `password` match the PHC string `hash`? Constant-time in the comparison; a malformed
/// hash never matches. CPU-heavy: call it on the bounded pool.
#[must_use]
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn tokens_have_the_documented_shape_and_do_not_repeat() {
        let mut seen = HashSet::new();
        for _ in 0..1000 {
            let t = new_token();
            assert_eq!(t.len(), TOKEN_LEN);
            assert!(looks_like_token(&t), "{t}");
            assert!(seen.insert(t));
        }
        assert!(!looks_like_token("berth_short"));
        assert!(!looks_like_token(&format!("xxxxx_{}", &new_token()[6..])));
        assert!(!looks_like_token(&format!(
            "{}!",
            &new_token()[..TOKEN_LEN - 1]
        )));
    }

    #[test]
    fn token_bits_look_uniform() {
        // 32 random bytes per token: over 400 tokens each of the 256 bit positions is set about
        // half the time (a constant or counter-based secret fails this).
        let mut ones = [0u32; 256];
        let n = 400;
        for _ in 0..n {
            let t = new_token();
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&t[TOKEN_PREFIX.len()..])
                .unwrap();
            assert_eq!(bytes.len(), 32);
            for (i, b) in bytes.iter().enumerate() {
                for bit in 0..8 {
                    if b >> bit & 1 == 1 {
                        ones[i * 8 + bit] += 1;
                    }
                }
            }
        }
        for (i, c) in ones.iter().enumerate() {
            assert!((120..=280).contains(c), "bit {i} set {c} times of {n}");
        }
    }

    #[test]
    fn token_hash_is_sha256_hex() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct horsf", &h));
        assert!(!verify_password("correct horse", "not a hash"));
        // Salted: the same password hashes differently.
        assert_ne!(h, hash_password("correct horse").unwrap());
        let p = new_password();
        assert_eq!(p.len(), GENERATED_PASSWORD);
        assert!(p.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
}
