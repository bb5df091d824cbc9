//! The one error type of this crate.
//!
//! Rules it keeps: every variant says what failed in words an operator can act on; Docker's own
//! `{"message": ...}` is carried verbatim; the low-level cause is kept as `source` so callers can
//! log the whole chain. Status codes with a meaning the control plane branches on (404, 409) get
//! their own variants so nobody matches on numbers.

/// Everything that can go wrong talking to the Docker Engine.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The engine's socket or host could not be connected to (not running, wrong path, no
    /// permission). `endpoint` is what was tried, e.g. `unix:///var/run/docker.sock`.
    #[error(
        "cannot reach the Docker engine at {endpoint} (set DOCKER_HOST to use another): {}",
        io_reason(source)
    )]
    Unreachable {
        /// The endpoint that was tried.
        endpoint: String,
        /// The connect error.
        #[source]
        source: std::io::Error,
    },

    /// `DOCKER_HOST` (or the host given to `connect_to`) is not a form this client speaks.
    #[error("unsupported Docker host {0:?}: expected unix:///path or tcp://host:port")]
    InvalidHost(String),

    /// The engine speaks an API version older than the minimum Berth needs.
    #[error("the Docker engine speaks API {server}, Berth needs at least {minimum}")]
    UnsupportedVersion {
        /// The engine's `ApiVersion`.
        server: String,
        /// The oldest version Berth supports.
        minimum: &'static str,
    },

    /// The object does not exist (HTTP 404). Holds Docker's message, e.g. `No such container: x`.
    #[error("not found: {0}")]
    NotFound(String),

    /// The request conflicts with the engine's state (HTTP 409): a name already in use, a
    /// container that is not running, a volume still in use. Holds Docker's message.
    #[error("conflict: {0}")]
    Conflict(String),

    /// Any other non-success answer from the engine.
    #[error("Docker API error {status}: {message}")]
    Api {
        /// The HTTP status code.
        status: u16,
        /// Docker's `message`, or the raw body when it sent none.
        message: String,
    },

    /// The engine reported a failure inside a stream it had already answered 200 to (a log
    /// stream's `Systemerr` frame: a Swarm task's logs its node could not read, say). Holds
    /// the engine's message.
    #[error("the Docker engine ended the stream: {0}")]
    InStream(String),

    /// The HTTP exchange failed after the connection was made (the engine closed the
    /// connection, a malformed response, a stream cut short).
    #[error("HTTP exchange with the Docker engine failed: {0}")]
    Http(#[from] hyper::Error),

    /// An I/O error outside connecting (e.g. while reading a stream).
    #[error("I/O error talking to the Docker engine: {0}")]
    Io(#[from] std::io::Error),

    /// The engine's answer did not have the JSON shape this client expects.
    #[error("unexpected JSON from the Docker engine ({context}): {source}")]
    Json {
        /// Which answer was being parsed.
        context: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },

    /// A request could not be built (a name or path that is not valid in a URI).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl DockerError {
    /// True for [`DockerError::NotFound`].
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        matches!(self, DockerError::NotFound(_))
    }

    /// True for [`DockerError::Conflict`].
    #[must_use]
    pub fn is_conflict(&self) -> bool {
        matches!(self, DockerError::Conflict(_))
    }

    /// True when the engine refused a network because its subnet overlaps another network's
    /// ("Pool overlaps with other one on this address space"): try another subnet.
    #[must_use]
    pub fn is_address_overlap(&self) -> bool {
        matches!(self, DockerError::Api { message, .. } | DockerError::Conflict(message)
            if message.contains("overlaps with"))
    }

    /// True when the engine could not be reached at all: the caller should back off and retry
    /// (or re-subscribe, for streams) rather than treat the request as answered.
    #[must_use]
    pub fn is_unreachable(&self) -> bool {
        matches!(self, DockerError::Unreachable { .. })
    }
}

/// An I/O error's description without the `(os error N)` suffix, which means nothing to an
/// operator reading "No such file or directory".
fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_names_endpoint_and_docker_host() {
        let e = DockerError::Unreachable {
            endpoint: "unix:///nope.sock".into(),
            source: std::io::Error::from_raw_os_error(2),
        };
        assert_eq!(
            e.to_string(),
            "cannot reach the Docker engine at unix:///nope.sock (set DOCKER_HOST to use another): No such file or directory"
        );
    }
}
