//! Berth's own issuer (`berth`): ES256 signing keys in a directory, JWKS publication, token
//! issuance.
//!
//! Layout: `<data-dir>/keys/` (mode 0700) holds one PKCS#8 PEM file per key, `<kid>.pem`
//! (mode 0600, written to a temporary file and renamed, so a crash never leaves half a key).
//! The kid is `<created unix seconds>-<8 random hex digits>`: the file name alone says when the
//! key was made, and the newest key is the current (signing) one.
//!
//! Rotation: [`KeyStore::rotate`] makes a new current key and keeps the older ones in the JWKS,
//! so tokens they signed keep verifying until they expire. A key stops signing when the next
//! one is created (its *retirement*); since no token lives longer than
//! [`KeyStore::max_token_ttl`], a key retired more than `max_token_ttl` + 1 day ago can have
//! no live token left and is deleted on the next rotation. (Counting from retirement rather
//! than creation matters: a key that signed for a month was still signing yesterday.)

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use berth_core::policy::Issuer;
use serde_json::{json, Map, Value};

use crate::verifier::unix_now;

/// Name of Berth's own issuer in [`berth_core::policy::AuthPolicy::issuers`].
pub const BERTH_ISSUER: &str = "berth";

/// Default longest lifetime of a token Berth issues.
pub const DEFAULT_MAX_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Extra time a retired key is kept beyond the longest token lifetime.
pub const RETIRED_KEY_GRACE: Duration = Duration::from_secs(24 * 3600);

/// Claims Berth sets itself; `extra_claims` may not override them.
pub const RESERVED_CLAIMS: [&str; 7] = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"];

/// Errors of the key store.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// Reading or writing the key directory failed.
    #[error("{path}: {source}")]
    Io {
        /// File or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A `.pem` file in the key directory is not a key Berth wrote.
    #[error("{path}: not a Berth signing key: {reason}")]
    BadKeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// The requested lifetime is zero or beyond [`KeyStore::max_token_ttl`].
    #[error("token ttl must be between 1 s and {max_secs} s")]
    BadTtl {
        /// The longest allowed, in seconds.
        max_secs: u64,
    },
    /// An extra claim tried to set a claim Berth sets itself.
    #[error("claim {0:?} is set by Berth and cannot be given")]
    ReservedClaim(String),
    /// A token needs a subject and at least one audience.
    #[error("a token needs a non-empty subject and at least one audience")]
    MissingSubjectOrAudience,
    /// The system random generator or the signer failed.
    #[error("cryptographic operation failed")]
    Crypto,
}

/// A key's public description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The `kid` tokens carry.
    pub kid: String,
    /// Creation time, seconds since the Unix epoch.
    pub created_unix: u64,
}

struct StoredKey {
    info: KeyInfo,
    pair: EcdsaKeyPair,
}

/// Berth's signing keys (see the module docs). Share it behind an `Arc`; all methods take
/// `&self`.
pub struct KeyStore {
    dir: PathBuf,
    max_token_ttl: Duration,
    /// Oldest first; the last one is current. Never empty.
    keys: RwLock<Vec<StoredKey>>,
}

impl KeyStore {
    /// Opens (creating if needed) the key directory with [`DEFAULT_MAX_TOKEN_TTL`]; makes a
    /// first key if there is none.
    ///
    /// # Errors
    /// IO errors, or a `.pem` file that is not a Berth key (never silently replaced).
    pub fn open(dir: impl AsRef<Path>) -> Result<KeyStore, KeyStoreError> {
        KeyStore::open_with(dir, DEFAULT_MAX_TOKEN_TTL)
    }

    /// Like [`KeyStore::open`] with a chosen longest token lifetime.
    ///
    /// # Errors
    /// As [`KeyStore::open`].
    pub fn open_with(
        dir: impl AsRef<Path>,
        max_token_ttl: Duration,
    ) -> Result<KeyStore, KeyStoreError> {
        let dir = dir.as_ref().to_path_buf();
        let io = |source| KeyStoreError::Io {
            path: dir.clone(),
            source,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(io)?;

        let mut keys = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("pem") {
                continue;
            }
            keys.push(load_key(&path)?);
        }
        keys.sort_by(|a, b| {
            (a.info.created_unix, &a.info.kid).cmp(&(b.info.created_unix, &b.info.kid))
        });
        let store = KeyStore {
            dir,
            max_token_ttl,
            keys: RwLock::new(keys),
        };
        if store.read().is_empty() {
            let key = store.create_key(unix_now_u64())?;
            store.write().push(key);
        }
        Ok(store)
    }

    /// The directory the keys live in.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The longest lifetime [`KeyStore::issue`] accepts.
    #[must_use]
    pub fn max_token_ttl(&self) -> Duration {
        self.max_token_ttl
    }

    /// All keys, oldest first; the last one is current.
    #[must_use]
    pub fn keys(&self) -> Vec<KeyInfo> {
        self.read().iter().map(|k| k.info.clone()).collect()
    }

    /// The kid of the signing key.
    #[must_use]
    pub fn current_kid(&self) -> String {
        self.read()
            .last()
            .map(|k| k.info.kid.clone())
            .unwrap_or_default()
    }

    /// Makes a new current key, keeps the others for verification and deletes keys retired
    /// more than `max_token_ttl` + 1 day ago. Returns the new kid.
    ///
    /// # Errors
    /// IO or crypto failures; the previous key stays current then.
    pub fn rotate(&self) -> Result<String, KeyStoreError> {
        self.rotate_at(unix_now_u64())
    }

    /// [`KeyStore::rotate`] as of `now` (seconds since the Unix epoch).
    ///
    /// # Errors
    /// As [`KeyStore::rotate`].
    pub fn rotate_at(&self, now: u64) -> Result<String, KeyStoreError> {
        // Creation times order the keys, so a new key is always strictly newer than the
        // current one, even for two rotations within a second.
        let newest = self.read().last().map_or(0, |k| k.info.created_unix);
        let key = self.create_key(now.max(newest + 1))?;
        let kid = key.info.kid.clone();
        let mut keys = self.write();
        keys.push(key);

        let keep_for = (self.max_token_ttl + RETIRED_KEY_GRACE).as_secs();
        // Key i was retired when key i + 1 was created.
        let retired: Vec<u64> = keys.iter().skip(1).map(|k| k.info.created_unix).collect();
        let mut doomed = Vec::new();
        for (key, retired_at) in keys.iter().zip(retired) {
            if retired_at.saturating_add(keep_for) < now {
                doomed.push(key.info.kid.clone());
            }
        }
        for old in &doomed {
            let path = self.dir.join(format!("{old}.pem"));
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(KeyStoreError::Io { path, source }),
            }
        }
        keys.retain(|k| !doomed.contains(&k.info.kid));
        Ok(kid)
    }

    /// The public keys as a JWKS document (`{"keys":[...]}`), newest first, each with `kid`,
    /// `alg: ES256` and `use: sig`. Serve it at `/.well-known/jwks.json`.
    #[must_use]
    pub fn jwks(&self) -> String {
        let keys: Vec<Value> = self
            .read()
            .iter()
            .rev()
            .map(|k| {
                let point = k.pair.public_key().as_ref();
                json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                    "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
                    "kid": k.info.kid,
                    "alg": "ES256",
                    "use": "sig",
                })
            })
            .collect();
        json!({ "keys": keys }).to_string()
    }

    /// Berth's issuer as the gateway's routing table carries it: name `berth`, `iss` =
    /// `issuer_url`, and the current JWKS.
    #[must_use]
    pub fn issuer(&self, issuer_url: &str) -> Issuer {
        Issuer {
            name: BERTH_ISSUER.to_owned(),
            issuer: issuer_url.to_owned(),
            jwks: Some(self.jwks()),
            hs256_secret: None,
        }
    }

    /// Signs a token with the current key: header `{alg: ES256, typ: JWT, kid}`, claims `iss`,
    /// `sub`, `aud` (a string for one audience, an array for several), `iat`, `nbf`, `exp`,
    /// a random `jti`, then `extra_claims`.
    ///
    /// # Errors
    /// Empty subject or audiences, `ttl` zero or above the maximum, an extra claim that is
    /// reserved ([`RESERVED_CLAIMS`]), or a crypto failure.
    pub fn issue(
        &self,
        subject: &str,
        audiences: &[String],
        ttl: Duration,
        extra_claims: BTreeMap<String, Value>,
        issuer_url: &str,
    ) -> Result<String, KeyStoreError> {
        self.issue_at(
            subject,
            audiences,
            ttl,
            extra_claims,
            issuer_url,
            unix_now_u64(),
        )
    }

    /// [`KeyStore::issue`] as of `now` (seconds since the Unix epoch).
    ///
    /// # Errors
    /// As [`KeyStore::issue`].
    pub fn issue_at(
        &self,
        subject: &str,
        audiences: &[String],
        ttl: Duration,
        extra_claims: BTreeMap<String, Value>,
        issuer_url: &str,
        now: u64,
    ) -> Result<String, KeyStoreError> {
        if subject.is_empty() || audiences.is_empty() || audiences.iter().any(String::is_empty) {
            return Err(KeyStoreError::MissingSubjectOrAudience);
        }
        let ttl = ttl.as_secs();
        if ttl == 0 || ttl > self.max_token_ttl.as_secs() {
            return Err(KeyStoreError::BadTtl {
                max_secs: self.max_token_ttl.as_secs(),
            });
        }
        if let Some(reserved) = extra_claims
            .keys()
            .find(|k| RESERVED_CLAIMS.contains(&k.as_str()))
        {
            return Err(KeyStoreError::ReservedClaim(reserved.clone()));
        }
        let mut claims: Map<String, Value> = extra_claims.into_iter().collect();
        claims.insert("iss".into(), issuer_url.into());
        claims.insert("sub".into(), subject.into());
        claims.insert(
            "aud".into(),
            match audiences {
                [one] => Value::from(one.as_str()),
                many => Value::from(many.to_vec()),
            },
        );
        claims.insert("iat".into(), now.into());
        claims.insert("nbf".into(), now.into());
        claims.insert("exp".into(), (now + ttl).into());
        claims.insert("jti".into(), random_hex(16)?.into());

        let keys = self.read();
        let current = keys.last().ok_or(KeyStoreError::Crypto)?;
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": current.info.kid});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string())
        );
        let signature = current
            .pair
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|_| KeyStoreError::Crypto)?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }

    fn create_key(&self, created: u64) -> Result<StoredKey, KeyStoreError> {
        let kid = format!("{created}-{}", random_hex(4)?);
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| KeyStoreError::Crypto)?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .map_err(|_| KeyStoreError::Crypto)?;

        let path = self.dir.join(format!("{kid}.pem"));
        let tmp = self.dir.join(format!(".{kid}.pem.tmp"));
        let io = |source| KeyStoreError::Io {
            path: tmp.clone(),
            source,
        };
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        file.write_all(pem_encode(pkcs8.as_ref()).as_bytes())
            .map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        fs::rename(&tmp, &path).map_err(|source| KeyStoreError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(StoredKey {
            info: KeyInfo {
                kid,
                created_unix: created,
            },
            pair,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<StoredKey>> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<StoredKey>> {
        self.keys.write().unwrap_or_else(PoisonError::into_inner)
    }
}

fn load_key(path: &Path) -> Result<StoredKey, KeyStoreError> {
    let bad = |reason| KeyStoreError::BadKeyFile {
        path: path.to_path_buf(),
        reason,
    };
    let kid = path
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| bad("file name is not a kid"))?
        .to_owned();
    let created_unix = kid
        .split_once('-')
        .and_then(|(secs, rand)| {
            (!rand.is_empty() && rand.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| secs.parse::<u64>().ok())
                .flatten()
        })
        .ok_or_else(|| bad("file name is not <created>-<hex>.pem"))?;
    let text = fs::read_to_string(path).map_err(|source| KeyStoreError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let der = pem_decode(&text).ok_or_else(|| bad("not a PKCS#8 PEM file"))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
        .map_err(|_| bad("not a P-256 PKCS#8 private key"))?;
    Ok(StoredKey {
        info: KeyInfo { kid, created_unix },
        pair,
    })
}

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

fn pem_encode(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + 100);
    out.push_str(PEM_BEGIN);
    out.push('\n');
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(PEM_END);
    out.push('\n');
    out
}

fn pem_decode(text: &str) -> Option<Vec<u8>> {
    let start = text.find(PEM_BEGIN)? + PEM_BEGIN.len();
    let end = start + text[start..].find(PEM_END)?;
    let body: String = text[start..end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD.decode(body).ok()
}

fn random_hex(bytes: usize) -> Result<String, KeyStoreError> {
    let mut buf = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| KeyStoreError::Crypto)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn unix_now_u64() -> u64 {
    u64::try_from(unix_now()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip() {
        let der: Vec<u8> = (0..=255u8).collect();
        let pem = pem_encode(&der);
        assert!(pem.lines().all(|l| l.len() <= 64));
        assert_eq!(pem_decode(&pem), Some(der));
        assert_eq!(pem_decode("nothing"), None);
    }
}
