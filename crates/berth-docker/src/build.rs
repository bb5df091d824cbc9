//! Image builds through the engine's `POST /build` (the legacy builder) and its output stream.
//!
//! Rules it keeps:
//! - The build context is an in-memory tar the caller made (it decides what is in it: see
//!   `berth-build`'s `.dockerignore` handling); this module only ships it.
//! - The answer is a sequence of JSON messages: `{"stream": text}` (build output),
//!   `{"aux": {"ID": "sha256:..."}}` (the resulting image), `{"error": text}` (the build
//!   failed). They are decoded by the same split-anywhere [`JsonSeqDecoder`] as events, and
//!   handed out as [`BuildMessage`]s in arrival order; nothing is buffered beyond one message.
//! - Dropping a [`BuildStream`] closes its connection, which makes the engine cancel the build:
//!   that is how a caller cancels.
//! - Layer cache is the engine's: builds never pass `nocache`, and intermediate containers are
//!   always removed (`rm`, `forcerm`).

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::stream::{BoxStream, Stream, StreamExt};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::Deserialize;

use crate::stream::JsonSeqDecoder;
use crate::transport::ConnGuard;
use crate::DockerError;

/// What to build from a context tar (`POST /build` query parameters).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuildParams {
    /// The reference to tag the result with, e.g. `berth/shop:v1` (`t`). Empty: untagged.
    pub tag: String,
    /// The Dockerfile's path inside the context (`dockerfile`); empty means `Dockerfile`.
    pub dockerfile: String,
    /// `ARG` values (`buildargs`).
    pub buildargs: BTreeMap<String, String>,
    /// The stage to stop at (`target`).
    pub target: Option<String>,
    /// Labels put on the resulting image (`labels`).
    pub labels: BTreeMap<String, String>,
}

/// One message of a build's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildMessage {
    /// Build output text (`stream` or `status`), as the engine sent it: it may hold several
    /// lines or part of one.
    Output(String),
    /// The ID of the image the build produced (`aux.ID`), e.g. `sha256:...`.
    ImageId(String),
    /// The build failed with this message (`error`). The stream ends after it.
    Error(String),
}

#[derive(Deserialize, Default)]
struct WireBuildMessage {
    #[serde(default)]
    stream: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default, rename = "errorDetail")]
    error_detail: Option<WireErrorDetail>,
    #[serde(default)]
    aux: Option<WireAux>,
}

#[derive(Deserialize, Default)]
struct WireErrorDetail {
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize, Default)]
struct WireAux {
    #[serde(default, rename = "ID")]
    id: Option<String>,
}

impl WireBuildMessage {
    fn into_message(self) -> Option<BuildMessage> {
        if let Some(e) = self
            .error
            .or_else(|| self.error_detail.and_then(|d| d.message))
        {
            return Some(BuildMessage::Error(e));
        }
        if let Some(id) = self.aux.and_then(|a| a.id) {
            return Some(BuildMessage::ImageId(id));
        }
        self.stream.or(self.status).map(BuildMessage::Output)
    }
}

/// The output of a running build. Implements [`Stream`]; [`BuildStream::recv`] is the same
/// without needing `StreamExt`. Dropping it cancels the build.
pub struct BuildStream {
    inner: BoxStream<'static, Result<BuildMessage, DockerError>>,
}

impl BuildStream {
    pub(crate) fn new(body: Incoming, conn: ConnGuard) -> BuildStream {
        struct State {
            body: Incoming,
            _conn: ConnGuard,
            decoder: JsonSeqDecoder,
            pending: VecDeque<BuildMessage>,
            done: bool,
        }
        let state = State {
            body,
            _conn: conn,
            decoder: JsonSeqDecoder::default(),
            pending: VecDeque::new(),
            done: false,
        };
        let inner = futures_util::stream::unfold(state, |mut st| async move {
            loop {
                if let Some(m) = st.pending.pop_front() {
                    return Some((Ok(m), st));
                }
                if st.done {
                    return None;
                }
                let data: Bytes = match st.body.frame().await {
                    None => return None,
                    Some(Err(e)) => {
                        st.done = true;
                        return Some((Err(e.into()), st));
                    }
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(d) => d,
                        Err(_) => continue,
                    },
                };
                match st.decoder.push::<WireBuildMessage>(&data) {
                    Ok(msgs) => st
                        .pending
                        .extend(msgs.into_iter().filter_map(WireBuildMessage::into_message)),
                    Err(source) => {
                        st.done = true;
                        let err = DockerError::Json {
                            context: "build output".into(),
                            source,
                        };
                        return Some((Err(err), st));
                    }
                }
            }
        })
        .boxed();
        BuildStream { inner }
    }

    /// The next message; `None` when the engine ended the output (the build finished or
    /// failed: look for [`BuildMessage::Error`] / [`BuildMessage::ImageId`]).
    pub async fn recv(&mut self) -> Option<Result<BuildMessage, DockerError>> {
        self.inner.next().await
    }
}

impl Stream for BuildStream {
    type Item = Result<BuildMessage, DockerError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl std::fmt::Debug for BuildStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildStream").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &str) -> Vec<BuildMessage> {
        let mut d = JsonSeqDecoder::default();
        d.push::<WireBuildMessage>(text.as_bytes())
            .unwrap()
            .into_iter()
            .filter_map(WireBuildMessage::into_message)
            .collect()
    }

    #[test]
    fn decodes_the_legacy_builder_messages() {
        let got = decode(concat!(
            r#"{"stream":"Step 1/2 : FROM scratch\n"}"#,
            "\n",
            r#"{"aux":{"ID":"sha256:abc"}}"#,
            "\n",
            r#"{"status":"pulling"}"#,
            r#"{"errorDetail":{"message":"boom"},"error":"boom"}"#,
            r#"{"progressDetail":{}}"#,
        ));
        assert_eq!(
            got,
            vec![
                BuildMessage::Output("Step 1/2 : FROM scratch\n".into()),
                BuildMessage::ImageId("sha256:abc".into()),
                BuildMessage::Output("pulling".into()),
                BuildMessage::Error("boom".into()),
            ]
        );
    }
}
