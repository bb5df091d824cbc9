//! Issuer keys: parsing a JWKS / HS256 secret into ready-to-use verification keys, and the cache
//! that makes sure that parsing happens once per key material, never per request.
//!
//! Rules: the key type decides the algorithm (RSA → RS256, EC P-256 → ES256, OKP Ed25519 →
//! EdDSA, `hs256_secret` → HS256); a JWK whose `alg` names another algorithm, whose `use` is not
//! `sig`, or whose type is not one of these is skipped; symmetric (`oct`) keys are never taken
//! from a JWKS (a published key set must not hold secrets, and mixing them in is how algorithm
//! confusion starts). HS256 secrets shorter than 32 bytes are refused (RFC 7518 §3.2). RSA keys
//! must be 2048 to 8192 bits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use aws_lc_rs::hmac;
use aws_lc_rs::signature::{
    ParsedPublicKey, RsaPublicKeyComponents, ECDSA_P256_SHA256_FIXED, ED25519,
    RSA_PKCS1_2048_8192_SHA256,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use berth_core::policy::Issuer;
use serde_json::Value;

use crate::jose::Alg;

/// Shortest HS256 secret accepted, in bytes.
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// Why an issuer's key material is unusable (or partly unusable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The JWKS is not a JSON object with a `keys` array.
    #[error("JWKS is not a JSON object with a \"keys\" array")]
    NotAJwks,
    /// One key of the set is broken or unsupported (index in `keys`, reason).
    #[error("JWKS key {index}: {reason}")]
    BadKey {
        /// Position in the `keys` array.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The HS256 secret is too short.
    #[error("HS256 secret shorter than {MIN_HS256_SECRET_BYTES} bytes")]
    WeakSecret,
    /// Neither a usable JWKS key nor a secret.
    #[error("issuer has no usable key")]
    NoKeys,
}

/// A parsed verification key.
pub(crate) struct Key {
    pub kid: Option<String>,
    pub alg: Alg,
    pub material: KeyMaterial,
}

pub(crate) enum KeyMaterial {
    Hmac(Box<hmac::Key>),
    Public(ParsedPublicKey),
}

impl Key {
    /// Checks `signature` over `message`. Constant-time for HMAC.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.material {
            KeyMaterial::Hmac(key) => hmac::verify(key, message, signature).is_ok(),
            KeyMaterial::Public(key) => key.verify_sig(message, signature).is_ok(),
        }
    }
}

/// The keys of one issuer, parsed once.
pub(crate) struct KeySet {
    /// Unique per parse: verified-token cache entries remember it, so a change of key material
    /// (rotation, replacement) invalidates them.
    pub id: u64,
    jwks: Option<String>,
    secret: Option<String>,
    pub keys: Vec<Key>,
}

/// Outcome of choosing a key for a token.
pub(crate) enum Selection<'a> {
    Found(&'a Key),
    /// The issuer has no key of the token's algorithm (algorithm confusion lands here).
    NoKeyForAlg,
    /// The token's `kid` (or its absence) matches no key of that algorithm.
    UnknownKid,
}

impl KeySet {
    fn same_material(&self, issuer: &Issuer) -> bool {
        self.jwks == issuer.jwks && self.secret == issuer.hs256_secret
    }

    /// Picks the key for a token. With a `kid`, it must name a key whose type allows `alg`.
    /// Without one, the issuer must have exactly one key for `alg`, itself without a kid.
    pub fn select(&self, alg: Alg, kid: Option<&str>) -> Selection<'_> {
        let mut candidates = self.keys.iter().filter(|k| k.alg == alg).peekable();
        if candidates.peek().is_none() {
            return Selection::NoKeyForAlg;
        }
        match kid {
            Some(kid) => candidates
                .find(|k| k.kid.as_deref() == Some(kid))
                .map_or(Selection::UnknownKid, Selection::Found),
            None => {
                let all: Vec<&Key> = candidates.collect();
                match all.as_slice() {
                    [only] if only.kid.is_none() => Selection::Found(only),
                    _ => Selection::UnknownKid,
                }
            }
        }
    }
}

/// Parses an issuer's key material. Broken or unsupported JWKS entries are reported in the
/// second value and skipped, so one odd key in a third party's set does not take the issuer
/// down; [`validate_issuer`] turns them into an error for configuration time.
fn parse_keys(issuer: &Issuer) -> (Vec<Key>, Vec<KeyError>) {
    let mut keys = Vec::new();
    let mut problems = Vec::new();
    if let Some(secret) = &issuer.hs256_secret {
        if secret.len() < MIN_HS256_SECRET_BYTES {
            problems.push(KeyError::WeakSecret);
        } else {
            keys.push(Key {
                kid: None,
                alg: Alg::Hs256,
                material: KeyMaterial::Hmac(Box::new(hmac::Key::new(
                    hmac::HMAC_SHA256,
                    secret.as_bytes(),
                ))),
            });
        }
    }
    if let Some(jwks) = &issuer.jwks {
        let entries = serde_json::from_str::<Value>(jwks)
            .ok()
            .and_then(|v| match v.get("keys") {
                Some(Value::Array(a)) => Some(a.clone()),
                _ => None,
            });
        match entries {
            None => problems.push(KeyError::NotAJwks),
            Some(entries) => {
                for (index, jwk) in entries.iter().enumerate() {
                    match parse_jwk(jwk) {
                        Ok(Some(key)) => keys.push(key),
                        Ok(None) => {}
                        Err(reason) => problems.push(KeyError::BadKey {
                            index,
                            reason: reason.to_owned(),
                        }),
                    }
                }
            }
        }
    }
    (keys, problems)
}

/// One JWK. `Ok(None)`: a well-formed key that is not for signatures (e.g. `use: enc`).
pub(crate) fn parse_jwk(jwk: &Value) -> Result<Option<Key>, &'static str> {
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    let bytes = |name: &str| -> Result<Vec<u8>, &'static str> {
        let s = field(name).ok_or("missing key parameter")?;
        URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| "key parameter not base64url")
    };
    if !jwk.is_object() {
        return Err("not a JSON object");
    }
    if field("use").is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    if let Some(ops) = jwk.get("key_ops").and_then(Value::as_array) {
        if !ops.iter().any(|op| op.as_str() == Some("verify")) {
            return Ok(None);
        }
    }
    let kid = match jwk.get("kid") {
        None => None,
        Some(Value::String(k)) if !k.is_empty() => Some(k.clone()),
        Some(_) => return Err("kid not a non-empty string"),
    };
    let (alg, material) = match field("kty") {
        Some("RSA") => {
            let n = strip_leading_zeros(bytes("n")?);
            let e = strip_leading_zeros(bytes("e")?);
            if n.len() < 256 {
                return Err("RSA key shorter than 2048 bits");
            }
            let parsed = RsaPublicKeyComponents { n, e }
                .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
                .map_err(|_| "invalid RSA key")?;
            (Alg::Rs256, parsed)
        }
        Some("EC") => {
            if field("crv") != Some("P-256") {
                return Err("EC curve other than P-256");
            }
            let (x, y) = (bytes("x")?, bytes("y")?);
            if x.len() != 32 || y.len() != 32 {
                return Err("P-256 coordinates must be 32 bytes");
            }
            let point: Vec<u8> = std::iter::once(4u8).chain(x).chain(y).collect();
            let parsed = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                .map_err(|_| "P-256 point not on the curve")?;
            (Alg::Es256, parsed)
        }
        Some("OKP") => {
            if field("crv") != Some("Ed25519") {
                return Err("OKP curve other than Ed25519");
            }
            let x = bytes("x")?;
            if x.len() != 32 {
                return Err("Ed25519 key must be 32 bytes");
            }
            let parsed = ParsedPublicKey::new(&ED25519, x).map_err(|_| "invalid Ed25519 key")?;
            (Alg::EdDsa, parsed)
        }
        Some("oct") => return Err("symmetric keys are not accepted in a JWKS"),
        _ => return Err("unsupported key type"),
    };
    if let Some(declared) = field("alg") {
        if declared != alg.as_str() {
            return Err("key alg does not match its key type");
        }
    }
    Ok(Some(Key {
        kid,
        alg,
        material: KeyMaterial::Public(material),
    }))
}

fn strip_leading_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let zeros = v.iter().take_while(|b| **b == 0).count();
    v.drain(..zeros);
    v
}

/// Checks an issuer's key material at configuration time (`berth issuer add`, the issuers API):
/// every JWKS entry must be usable and at least one key present. Returns the number of keys.
///
/// # Errors
/// The first problem found.
pub fn validate_issuer(issuer: &Issuer) -> Result<usize, KeyError> {
    let (keys, problems) = parse_keys(issuer);
    if let Some(first) = problems.into_iter().next() {
        return Err(first);
    }
    if keys.is_empty() {
        return Err(KeyError::NoKeys);
    }
    Ok(keys.len())
}

/// Parsed key sets by hash of key material. Bounded: issuers are few and change rarely, so
/// when it overflows it is simply emptied.
pub(crate) struct KeyCache {
    sets: RwLock<HashMap<u64, Arc<KeySet>>>,
    next_id: AtomicU64,
    parses: AtomicU64,
}

const KEY_CACHE_CAPACITY: usize = 256;

impl KeyCache {
    pub fn new() -> Self {
        KeyCache {
            sets: RwLock::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            parses: AtomicU64::new(0),
        }
    }

    /// How many times key material was parsed (for tests and metrics).
    pub fn parses(&self) -> u64 {
        self.parses.load(Ordering::Relaxed)
    }

    /// The id of `issuer`'s current key set if it is parsed already (no clone: the verified-
    /// token cache only compares ids).
    pub fn current_id(&self, issuer: &Issuer) -> Option<u64> {
        let sets = self
            .sets
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        sets.get(&material_hash(issuer))
            .filter(|set| set.same_material(issuer))
            .map(|set| set.id)
    }

    pub fn get(&self, issuer: &Issuer) -> Arc<KeySet> {
        let hash = material_hash(issuer);
        {
            let sets = self
                .sets
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(set) = sets.get(&hash) {
                if set.same_material(issuer) {
                    return Arc::clone(set);
                }
            }
        }
        self.parses.fetch_add(1, Ordering::Relaxed);
        let (keys, _problems) = parse_keys(issuer);
        let set = Arc::new(KeySet {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            jwks: issuer.jwks.clone(),
            secret: issuer.hs256_secret.clone(),
            keys,
        });
        let mut sets = self
            .sets
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if sets.len() >= KEY_CACHE_CAPACITY {
            sets.clear();
        }
        sets.insert(hash, Arc::clone(&set));
        set
    }
}

fn material_hash(issuer: &Issuer) -> u64 {
    // Word at a time (it runs on every verification): a collision only costs a parse, since a
    // hit is confirmed by comparing the material itself (`KeySet::same_material`).
    fn mix(h: u64, w: u64) -> u64 {
        (h.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95)
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [issuer.jwks.as_deref(), issuer.hs256_secret.as_deref()] {
        let bytes = part.map_or(&b""[..], str::as_bytes);
        h = mix(h, bytes.len() as u64 | (u64::from(part.is_some()) << 63));
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let mut word = [0u8; 8];
            word.copy_from_slice(w);
            h = mix(h, u64::from_le_bytes(word));
        }
        let mut last = [0u8; 8];
        last[..words.remainder().len()].copy_from_slice(words.remainder());
        h = mix(h, u64::from_le_bytes(last));
    }
    h
}
