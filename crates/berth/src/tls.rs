//! TLS settings from the command line, all built on the gateway's rustls code
//! ([`berth_gateway::TlsConfig`]): `--gateway-tls-cert HOST=CERT:KEY` for the gateway,
//! `--api-tls-cert CERT:KEY` for the API, and the client side of `berth gateway --control
//! https://… --ca-file F`.

use anyhow::{anyhow, bail, Context};
use berth_gateway::TlsConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Parse the certificate flags; with none, generate a self-signed certificate for `localhost`
/// and write it to `dir/gateway-selfsigned.pem` so development clients can trust it.
pub fn config(certs: &[String], dir: &Path) -> anyhow::Result<TlsConfig> {
    if certs.is_empty() {
        let tls = TlsConfig::self_signed(&["localhost".to_string(), "127.0.0.1".to_string()])
            .map_err(|e| anyhow!("cannot generate a self-signed certificate: {e}"))?;
        let path = dir.join("gateway-selfsigned.pem");
        std::fs::write(&path, tls.certificate_pem(None))
            .with_context(|| format!("cannot write {}", path.display()))?;
        tracing::warn!(cert = %path.display(), "HTTPS uses a self-signed certificate (development only)");
        return Ok(tls);
    }
    let mut entries = Vec::new();
    for c in certs {
        let (host, files) = c
            .split_once('=')
            .ok_or_else(|| anyhow!("--gateway-tls-cert {c:?}: expected HOST=CERT.pem:KEY.pem"))?;
        let (cert, key) = files
            .split_once(':')
            .ok_or_else(|| anyhow!("--gateway-tls-cert {c:?}: expected HOST=CERT.pem:KEY.pem"))?;
        if host.is_empty() {
            return Err(anyhow!("--gateway-tls-cert {c:?}: the host is empty"));
        }
        entries.push((host.to_string(), PathBuf::from(cert), PathBuf::from(key)));
    }
    TlsConfig::from_pem_files(entries).map_err(|e| anyhow!("{e}"))
}

/// The API's TLS configuration from `--api-tls-cert CERT:KEY`: the gateway's loading and
/// checking of PEM files ([`TlsConfig::from_pem_files`]), with ALPN `http/1.1` only (the API
/// speaks HTTP/1.1).
pub fn api_config(spec: &str) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let (cert, key) = spec
        .split_once(':')
        .filter(|(c, k)| !c.is_empty() && !k.is_empty())
        .ok_or_else(|| anyhow!("--api-tls-cert {spec:?}: expected CERT.pem:KEY.pem"))?;
    // One certificate, served whatever the client's SNI says (the name is only a label).
    let tls = TlsConfig::from_pem_files(vec![(
        "api".to_string(),
        PathBuf::from(cert),
        PathBuf::from(key),
    )])
    .map_err(|e| anyhow!("--api-tls-cert: {e}"))?;
    let mut config = (*tls.server_config()).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The TLS client configuration for calls to an `https://` control plane: trust the system's
/// roots and the CA certificates in `ca_file` (a private CA). The aws-lc-rs provider is passed
/// explicitly, as everywhere in Berth.
pub fn client_config(ca_file: Option<&Path>) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let bytes = std::fs::read(path)
            .with_context(|| format!("--ca-file: cannot read {}", path.display()))?;
        let certs = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow!("--ca-file {}: not a valid PEM file: {e}", path.display()))?;
        if certs.is_empty() {
            bail!(
                "--ca-file {}: no certificate (-----BEGIN CERTIFICATE-----) found",
                path.display()
            );
        }
        for c in certs {
            roots.add(c).map_err(|e| {
                anyhow!(
                    "--ca-file {}: not a usable CA certificate: {e}",
                    path.display()
                )
            })?;
        }
    }
    if roots.is_empty() {
        bail!("no trusted CA certificates found on this system; give --ca-file");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
