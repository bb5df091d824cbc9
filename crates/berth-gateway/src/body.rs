//! The body of every response the gateway sends: a relayed upstream body or a small full body
//! (error answers).
//!
//! Rules this module keeps:
//! * The upstream body is streamed frame by frame, never buffered.
//! * The request's [`InFlight`] guard lives inside the body, so the endpoint's count drops
//!   exactly when the body has ended or when the client side drops it (disconnect, error).
//! * The upstream connection goes back to its endpoint's pool only after the body ended cleanly;
//!   a body cut short drops the connection (hyper closes it), so no half-read response is ever
//!   left on a pooled connection.
//! * A bulkhead permit, when the service has one, also lives in the body: the service counts as
//!   busy until its answer has been relayed.
//! * Request bodies ([`RequestBody`]) are streamed too, counted against the body size limit; a
//!   client that sends too much or breaks its own framing is told apart from an upstream failure
//!   by the [`RequestBodyError`] in the error chain.

use crate::pool::{H2Sender, InFlight, Sender};
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A response body sent by the gateway.
pub struct ProxyBody {
    kind: Kind,
    /// Held until the body is dropped (bulkhead).
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

enum Kind {
    Full(Option<Bytes>),
    Upstream {
        inner: Incoming,
        lease: Option<Lease>,
    },
}

/// The upstream connection a response came on.
pub(crate) enum Conn {
    /// A pooled HTTP/1.1 connection: back to the pool once the body ended cleanly.
    Pooled(Sender),
    /// The endpoint's shared HTTP/2 connection: nothing to give back (the handle keeps the
    /// connection alive while the stream is relayed).
    Shared { _conn: H2Sender },
    /// A connection of its own (an upgrade attempt that was refused): closed afterwards.
    Dedicated { _conn: Sender },
}

/// What a relayed response holds until its body is done.
pub(crate) struct Lease {
    pub(crate) guard: InFlight,
    pub(crate) conn: Conn,
    pub(crate) max_idle: usize,
}

impl Lease {
    /// The response was relayed completely: count it done and pool the connection.
    fn finish(self) {
        let Lease {
            guard,
            conn,
            max_idle,
        } = self;
        if let Conn::Pooled(sender) = conn {
            guard.endpoint().checkin(sender, max_idle);
        }
        drop(guard);
    }
}

impl ProxyBody {
    /// A complete body.
    #[must_use]
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Self {
            kind: Kind::Full(Some(bytes.into())),
            permit: None,
        }
    }

    /// No body at all (`101`).
    #[must_use]
    pub fn empty() -> Self {
        Self {
            kind: Kind::Full(None),
            permit: None,
        }
    }

    /// The bytes of a complete body (empty for a relayed one).
    pub(crate) fn full_bytes(&self) -> &[u8] {
        match &self.kind {
            Kind::Full(Some(b)) => b,
            _ => &[],
        }
    }

    /// Relay `inner`, releasing `lease` when it ends.
    pub(crate) fn upstream(inner: Incoming, lease: Lease) -> Self {
        Self {
            kind: Kind::Upstream {
                inner,
                lease: Some(lease),
            },
            permit: None,
        }
    }

    /// Hold `permit` until the body is done.
    pub(crate) fn hold(&mut self, permit: tokio::sync::OwnedSemaphorePermit) {
        self.permit = Some(permit);
    }
}

/// Why the request body could not be relayed: the client's fault, answered 413 or 400.
#[derive(Debug)]
pub enum RequestBodyError {
    /// More than the body size limit.
    TooLarge,
    /// The client's body framing is broken (bad chunking, early end).
    Client(hyper::Error),
}

impl std::fmt::Display for RequestBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLarge => f.write_str("request body too large"),
            Self::Client(e) => write!(f, "client request body: {e}"),
        }
    }
}

impl std::error::Error for RequestBodyError {}

/// The body sent upstream: the client's body, streamed and counted, or nothing (a retry of a
/// request that had no body).
pub struct RequestBody {
    inner: Option<Incoming>,
    limit: u64,
    seen: u64,
}

impl RequestBody {
    /// Stream `inner`, failing once more than `limit` bytes came.
    #[must_use]
    pub fn new(inner: Incoming, limit: u64) -> Self {
        Self {
            inner: Some(inner),
            limit,
            seen: 0,
        }
    }

    /// No body.
    #[must_use]
    pub fn empty() -> Self {
        Self {
            inner: None,
            limit: 0,
            seen: 0,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match std::task::ready!(Pin::new(inner).poll_frame(cx)) {
            None => Poll::Ready(None),
            Some(Err(e)) => Poll::Ready(Some(Err(RequestBodyError::Client(e)))),
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    if this.seen > this.limit {
                        return Poll::Ready(Some(Err(RequestBodyError::TooLarge)));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// The client-side body error in an upstream send failure, if that is what it was.
#[must_use]
pub fn request_body_error(e: &hyper::Error) -> Option<&RequestBodyError> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(b) = s.downcast_ref::<RequestBodyError>() {
            return Some(b);
        }
        source = s.source();
    }
    None
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match &mut self.get_mut().kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream { inner, lease } => {
                let frame = std::task::ready!(Pin::new(&mut *inner).poll_frame(cx));
                match &frame {
                    None => {
                        if let Some(lease) = lease.take() {
                            lease.finish();
                        }
                    }
                    Some(Err(_)) => {
                        // Broken upstream body: the connection is not reusable.
                        drop(lease.take());
                    }
                    Some(Ok(_)) => {}
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        if let Kind::Upstream { inner, lease } = &mut self.kind {
            if let Some(lease) = lease.take() {
                // A body with nothing left to read (HEAD, 204, empty) may never be polled.
                if inner.is_end_stream() {
                    lease.finish();
                }
                // Otherwise the guard and the connection drop here: count done, connection closed.
            }
        }
    }
}
