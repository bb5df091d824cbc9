//! PEM public keys → JWKS, for issuers that publish a PEM key file instead of a JWKS.
//!
//! Accepted blocks: `-----BEGIN PUBLIC KEY-----` (X.509 SubjectPublicKeyInfo) holding an RSA,
//! EC P-256 or Ed25519 key, and `-----BEGIN RSA PUBLIC KEY-----` (PKCS#1 `RSAPublicKey`). A
//! file may hold several blocks; text outside the blocks is ignored (RFC 7468 §2). Private
//! keys, certificates and every other block type are refused, and so is the whole file when
//! one block is refused: a JWKS is published, so a stray private key must never slip through.
//!
//! The DER is read by a small strict reader (definite minimal lengths, no trailing bytes), and
//! every resulting JWK is checked with the same code the [`crate::Verifier`] uses, so a JWKS
//! this module returns always passes [`crate::validate_issuer`].

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value};

use crate::keys::parse_jwk;

/// Why a PEM file could not be turned into a JWKS. `block` counts PEM blocks from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    /// The text holds no PEM block at all.
    #[error(
        "no PEM block found: expected -----BEGIN PUBLIC KEY----- or -----BEGIN RSA PUBLIC KEY-----"
    )]
    NoPemBlock,
    /// A block is a private key. Only public keys belong in a JWKS.
    #[error(
        "PEM block {block} is a private key (-----BEGIN {label}-----), refused: give the public \
         key only (e.g. `openssl pkey -in key.pem -pubout`)"
    )]
    PrivateKey {
        /// Which block.
        block: usize,
        /// Its PEM label (e.g. `RSA PRIVATE KEY`).
        label: String,
    },
    /// A block is a certificate. Its key is not taken on trust: extract it deliberately.
    #[error(
        "PEM block {block} is a certificate (-----BEGIN {label}-----), not a public key: \
         extract its key first (e.g. `openssl x509 -in cert.pem -pubkey -noout`)"
    )]
    Certificate {
        /// Which block.
        block: usize,
        /// Its PEM label.
        label: String,
    },
    /// A block of another type (CSR, CRL, parameters, ...).
    #[error(
        "PEM block {block} (-----BEGIN {label}-----) is not a public key: expected PUBLIC KEY \
         or RSA PUBLIC KEY"
    )]
    NotAPublicKey {
        /// Which block.
        block: usize,
        /// Its PEM label.
        label: String,
    },
    /// Broken PEM framing, base64 or DER.
    #[error("PEM block {block} is malformed: {reason}")]
    Malformed {
        /// Which block.
        block: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A well-formed public key Berth cannot verify with (other algorithm or curve, RSA size
    /// out of range, point not on the curve, ...).
    #[error("PEM block {block}: unsupported key: {reason}")]
    UnsupportedKey {
        /// Which block.
        block: usize,
        /// Why.
        reason: String,
    },
    /// `kid` was given but empty.
    #[error("kid must not be empty")]
    EmptyKid,
}

/// Converts a PEM file of public keys into a JWKS document (`{"keys":[...]}`).
///
/// Each key becomes a JWK with `use: sig` and the algorithm its type implies: RSA → `kty: RSA`,
/// `n`, `e`, `alg: RS256`; EC P-256 → `kty: EC`, `crv: P-256`, `x`, `y`, `alg: ES256`;
/// Ed25519 → `kty: OKP`, `crv: Ed25519`, `x`, `alg: EdDSA`. With `kid`, a single key gets that
/// kid and several keys get `<kid>-1`, `<kid>-2`, ... in file order; without it, keys have no
/// kid (the verifier then accepts kid-less tokens only when the issuer has a single key of the
/// token's algorithm).
///
/// # Errors
/// [`PemError`]: no PEM block; a private key, a certificate or any other non-public-key block
/// (anywhere in the file); broken framing, base64 or DER; a key type, curve or RSA size the
/// verifier does not support; an empty `kid`.
pub fn jwks_from_public_pem(pem: &str, kid: Option<&str>) -> Result<String, PemError> {
    if kid == Some("") {
        return Err(PemError::EmptyKid);
    }
    let blocks = pem_blocks(pem)?;
    if blocks.is_empty() {
        return Err(PemError::NoPemBlock);
    }
    let mut keys = Vec::with_capacity(blocks.len());
    for (i, block) in blocks.iter().enumerate() {
        let number = i + 1;
        let malformed = |reason| PemError::Malformed {
            block: number,
            reason,
        };
        let unsupported = |reason: String| PemError::UnsupportedKey {
            block: number,
            reason,
        };
        let der = STANDARD
            .decode(&block.body)
            .map_err(|_| malformed("body is not base64"))?;
        let public = match block.kind {
            Kind::Spki => parse_spki(&der),
            Kind::Pkcs1 => parse_pkcs1_whole(&der),
        }
        .map_err(|e| match e {
            DerError::Malformed(reason) => malformed(reason),
            DerError::Unsupported(reason) => unsupported(reason),
        })?;
        let mut jwk = public.to_jwk();
        if let Some(kid) = kid {
            jwk["kid"] = if blocks.len() == 1 {
                kid.into()
            } else {
                format!("{kid}-{number}").into()
            };
        }
        // The verifier's own check: range of RSA sizes, point on the curve, and so on.
        match parse_jwk(&jwk) {
            Ok(Some(_)) => {}
            Ok(None) => return Err(unsupported("not a signing key".to_owned())),
            Err(reason) => return Err(unsupported(reason.to_owned())),
        }
        keys.push(jwk);
    }
    Ok(json!({ "keys": keys }).to_string())
}

// ---- PEM framing ----

#[derive(Clone, Copy)]
enum Kind {
    Spki,
    Pkcs1,
}

struct Block {
    kind: Kind,
    /// Base64 text, whitespace removed.
    body: String,
}

/// Splits the text into PEM blocks, refusing (by label, before decoding anything) every block
/// that is not a public key. A private key anywhere in the file is reported in preference to
/// any other problem (think of `openssl ecparam -genkey` output: EC PARAMETERS, then the key).
fn pem_blocks(text: &str) -> Result<Vec<Block>, PemError> {
    let mut blocks = Vec::new();
    // The first refusal that is not a private key; reported once the whole file is scanned.
    let mut refused: Option<PemError> = None;
    let mut seen = 0;
    // (kind, or None for a refused block being skipped; label; body) of the open block.
    let mut open: Option<(Option<Kind>, String, String)> = None;
    for line in text.lines() {
        let line = line.trim();
        let malformed = |block, reason| PemError::Malformed { block, reason };
        let framing = if let Some(label) = boundary(line, "-----BEGIN ") {
            if open.is_some() {
                Some(malformed(
                    seen,
                    "BEGIN line inside a block (missing END line)",
                ))
            } else {
                seen += 1;
                let kind = match classify(label, seen) {
                    Ok(kind) => Some(kind),
                    Err(e @ PemError::PrivateKey { .. }) => return Err(e),
                    Err(e) => {
                        refused.get_or_insert(e);
                        None
                    }
                };
                open = Some((kind, label.to_owned(), String::new()));
                None
            }
        } else if let Some(label) = boundary(line, "-----END ") {
            match open.take() {
                None => Some(malformed(seen + 1, "END line without a BEGIN line")),
                Some((_, begun, _)) if begun != label => {
                    Some(malformed(seen, "END label differs from the BEGIN label"))
                }
                Some((None, _, _)) => None,
                Some((Some(_), _, body)) if body.is_empty() => Some(malformed(seen, "empty block")),
                Some((Some(kind), _, body)) => {
                    blocks.push(Block { kind, body });
                    None
                }
            }
        } else if let Some((kind, _, body)) = &mut open {
            if kind.is_some() && line.contains(':') {
                Some(malformed(seen, "PEM headers are not supported"))
            } else {
                body.extend(line.chars().filter(|c| !c.is_ascii_whitespace()));
                None
            }
        } else if line.starts_with("-----") {
            Some(malformed(seen + 1, "unrecognised PEM boundary line"))
        } else {
            // Other text outside blocks is ignored (RFC 7468 §2).
            None
        };
        if let Some(error) = framing {
            return Err(refused.unwrap_or(error));
        }
    }
    if let Some(error) = refused {
        return Err(error);
    }
    if open.is_some() {
        return Err(PemError::Malformed {
            block: seen,
            reason: "no END line (truncated file?)",
        });
    }
    Ok(blocks)
}

/// The label of a `-----BEGIN <label>-----` / `-----END <label>-----` line.
fn boundary<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let label = line.strip_prefix(prefix)?.strip_suffix("-----")?;
    (!label.is_empty()
        && label.len() <= 64
        && label.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
    .then_some(label)
}

fn classify(label: &str, block: usize) -> Result<Kind, PemError> {
    let label_owned = label.to_owned();
    match label {
        "PUBLIC KEY" => Ok(Kind::Spki),
        "RSA PUBLIC KEY" => Ok(Kind::Pkcs1),
        // PRIVATE KEY, ENCRYPTED PRIVATE KEY, RSA/EC/DSA/OPENSSH PRIVATE KEY, ...
        l if l.contains("PRIVATE") => Err(PemError::PrivateKey {
            block,
            label: label_owned,
        }),
        // CERTIFICATE, TRUSTED CERTIFICATE, X509 CERTIFICATE (not CERTIFICATE REQUEST).
        l if l.ends_with("CERTIFICATE") => Err(PemError::Certificate {
            block,
            label: label_owned,
        }),
        _ => Err(PemError::NotAPublicKey {
            block,
            label: label_owned,
        }),
    }
}

// ---- DER ----

enum DerError {
    Malformed(&'static str),
    Unsupported(String),
}

type DerResult<T> = Result<T, DerError>;

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const NULL: u8 = 0x05;
const OID: u8 = 0x06;

// OID contents (without tag and length).
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// Names of public key algorithms and curves Berth does not support, for clearer errors.
const KNOWN_UNSUPPORTED: &[(&[u8], &str)] = &[
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a],
        "RSASSA-PSS key (only rsaEncryption keys are supported, for RS256)",
    ),
    (&[0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01], "DSA key"),
    (
        &[0x2b, 0x65, 0x6e],
        "X25519 key (key agreement, not signatures)",
    ),
    (
        &[0x2b, 0x65, 0x6f],
        "X448 key (key agreement, not signatures)",
    ),
    (&[0x2b, 0x65, 0x71], "Ed448 key (only Ed25519 is supported)"),
    (
        &[0x2b, 0x81, 0x04, 0x00, 0x22],
        "EC curve P-384 (only P-256 is supported)",
    ),
    (
        &[0x2b, 0x81, 0x04, 0x00, 0x23],
        "EC curve P-521 (only P-256 is supported)",
    ),
    (
        &[0x2b, 0x81, 0x04, 0x00, 0x0a],
        "EC curve secp256k1 (only P-256 is supported)",
    ),
];

fn unsupported_oid(oid: &[u8], what: &str) -> DerError {
    DerError::Unsupported(
        KNOWN_UNSUPPORTED
            .iter()
            .find(|(known, _)| *known == oid)
            .map_or_else(
                || format!("unknown {what} {}", oid_to_string(oid)),
                |(_, name)| (*name).to_owned(),
            ),
    )
}

/// Dotted form of an OID, for error messages.
fn oid_to_string(oid: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    for &b in oid {
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        }
        if value > u64::MAX >> 8 {
            return "(oversized OID)".to_owned();
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// A strict DER reader over a byte slice: definite, minimally encoded lengths, single-byte
/// tags.
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(input: &'a [u8]) -> Self {
        Der { rest: input }
    }

    fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Reads one element with tag `tag`; returns its contents.
    fn read(&mut self, tag: u8, what: &'static str) -> DerResult<&'a [u8]> {
        let truncated = DerError::Malformed("DER truncated");
        let (&got, rest) = self.rest.split_first().ok_or(truncated)?;
        if got != tag {
            return Err(DerError::Malformed(what));
        }
        let (&first, mut rest) = rest
            .split_first()
            .ok_or(DerError::Malformed("DER truncated"))?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 {
                return Err(DerError::Malformed("DER indefinite length"));
            }
            if count > 4 {
                return Err(DerError::Malformed("DER length too large"));
            }
            if rest.len() < count {
                return Err(DerError::Malformed("DER truncated"));
            }
            let (bytes, after) = rest.split_at(count);
            rest = after;
            if bytes[0] == 0 {
                return Err(DerError::Malformed("DER length not minimally encoded"));
            }
            let len = bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            if len < 0x80 {
                return Err(DerError::Malformed("DER length not minimally encoded"));
            }
            len
        };
        if rest.len() < len {
            return Err(DerError::Malformed("DER truncated"));
        }
        let (contents, after) = rest.split_at(len);
        self.rest = after;
        Ok(contents)
    }

    fn finish(&self) -> DerResult<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DerError::Malformed("trailing bytes after DER element"))
        }
    }
}

/// A positive INTEGER's magnitude, big-endian without leading zeros.
fn read_positive(der: &mut Der<'_>, what: &'static str) -> DerResult<Vec<u8>> {
    let bytes = der.read(INTEGER, what)?;
    match bytes.first() {
        None => Err(DerError::Malformed("empty INTEGER")),
        Some(b) if b & 0x80 != 0 => Err(DerError::Malformed("negative INTEGER in RSA key")),
        Some(_) => {
            let zeros = bytes.iter().take_while(|b| **b == 0).count();
            let magnitude = &bytes[zeros..];
            if magnitude.is_empty() {
                return Err(DerError::Malformed("zero INTEGER in RSA key"));
            }
            Ok(magnitude.to_vec())
        }
    }
}

enum PublicKey {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    P256 { x: Vec<u8>, y: Vec<u8> },
    Ed25519 { x: Vec<u8> },
}

impl PublicKey {
    fn to_jwk(&self) -> Value {
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        match self {
            PublicKey::Rsa { n, e } => json!({
                "kty": "RSA", "n": b64(n), "e": b64(e), "alg": "RS256", "use": "sig",
            }),
            PublicKey::P256 { x, y } => json!({
                "kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y), "alg": "ES256", "use": "sig",
            }),
            PublicKey::Ed25519 { x } => json!({
                "kty": "OKP", "crv": "Ed25519", "x": b64(x), "alg": "EdDSA", "use": "sig",
            }),
        }
    }
}

/// A whole DER document holding one PKCS#1 `RSAPublicKey`.
fn parse_pkcs1_whole(der: &[u8]) -> DerResult<PublicKey> {
    let mut outer = Der::new(der);
    let key = parse_pkcs1(&mut outer)?;
    outer.finish()?;
    Ok(key)
}

/// `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
fn parse_pkcs1(der: &mut Der<'_>) -> DerResult<PublicKey> {
    let mut seq = Der::new(der.read(SEQUENCE, "RSA public key is not a DER SEQUENCE")?);
    let n = read_positive(&mut seq, "RSA modulus is not an INTEGER")?;
    let e = read_positive(&mut seq, "RSA exponent is not an INTEGER")?;
    seq.finish()?;
    if n.len() > 1024 {
        return Err(DerError::Unsupported(
            "RSA key longer than 8192 bits".to_owned(),
        ));
    }
    Ok(PublicKey::Rsa { n, e })
}

/// `SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT
/// STRING }`, `AlgorithmIdentifier ::= SEQUENCE { algorithm OID, parameters ANY OPTIONAL }`.
fn parse_spki(der: &[u8]) -> DerResult<PublicKey> {
    let mut outer = Der::new(der);
    let mut spki = Der::new(outer.read(SEQUENCE, "not a DER SubjectPublicKeyInfo SEQUENCE")?);
    outer.finish()?;
    let mut alg = Der::new(spki.read(SEQUENCE, "algorithm identifier is not a SEQUENCE")?);
    let bits = spki.read(BIT_STRING, "public key is not a BIT STRING")?;
    spki.finish()?;
    let key = match bits.split_first() {
        Some((0, key)) => key,
        Some(_) => return Err(DerError::Malformed("public key BIT STRING has unused bits")),
        None => return Err(DerError::Malformed("empty BIT STRING")),
    };
    let oid = alg.read(OID, "algorithm identifier has no OID")?;

    if oid == OID_RSA_ENCRYPTION {
        // Parameters: NULL, or (tolerated) absent.
        if alg.peek_tag().is_some() {
            let null = alg.read(NULL, "RSA algorithm parameters are not NULL")?;
            if !null.is_empty() {
                return Err(DerError::Malformed("RSA algorithm parameters are not NULL"));
            }
        }
        alg.finish()?;
        parse_pkcs1_whole(key)
    } else if oid == OID_EC_PUBLIC_KEY {
        if alg.peek_tag() != Some(OID) {
            return Err(DerError::Unsupported(
                "EC key without a named curve (explicit curve parameters)".to_owned(),
            ));
        }
        let curve = alg.read(OID, "EC curve is not an OID")?;
        alg.finish()?;
        if curve != OID_P256 {
            return Err(unsupported_oid(curve, "EC curve"));
        }
        match key {
            [4, point @ ..] if point.len() == 64 => Ok(PublicKey::P256 {
                x: point[..32].to_vec(),
                y: point[32..].to_vec(),
            }),
            [2 | 3, rest @ ..] if rest.len() == 32 => Err(DerError::Unsupported(
                "compressed EC point (export the key uncompressed)".to_owned(),
            )),
            _ => Err(DerError::Malformed("P-256 point is not 65 bytes")),
        }
    } else if oid == OID_ED25519 {
        if alg.peek_tag().is_some() {
            return Err(DerError::Malformed("Ed25519 algorithm has parameters"));
        }
        if key.len() != 32 {
            return Err(DerError::Malformed("Ed25519 key is not 32 bytes"));
        }
        Ok(PublicKey::Ed25519 { x: key.to_vec() })
    } else {
        Err(unsupported_oid(oid, "key algorithm"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oid_names() {
        assert_eq!(oid_to_string(OID_RSA_ENCRYPTION), "1.2.840.113549.1.1.1");
        assert_eq!(oid_to_string(OID_P256), "1.2.840.10045.3.1.7");
        assert_eq!(oid_to_string(OID_ED25519), "1.3.101.112");
    }

    #[test]
    fn der_lengths_are_strict() {
        let read = |bytes: &[u8]| Der::new(bytes).read(SEQUENCE, "x").map(<[u8]>::len);
        assert!(matches!(read(&[0x30, 0x01, 0x00]), Ok(1)));
        // Long form for a short length, indefinite length, length beyond the input.
        assert!(read(&[0x30, 0x81, 0x01, 0x00]).is_err());
        assert!(read(&[0x30, 0x80, 0x00, 0x00]).is_err());
        assert!(read(&[0x30, 0x05, 0x00]).is_err());
        assert!(read(&[0x30, 0x82, 0x00, 0x80]).is_err());
        assert!(read(&[0x30]).is_err());
        assert!(read(&[]).is_err());
        assert!(read(&[0x02, 0x01, 0x00]).is_err());
    }
}
