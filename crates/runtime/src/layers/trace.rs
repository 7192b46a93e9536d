//! A server span per gRPC call, continuing the caller's trace.
//!
//! Where it sits: on the server, inside the RED layer and outside
//! everything else, so every log line written while serving the call (by
//! any layer or the service itself) carries the call's `trace_id`, and
//! the span covers the whole time the server spent on it.
//!
//! The parent comes from the W3C `traceparent` header the client layer
//! (`propagate`) wrote. Attributes follow OpenTelemetry's RPC semantic
//! conventions: `rpc.system`, `rpc.service`, `rpc.method`,
//! `rpc.grpc.status_code`; the services add `tenant` (gateway, business),
//! `shard` and `raft.term` (storage) to the span they run in.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TraceContextExt as _;
use pin_project_lite::pin_project;
use tonic::Code;
use tower::{Layer, Service};
use tracing::Span;
use tracing::instrument::Instrumented;
use tracing::{Instrument as _, field};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::grpc::{GrpcPath, code_of, is_server_fault};

/// Adds `Trace` around a server.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceLayer;

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Trace<S> {
        Trace { inner }
    }
}

/// Runs every call inside a `grpc.server` span.
#[derive(Debug, Clone)]
pub struct Trace<S> {
    inner: S,
}

impl<S, B, RB> Service<http::Request<B>> for Trace<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let span = server_span(&mut request);
        let inner = span.in_scope(|| self.inner.call(request));
        ResponseFuture {
            inner: inner.instrument(span.clone()),
            span,
        }
    }
}

/// The span for one call, parented on the caller's context, with
/// `trace_id` recorded so that log lines carry it.
fn server_span<B>(request: &mut http::Request<B>) -> Span {
    let path = GrpcPath::of(request);
    // Health probes and reflection would drown the real calls.
    if path.is_infrastructure() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "grpc.server",
        otel.name = format!("{}/{}", path.service, path.method),
        otel.kind = "server",
        otel.status_code = field::Empty,
        rpc.system = "grpc",
        rpc.service = %path.service,
        rpc.method = %path.method,
        rpc.grpc.status_code = field::Empty,
        trace_id = field::Empty,
        span_id = field::Empty,
        // Recorded by the services where they apply.
        tenant = field::Empty,
        shard = field::Empty,
        raft.term = field::Empty,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(request.headers()))
    });
    // Fails only when no OpenTelemetry layer is installed: then there is
    // no trace to continue either.
    let _ = span.set_parent(parent);
    let context = span.context();
    let ids = context.span().span_context().clone();
    if ids.is_valid() {
        span.record("trace_id", field::display(ids.trace_id()));
        span.record("span_id", field::display(ids.span_id()));
    }
    span
}

pin_project! {
    /// The inner future, run inside the span; records the status code.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Instrumented<F>,
        span: Span,
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let code = match &result {
            Ok(response) => code_of(response),
            Err(_) => Code::Unknown,
        };
        this.span.record("rpc.grpc.status_code", code as i64);
        if is_server_fault(code) {
            this.span.record("otel.status_code", "ERROR");
        }
        Poll::Ready(result)
    }
}

/// Reads propagation headers (`traceparent`, `tracestate`).
pub struct HeaderExtractor<'a>(pub &'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}
