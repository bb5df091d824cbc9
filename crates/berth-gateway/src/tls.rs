//! TLS termination: certificates per host, chosen by SNI, for the HTTPS listener.
//!
//! Rules this module keeps:
//! * rustls 0.23 with the aws-lc-rs provider, always passed explicitly
//!   (`builder_with_provider`), so the process-wide default provider is never consulted and a
//!   second provider elsewhere in the build cannot make it panic.
//! * ALPN offers `h2` then `http/1.1`; the listener serves whichever the client picked.
//! * Certificates are chosen by SNI: an exact host name, then a `*.` wildcard entry for the
//!   parent domain, then the default (the first configured host). A client without SNI (or with
//!   an unknown name) gets the default certificate rather than a failed handshake.
//! * Bad input is a [`TlsError`] naming the file (or host) at fault; nothing is half-loaded.
//! * PEM is parsed with `rustls-pki-types` (`rustls-pemfile` is unmaintained). A key file may be
//!   PKCS#8, PKCS#1 (RSA) or SEC1 (EC); a certificate file holds the leaf first, then its chain.

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a [`TlsConfig`] could not be built.
#[derive(Debug)]
pub enum TlsError {
    /// No host (and so no certificate) was given.
    NoCertificates,
    /// A file could not be read.
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A file is not valid PEM, or holds no item of the expected kind.
    Pem { path: PathBuf, message: String },
    /// The key does not fit the certificate, or rustls refused the pair.
    KeyPair {
        host: String,
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
    /// The self-signed certificate could not be generated.
    Generate(String),
    /// rustls refused the configuration.
    Config(String),
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoCertificates => f.write_str("TLS: no certificate configured"),
            Self::Read { path, error } => {
                write!(f, "TLS: cannot read {}: {error}", path.display())
            }
            Self::Pem { path, message } => write!(f, "TLS: {}: {message}", path.display()),
            Self::KeyPair {
                host,
                cert,
                key,
                message,
            } => write!(
                f,
                "TLS: the key {} does not fit the certificate {} (host {host}): {message}",
                key.display(),
                cert.display()
            ),
            Self::Generate(m) => write!(f, "TLS: cannot generate a self-signed certificate: {m}"),
            Self::Config(m) => write!(f, "TLS: {m}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// Certificates for the HTTPS listener, chosen per host by SNI. Cheap to clone.
#[derive(Clone)]
pub struct TlsConfig {
    resolver: Arc<SniResolver>,
    server: Arc<ServerConfig>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("hosts", &self.hosts())
            .finish_non_exhaustive()
    }
}

/// The provider every TLS object of the gateway uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl TlsConfig {
    /// Load one certificate chain and key per host from PEM files: `(host, cert_path,
    /// key_path)`. `host` is a DNS name (`app.example.com`) or a wildcard (`*.example.com`); the
    /// first entry is also served to clients whose SNI names no configured host.
    ///
    /// # Errors
    ///
    /// [`TlsError`] naming the file that cannot be read, is not PEM, holds no certificate / key,
    /// or whose key does not match its certificate; [`TlsError::NoCertificates`] for an empty
    /// list.
    pub fn from_pem_files(certs: Vec<(String, PathBuf, PathBuf)>) -> Result<TlsConfig, TlsError> {
        let provider = provider();
        let mut entries = Vec::with_capacity(certs.len());
        for (host, cert_path, key_path) in certs {
            let chain = read_certs(&cert_path)?;
            let key = read_key(&key_path)?;
            let certified =
                CertifiedKey::from_der(chain, key, &provider).map_err(|e| TlsError::KeyPair {
                    host: host.clone(),
                    cert: cert_path.clone(),
                    key: key_path.clone(),
                    message: e.to_string(),
                })?;
            entries.push((host, Arc::new(certified)));
        }
        Self::build(entries, provider)
    }

    /// A self-signed certificate for `hosts` (all of them as subject alternative names), for
    /// development. Clients must be told to trust it: see [`TlsConfig::certificate_pem`].
    ///
    /// # Errors
    ///
    /// [`TlsError::NoCertificates`] for no host, [`TlsError::Generate`] if a name is invalid.
    pub fn self_signed(hosts: &[String]) -> Result<TlsConfig, TlsError> {
        if hosts.is_empty() {
            return Err(TlsError::NoCertificates);
        }
        let generated = rcgen::generate_simple_self_signed(hosts.to_vec())
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        let provider = provider();
        let key = PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
        let certified = CertifiedKey::from_der(vec![generated.cert.der().clone()], key, &provider)
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        let certified = Arc::new(certified);
        let entries = hosts
            .iter()
            .map(|h| (h.clone(), certified.clone()))
            .collect();
        Self::build(entries, provider)
    }

    fn build(
        entries: Vec<(String, Arc<CertifiedKey>)>,
        provider: Arc<CryptoProvider>,
    ) -> Result<TlsConfig, TlsError> {
        let Some(default) = entries.first().map(|(_, c)| c.clone()) else {
            return Err(TlsError::NoCertificates);
        };
        let mut by_host = HashMap::with_capacity(entries.len());
        let mut hosts = Vec::with_capacity(entries.len());
        for (host, certified) in entries {
            let host = host.trim_end_matches('.').to_ascii_lowercase();
            hosts.push(host.clone());
            by_host.entry(host).or_insert(certified);
        }
        let resolver = Arc::new(SniResolver {
            by_host,
            hosts,
            default,
        });
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsConfig {
            resolver,
            server: Arc::new(server),
        })
    }

    /// The configured host names, in order (lowercase).
    #[must_use]
    pub fn hosts(&self) -> &[String] {
        &self.resolver.hosts
    }

    /// The certificate chain (leaf first) served to a client sending `sni` (`None`: no SNI).
    #[must_use]
    pub fn certificate_chain(&self, sni: Option<&str>) -> &[CertificateDer<'static>] {
        &self.resolver.pick(sni).cert
    }

    /// The leaf certificate served for `sni`, PEM-encoded: what a development client trusts
    /// when the certificate is [`TlsConfig::self_signed`].
    #[must_use]
    pub fn certificate_pem(&self, sni: Option<&str>) -> String {
        self.certificate_chain(sni)
            .first()
            .map(|c| pem_encode("CERTIFICATE", c.as_ref()))
            .unwrap_or_default()
    }

    /// The rustls server configuration (SNI resolver, ALPN `h2`, `http/1.1`).
    #[must_use]
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server.clone()
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        path: path.to_owned(),
        error,
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_file(path)?;
    let pem_error = |message: String| TlsError::Pem {
        path: path.to_owned(),
        message,
    };
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(format!("not a valid PEM file: {e}")))?;
    if chain.is_empty() {
        return Err(pem_error(
            "no certificate (-----BEGIN CERTIFICATE-----) found".into(),
        ));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_file(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        message: match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "no private key (PKCS#8, PKCS#1 or SEC1 PEM section) found".into()
            }
            e => format!("not a valid PEM file: {e}"),
        },
    })
}

/// PEM-encode one DER item (64-column base64).
fn pem_encode(label: &str, der: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = Vec::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(B64[((n >> (18 - 6 * i)) & 63) as usize]);
            } else {
                b64.push(b'=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Picks the certificate for a ClientHello's SNI.
#[derive(Debug)]
struct SniResolver {
    by_host: HashMap<String, Arc<CertifiedKey>>,
    hosts: Vec<String>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    fn pick(&self, sni: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = sni else {
            return &self.default;
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(c) = self.by_host.get(&name) {
            return c;
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(c) = self.by_host.get(&format!("*.{parent}")) {
                return c;
            }
        }
        &self.default
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips() {
        for len in 0..70 {
            let der: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
            let pem = pem_encode("CERTIFICATE", &der);
            if len == 0 {
                continue;
            }
            let back = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
            assert_eq!(back.as_ref(), &der[..], "{len}");
        }
    }

    #[test]
    fn sni_exact_wildcard_default() {
        let a = TlsConfig::self_signed(&["a.test".into()]).unwrap();
        let b = TlsConfig::self_signed(&["*.b.test".into()]).unwrap();
        let ca = a.resolver.default.clone();
        let cb = b.resolver.default.clone();
        let r = SniResolver {
            by_host: [
                ("a.test".into(), ca.clone()),
                ("*.b.test".into(), cb.clone()),
            ]
            .into(),
            hosts: vec![],
            default: ca.clone(),
        };
        assert!(Arc::ptr_eq(r.pick(Some("A.test.")), &ca));
        assert!(Arc::ptr_eq(r.pick(Some("x.b.test")), &cb));
        assert!(Arc::ptr_eq(r.pick(Some("y.x.b.test")), &ca));
        assert!(Arc::ptr_eq(r.pick(Some("other")), &ca));
        assert!(Arc::ptr_eq(r.pick(None), &ca));
    }
}
