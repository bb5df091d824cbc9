//! Live build logs: [`LogLine`]s, cut into lines as output arrives, with secrets masked.
//!
//! Rules it keeps:
//! - Output is delivered line by line as soon as a line is complete (a trailing partial line
//!   is flushed when its stream ends), so a secret is never split across two log lines and
//!   escapes the mask.
//! - **Every** line handed to the sink passes through the [`Masker`]: each secret value (and
//!   each line of a multi-line value) is replaced by `***`, longest first.
//! - Carriage-return progress output (`\r`) is kept inside the line; invalid UTF-8 is decoded
//!   lossily.

use std::collections::BTreeMap;

/// Which output a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogStreamKind {
    /// A container's standard output, or the engine's build output.
    Stdout,
    /// A container's standard error.
    Stderr,
    /// Berth's own account of the build (checkout, step start and end, failures).
    System,
}

/// One line of a build's live log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The step it belongs to (`checkout` and `pipeline` for the phases before the steps).
    pub step: String,
    /// Where it came from.
    pub stream: LogStreamKind,
    /// The text, without the line break, secrets masked.
    pub text: String,
}

/// Replaces secret values with `***`.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    needles: Vec<String>,
}

impl Masker {
    /// A masker for these secrets' values (the names are not secret).
    #[must_use]
    pub fn new(secrets: &BTreeMap<String, String>) -> Masker {
        let mut needles: Vec<String> = Vec::new();
        for value in secrets.values() {
            if !value.is_empty() {
                needles.push(value.clone());
            }
            for line in value.lines() {
                let line = line.trim_end_matches('\r');
                if !line.is_empty() {
                    needles.push(line.to_string());
                }
            }
        }
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        needles.dedup();
        Masker { needles }
    }

    /// `text` with every secret replaced by `***`.
    #[must_use]
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for n in &self.needles {
            if out.contains(n.as_str()) {
                out = out.replace(n.as_str(), "***");
            }
        }
        out
    }
}

/// Cuts a byte stream into lines.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    buf: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes; returns the lines now complete (without `\n`).
    pub(crate) fn push(&mut self, data: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(data);
        let mut lines = Vec::new();
        while let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=i).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]);
            lines.push(text.trim_end_matches('\r').to_string());
        }
        lines
    }

    /// The unterminated rest, if any.
    pub(crate) fn finish(&mut self) -> Option<String> {
        if self.buf.is_empty() {
            return None;
        }
        let text = String::from_utf8_lossy(&self.buf).into_owned();
        self.buf.clear();
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_secrets_and_their_lines() {
        let secrets: BTreeMap<String, String> = [
            ("TOKEN".to_string(), "hunter2".to_string()),
            ("KEY".to_string(), "line-one\nline-two".to_string()),
            ("EMPTY".to_string(), String::new()),
        ]
        .into();
        let m = Masker::new(&secrets);
        assert_eq!(m.mask("token=hunter2 again hunter2"), "token=*** again ***");
        assert_eq!(m.mask("k: line-two"), "k: ***");
        assert_eq!(m.mask("TOKEN is a name"), "TOKEN is a name");
    }

    #[test]
    fn splits_lines_across_chunks() {
        let mut s = LineSplitter::default();
        assert!(s.push(b"hel").is_empty());
        assert_eq!(s.push(b"lo\r\nwor"), vec!["hello"]);
        assert_eq!(s.push(b"ld\n\n"), vec!["world", ""]);
        assert_eq!(s.push(b"tail"), Vec::<String>::new());
        assert_eq!(s.finish().as_deref(), Some("tail"));
        assert_eq!(s.finish(), None);
    }
}
