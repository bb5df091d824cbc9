//! JWT authentication for Berth: the gateway's token [`Verifier`] and Berth's own issuer
//! ([`KeyStore`]).
//!
//! # Verifying
//! [`Verifier`] implements [`berth_core::auth::TokenVerifier`]. Tokens are compact JWS signed
//! with HS256, RS256, ES256 or EdDSA (Ed25519). The rules, strict by design:
//! - the **key decides the algorithm**: an issuer's RSA key verifies only RS256, a P-256 key only
//!   ES256, an Ed25519 key only EdDSA, its `hs256_secret` only HS256. The token's `alg` merely
//!   has to agree; `none`, unknown algorithms, and any HS/RS/ES/EdDSA mix-up are refused;
//! - `kid` must name one of the issuer's keys; only an issuer with a single kid-less key of the
//!   token's algorithm accepts tokens without a `kid`;
//! - `exp` is required, `nbf` honoured, with a 5 s leeway ([`LEEWAY_SECS`]);
//! - `iss` must be the `issuer` of a configured [`berth_core::policy::Issuer`] that the route's
//!   [`berth_core::policy::AuthPolicy`] names, and one `aud` value (string or array) must be in
//!   the policy's audiences; `sub` is required (the gateway rate-limits per subject);
//! - malformed input is refused before any crypto: > 8 KiB, not three segments, non-canonical
//!   base64url, JSON that is not an object or repeats a member name, `crit`, JWE/compression/
//!   nested-token headers ([`jose`]). Keys are never taken from the token (`jwk`, `jku`, `x5u`,
//!   `x5c` are ignored).
//!
//! The crypto is `aws-lc-rs` (the same backend rustls uses), called directly: keys are parsed
//! once into `ParsedPublicKey` / `hmac::Key`. `jsonwebtoken` was the first choice, but its
//! verification re-parses the public key on every call, its header type cannot refuse `crit`
//! or duplicate members, and its process-global crypto provider panics at run time if feature
//! unification ever enables both its backends; the tests use it as an independent second
//! implementation instead (tokens it signs must verify here, and the reverse).
//!
//! # PEM public keys
//! Issuers that publish a PEM public key instead of a JWKS are configured through
//! [`jwks_from_public_pem`], which turns `PUBLIC KEY` (SubjectPublicKeyInfo: RSA, EC P-256,
//! Ed25519) and `RSA PUBLIC KEY` (PKCS#1) blocks into the JWKS an
//! [`berth_core::policy::Issuer`] carries; private keys and certificates are refused.
//!
//! # Why a verified-token cache
//! An RS256 verification costs about as much CPU as proxying the request it guards, and clients
//! send the same bearer token for many requests. So after a token's signature verifies under an
//! issuer's key set, the verifier remembers (token SHA-256 → claims, key set id) in a bounded
//! FIFO map (10 000 entries by default). A hit skips parsing and signature work but not policy:
//! `exp`/`nbf` against the clock, `iss` against the route's issuers and `aud` against its
//! audiences are checked on every request. An entry is honoured only while the issuer's key
//! material is unchanged (each parse of key material gets a fresh id), so replacing or rotating
//! an issuer's keys invalidates what they verified. HS256 tokens are cached as well: the gateway
//! benchmark (docs/benchmarks.md §4) measured a hit cheaper than parsing plus HMAC. Parsed keys are cached too, keyed by a hash of the issuer's JWKS and
//! secret: the JWKS is parsed once per key material, never per request.
//!
//! # How Berth's keys rotate
//! [`KeyStore`] keeps ES256 (P-256) keys as PKCS#8 PEM files in `<data-dir>/keys/`, one per kid,
//! the newest signing. [`KeyStore::rotate`] adds a new signing key; older keys stay in the JWKS
//! so their tokens verify until they expire, and a key retired (superseded) more than the
//! longest token lifetime + 1 day ago is deleted on the next rotation. The gateway sees a new
//! JWKS through [`KeyStore::issuer`] in the next routing table; the changed key material makes
//! the verifier parse it once and forget tokens cached under the old set (they verify again,
//! once, against the new set, which still holds the old key).

pub mod cache;
pub mod jose;
pub mod keys;
pub mod keystore;
pub mod pem;
pub mod verifier;

pub use cache::DEFAULT_TOKEN_CACHE_CAPACITY;
pub use jose::{Alg, MAX_TOKEN_BYTES};
pub use keys::{validate_issuer, KeyError, MIN_HS256_SECRET_BYTES};
pub use keystore::{
    KeyInfo, KeyStore, KeyStoreError, BERTH_ISSUER, DEFAULT_MAX_TOKEN_TTL, RESERVED_CLAIMS,
    RETIRED_KEY_GRACE,
};
pub use pem::{jwks_from_public_pem, PemError};
pub use verifier::{Reject, Verifier, LEEWAY_SECS};
