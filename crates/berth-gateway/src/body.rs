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

use crate::pool::{InFlight, Sender};
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A response body sent by the gateway.
pub struct ProxyBody {
    kind: Kind,
}

enum Kind {
    Full(Option<Bytes>),
    Upstream {
        inner: Incoming,
        lease: Option<Lease>,
    },
}

/// What a relayed response holds until its body is done.
pub(crate) struct Lease {
    pub(crate) guard: InFlight,
    pub(crate) sender: Sender,
    pub(crate) max_idle: usize,
}

impl Lease {
    /// The response was relayed completely: count it done and pool the connection.
    fn finish(self) {
        let Lease {
            guard,
            sender,
            max_idle,
        } = self;
        guard.endpoint().checkin(sender, max_idle);
        drop(guard);
    }
}

impl ProxyBody {
    /// A complete body.
    #[must_use]
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Self {
            kind: Kind::Full(Some(bytes.into())),
        }
    }

    /// Relay `inner`, releasing `lease` when it ends.
    pub(crate) fn upstream(inner: Incoming, lease: Lease) -> Self {
        Self {
            kind: Kind::Upstream {
                inner,
                lease: Some(lease),
            },
        }
    }
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
