//! Client side of distributed tracing: writes the current span's context
//! into every outgoing call as a W3C `traceparent` header.
//!
//! Where it sits: outermost on every gRPC client (gateway → business,
//! business → storage, storage → storage), so it runs when the caller
//! calls, inside the caller's span. Below a `Buffer` or a balancer the
//! call may run on another task, in another span.

use std::task::{Context, Poll};

use opentelemetry::propagation::Injector;
use tower::{Layer, Service};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Adds `Propagate` around a client.
#[derive(Debug, Clone, Copy, Default)]
pub struct PropagateLayer;

impl<S> Layer<S> for PropagateLayer {
    type Service = Propagate<S>;

    fn layer(&self, inner: S) -> Propagate<S> {
        Propagate { inner }
    }
}

/// Injects the current trace context into each request's headers.
#[derive(Debug, Clone)]
pub struct Propagate<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for Propagate<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        inject_current_context(request.headers_mut());
        self.inner.call(request)
    }
}

/// Writes the current span's context into `headers`.
pub fn inject_current_context(headers: &mut http::HeaderMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

/// Writes propagation headers.
pub struct HeaderInjector<'a>(pub &'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}
