//! Turning `--gateway-tls-cert HOST=CERT:KEY` flags into the gateway's TLS configuration.

use anyhow::{anyhow, Context};
use berth_gateway::TlsConfig;
use std::path::{Path, PathBuf};

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
