//! The engine's two streaming answers: the event stream and container logs.
//!
//! Rules it keeps:
//! - Each stream owns its HTTP connection; dropping the stream closes it (no background task
//!   outlives its consumer).
//! - Framing is decoded by small pure decoders ([`JsonSeqDecoder`], [`LogDemuxer`]) that accept
//!   bytes split anywhere, so they are unit-tested without an engine.
//! - A stream ends with `None` when the engine closes it cleanly and yields one `Err` first
//!   when the connection breaks; either way the caller re-subscribes (events are a wake-up
//!   signal, never the source of truth).

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::stream::{BoxStream, Stream, StreamExt};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::de::DeserializeOwned;

use crate::transport::ConnGuard;
use crate::types::{Event, WireEvent};
use crate::DockerError;

/// Splits a byte stream of concatenated JSON values (the engine separates them with newlines,
/// but chunk boundaries fall anywhere) into parsed values.
#[derive(Debug, Default)]
pub(crate) struct JsonSeqDecoder {
    buf: BytesMut,
}

impl JsonSeqDecoder {
    /// Feeds bytes and returns every value now complete.
    pub(crate) fn push<T: DeserializeOwned>(
        &mut self,
        data: &[u8],
    ) -> Result<Vec<T>, serde_json::Error> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        let mut consumed = 0;
        {
            let mut iter = serde_json::Deserializer::from_slice(&self.buf).into_iter::<T>();
            loop {
                match iter.next() {
                    Some(Ok(v)) => {
                        out.push(v);
                        consumed = iter.byte_offset();
                    }
                    Some(Err(e)) if e.is_eof() => break,
                    Some(Err(e)) => return Err(e),
                    None => {
                        consumed = iter.byte_offset();
                        break;
                    }
                }
            }
        }
        self.buf.advance(consumed);
        Ok(out)
    }
}

/// Which output a log chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSource {
    /// Standard input (only seen on attach streams).
    Stdin,
    /// Standard output; also everything from a container with a TTY.
    Stdout,
    /// Standard error.
    Stderr,
    /// The engine's own message inside a stream it had already begun (a `Systemerr` frame,
    /// e.g. `Error grabbing logs: ...` from a Swarm task's node). [`LogStream`] turns it into
    /// [`DockerError::InStream`], so its callers never see this source.
    System,
}

/// A piece of container output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    /// Which output it came from.
    pub stream: LogSource,
    /// The bytes, as the container wrote them (one frame: usually a line or a write).
    pub data: Bytes,
}

/// Decodes Docker's multiplexed log format: frames of an 8-byte header
/// `[stream, 0, 0, 0, len_be32]` followed by `len` bytes. With `tty`, the body is raw stdout.
#[derive(Debug)]
pub(crate) struct LogDemuxer {
    tty: bool,
    buf: BytesMut,
}

impl LogDemuxer {
    pub(crate) fn new(tty: bool) -> LogDemuxer {
        LogDemuxer {
            tty,
            buf: BytesMut::new(),
        }
    }

    /// Feeds bytes and returns every chunk now complete.
    pub(crate) fn push(&mut self, data: Bytes) -> Vec<LogChunk> {
        if self.tty {
            if data.is_empty() {
                return Vec::new();
            }
            return vec![LogChunk {
                stream: LogSource::Stdout,
                data,
            }];
        }
        self.buf.extend_from_slice(&data);
        let mut out = Vec::new();
        while self.buf.len() >= 8 {
            let len =
                u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]) as usize;
            if self.buf.len() < 8 + len {
                break;
            }
            let stream = match self.buf[0] {
                0 => LogSource::Stdin,
                2 => LogSource::Stderr,
                3 => LogSource::System,
                _ => LogSource::Stdout,
            };
            self.buf.advance(8);
            let data = self.buf.split_to(len).freeze();
            out.push(LogChunk { stream, data });
        }
        out
    }

    /// Whatever was left undecoded when the stream ended (a truncated frame), if anything.
    pub(crate) fn leftover(&mut self) -> Option<LogChunk> {
        if self.buf.len() <= 8 {
            return None;
        }
        let stream = if self.buf[0] == 2 {
            LogSource::Stderr
        } else {
            LogSource::Stdout
        };
        self.buf.advance(8);
        Some(LogChunk {
            stream,
            data: self.buf.split().freeze(),
        })
    }
}

/// State shared by both streams: the body being read and the connection it rides on.
struct BodyReader {
    body: Incoming,
    _conn: ConnGuard,
}

impl BodyReader {
    /// The next data frame; `Ok(None)` at the end of the body.
    async fn next_data(&mut self) -> Result<Option<Bytes>, DockerError> {
        loop {
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }
}

/// The engine's event stream. Implements [`Stream`]; [`EventStream::recv`] is the same without
/// needing `StreamExt`.
pub struct EventStream {
    inner: BoxStream<'static, Result<Event, DockerError>>,
}

impl EventStream {
    pub(crate) fn new(body: Incoming, conn: ConnGuard) -> EventStream {
        struct State {
            reader: BodyReader,
            decoder: JsonSeqDecoder,
            pending: VecDeque<Event>,
            done: bool,
        }
        let state = State {
            reader: BodyReader { body, _conn: conn },
            decoder: JsonSeqDecoder::default(),
            pending: VecDeque::new(),
            done: false,
        };
        let inner = futures_util::stream::unfold(state, |mut st| async move {
            loop {
                if let Some(e) = st.pending.pop_front() {
                    return Some((Ok(e), st));
                }
                if st.done {
                    return None;
                }
                match st.reader.next_data().await {
                    Ok(None) => return None,
                    Ok(Some(data)) => match st.decoder.push::<WireEvent>(&data) {
                        Ok(events) => st.pending.extend(events.into_iter().map(Event::from)),
                        Err(source) => {
                            st.done = true;
                            let err = DockerError::Json {
                                context: "event stream".into(),
                                source,
                            };
                            return Some((Err(err), st));
                        }
                    },
                    Err(e) => {
                        st.done = true;
                        return Some((Err(e), st));
                    }
                }
            }
        })
        .boxed();
        EventStream { inner }
    }

    /// The next event; `None` when the engine ended the stream.
    pub async fn recv(&mut self) -> Option<Result<Event, DockerError>> {
        self.inner.next().await
    }
}

impl Stream for EventStream {
    type Item = Result<Event, DockerError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

/// A container's output. Implements [`Stream`]; [`LogStream::recv`] is the same without
/// needing `StreamExt`.
pub struct LogStream {
    inner: BoxStream<'static, Result<LogChunk, DockerError>>,
}

impl LogStream {
    pub(crate) fn new(body: Incoming, conn: ConnGuard, tty: bool) -> LogStream {
        struct State {
            reader: BodyReader,
            demux: LogDemuxer,
            pending: VecDeque<LogChunk>,
            done: bool,
        }
        let state = State {
            reader: BodyReader { body, _conn: conn },
            demux: LogDemuxer::new(tty),
            pending: VecDeque::new(),
            done: false,
        };
        let inner = futures_util::stream::unfold(state, |mut st| async move {
            loop {
                if let Some(c) = st.pending.pop_front() {
                    if c.stream == LogSource::System {
                        // The engine gave up on the stream: an error, never a log line.
                        st.done = true;
                        st.pending.clear();
                        let message = String::from_utf8_lossy(&c.data).trim().to_string();
                        return Some((Err(DockerError::InStream(message)), st));
                    }
                    return Some((Ok(c), st));
                }
                if st.done {
                    return None;
                }
                match st.reader.next_data().await {
                    Ok(None) => {
                        st.done = true;
                        st.pending.extend(st.demux.leftover());
                    }
                    Ok(Some(data)) => st.pending.extend(st.demux.push(data)),
                    Err(e) => {
                        st.done = true;
                        return Some((Err(e), st));
                    }
                }
            }
        })
        .boxed();
        LogStream { inner }
    }

    /// The next chunk; `None` when the output ended (the container stopped, with `follow`, or
    /// everything was sent, without).
    pub async fn recv(&mut self) -> Option<Result<LogChunk, DockerError>> {
        self.inner.next().await
    }

    /// Reads the stream to its end and returns stdout and stderr concatenated in arrival order,
    /// lossily decoded as UTF-8. Only for finite streams (`follow = false`) or tests.
    pub async fn collect_text(mut self) -> Result<String, DockerError> {
        let mut out = Vec::new();
        while let Some(chunk) = self.recv().await {
            out.extend_from_slice(&chunk?.data);
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

impl Stream for LogStream {
    type Item = Result<LogChunk, DockerError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl std::fmt::Debug for LogStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStream").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_seq_handles_any_split() {
        let text = b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n";
        for split in 0..text.len() {
            let mut d = JsonSeqDecoder::default();
            let mut got: Vec<serde_json::Value> = d.push(&text[..split]).unwrap();
            got.extend(d.push::<serde_json::Value>(&text[split..]).unwrap());
            assert_eq!(got.len(), 3, "split at {split}");
            assert_eq!(got[2]["a"], 3);
        }
    }

    #[test]
    fn json_seq_reports_garbage() {
        let mut d = JsonSeqDecoder::default();
        assert!(d.push::<serde_json::Value>(b"{\"a\":1} nope").is_err());
    }

    fn frame(kind: u8, data: &[u8]) -> Vec<u8> {
        let mut v = vec![kind, 0, 0, 0];
        v.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn demux_handles_any_split() {
        let mut all = frame(1, b"hello\n");
        all.extend(frame(2, b"oops\n"));
        all.extend(frame(1, b""));
        all.extend(frame(1, b"bye\n"));
        for split in 0..all.len() {
            let mut d = LogDemuxer::new(false);
            let mut got = d.push(Bytes::copy_from_slice(&all[..split]));
            got.extend(d.push(Bytes::copy_from_slice(&all[split..])));
            let texts: Vec<(LogSource, &[u8])> =
                got.iter().map(|c| (c.stream, &c.data[..])).collect();
            assert_eq!(
                texts,
                vec![
                    (LogSource::Stdout, &b"hello\n"[..]),
                    (LogSource::Stderr, &b"oops\n"[..]),
                    (LogSource::Stdout, &b""[..]),
                    (LogSource::Stdout, &b"bye\n"[..]),
                ],
                "split at {split}"
            );
            assert!(d.leftover().is_none());
        }
    }

    #[test]
    fn demux_tells_the_engines_own_message_apart() {
        let mut all = frame(1, b"up\n");
        all.extend(frame(3, b"Error grabbing logs: node is down\n"));
        let mut d = LogDemuxer::new(false);
        let got = d.push(Bytes::from(all));
        assert_eq!(got[0].stream, LogSource::Stdout);
        assert_eq!(got[1].stream, LogSource::System);
        assert_eq!(&got[1].data[..], b"Error grabbing logs: node is down\n");
    }

    #[test]
    fn tty_is_raw_stdout() {
        let mut d = LogDemuxer::new(true);
        let got = d.push(Bytes::from_static(b"\x01raw"));
        assert_eq!(got[0].stream, LogSource::Stdout);
        assert_eq!(&got[0].data[..], b"\x01raw");
    }
}
