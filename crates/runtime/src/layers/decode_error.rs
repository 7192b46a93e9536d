//! An undecodable request message is the caller's mistake: answer it
//! INVALID_ARGUMENT, not tonic's INTERNAL.
//!
//! tonic (like grpc-go, following gRPC's status code table) answers a
//! request body that is not valid protobuf for the method with INTERNAL
//! "failed to decode Protobuf message: ...". For us INTERNAL means "the
//! server broke": it counts as a server fault in the RED metrics and
//! alerts, and it tells the caller nothing is theirs to fix. The
//! `public_rpc` fuzz target (crates/fuzz-targets) holds the edge to this.
//!
//! Where it sits: innermost, right around the service, so that every layer
//! above it (the RED metrics, the span's status code) sees the status the
//! caller gets. tonic answers such a request trailers-only (the status in
//! the response head), which is all this layer looks at.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tonic::{Code, Status};
use tower::{Layer, Service};

/// What prost's decode errors say first (`prost::DecodeError`'s Display).
const DECODE_FAILURE: &str = "failed to decode Protobuf message";

/// Adds `DecodeError` around a server's services.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeErrorLayer;

impl<S> Layer<S> for DecodeErrorLayer {
    type Service = DecodeError<S>;

    fn layer(&self, inner: S) -> DecodeError<S> {
        DecodeError { inner }
    }
}

/// Turns tonic's INTERNAL for an undecodable request into INVALID_ARGUMENT.
#[derive(Debug, Clone)]
pub struct DecodeError<S> {
    inner: S,
}

impl<S, B, RB> Service<http::Request<B>> for DecodeError<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(request),
        }
    }
}

pin_project! {
    /// The inner future; rewrites the status of a decode failure.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut response = ready!(self.project().inner.poll(cx))?;
        if let Some(status) = caller_status(response.headers()) {
            // Cannot fail: the message is ours, and add_header encodes it.
            let _ = status.add_header(response.headers_mut());
        }
        Poll::Ready(Ok(response))
    }
}

/// INVALID_ARGUMENT for a trailers-only INTERNAL that is a decode failure.
fn caller_status(headers: &http::HeaderMap) -> Option<Status> {
    let status = Status::from_header_map(headers)?;
    let detail = status.message().strip_prefix(DECODE_FAILURE)?;
    (status.code() == Code::Internal).then(|| {
        Status::invalid_argument(format!(
            "the request message is not valid protobuf for this method{detail}: \
             check that the client was built from this service's .proto files"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt as _;

    /// A service that answers every call with `status`, as tonic would.
    fn answering(
        status: Status,
    ) -> DecodeError<
        tower::util::BoxCloneService<
            http::Request<()>,
            http::Response<tonic::body::Body>,
            std::convert::Infallible,
        >,
    > {
        let service = tower::service_fn(move |_: http::Request<()>| {
            let status = status.clone();
            async move { Ok(status.into_http()) }
        });
        DecodeErrorLayer.layer(tower::util::BoxCloneService::new(service))
    }

    async fn status_of(status: Status) -> Status {
        let response = answering(status)
            .oneshot(http::Request::new(()))
            .await
            .expect("infallible");
        Status::from_header_map(response.headers()).expect("a status in the head")
    }

    #[tokio::test]
    async fn a_decode_failure_is_the_callers() {
        let tonic_says =
            Status::internal("failed to decode Protobuf message: invalid wire type value: 7");
        let got = status_of(tonic_says).await;
        assert_eq!(got.code(), Code::InvalidArgument);
        assert!(
            got.message()
                .contains("not valid protobuf for this method: invalid wire type value: 7"),
            "{}",
            got.message()
        );
    }

    #[tokio::test]
    async fn other_statuses_pass_unchanged() {
        for status in [
            Status::internal("the engine failed"),
            Status::not_found("failed to decode Protobuf message, said no one"),
            Status::unavailable("shard 0 has no leader"),
        ] {
            let got = status_of(status.clone()).await;
            assert_eq!(
                (got.code(), got.message()),
                (status.code(), status.message())
            );
        }
    }
}
