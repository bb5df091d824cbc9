//! `berth admin …`: the platform administrator's commands.
//!
//! `berth admin backup -o FILE` saves the server's backup tar (docs/access.md, "Backup and
//! restore"). The file holds password hashes and private keys, so it is created with mode 0600,
//! and it appears whole or not at all: the tar is written to a temporary file in the same
//! directory, synced, then renamed over FILE. `-o -` writes the tar to stdout (never to a
//! terminal) and the summary line to stderr.

use crate::client::Client;
use anyhow::{bail, Context as _};
use std::io::{IsTerminal as _, Write as _};
use std::path::Path;

/// `berth admin backup -o OUTPUT`.
pub(crate) async fn backup(client: &Client, output: &Path) -> anyhow::Result<i32> {
    if output.as_os_str() == "-" {
        return backup_to_stdout(client).await;
    }
    if output.is_dir() {
        bail!(
            "-o {}: a directory; name the file to write",
            output.display()
        );
    }
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Made before asking the server, so a directory we cannot write to costs no backup.
    // `NamedTempFile` is created with mode 0600 and removed if anything below fails.
    let mut tmp = tempfile::Builder::new()
        .prefix(".berth-backup-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    let mut resp = client.backup().await?;
    let mut size: u64 = 0;
    while let Some(chunk) = resp
        .chunk()
        .await
        .context("the backup broke off while it was being received")?
    {
        tmp.write_all(&chunk)
            .with_context(|| format!("cannot write to {}", dir.display()))?;
        size += chunk.len() as u64;
    }
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("cannot write to {}", dir.display()))?;
    tmp.persist(output)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", output.display()))?;
    outln!(
        "backup written to {} ({})",
        output.display(),
        crate::commands::human_size(size)
    );
    Ok(0)
}

async fn backup_to_stdout(client: &Client) -> anyhow::Result<i32> {
    let mut out = std::io::stdout().lock();
    if out.is_terminal() {
        bail!("-o -: stdout is a terminal; redirect it to a file or a pipe");
    }
    let mut resp = client.backup().await?;
    let mut size: u64 = 0;
    while let Some(chunk) = resp
        .chunk()
        .await
        .context("the backup broke off while it was being received")?
    {
        // A reader that goes away has not got the backup: an error, not a quiet exit.
        out.write_all(&chunk).context("cannot write to stdout")?;
        size += chunk.len() as u64;
    }
    out.flush().context("cannot write to stdout")?;
    errln!(
        "backup written to stdout ({})",
        crate::commands::human_size(size)
    );
    Ok(0)
}
