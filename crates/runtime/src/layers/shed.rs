//! Load shedding: a bound on the calls a server works on at once, and an
//! immediate RESOURCE_EXHAUSTED for every call beyond it.
//!
//! Where it sits: on every server, inside the RED and trace layers (so a
//! shed call is counted and traced) and outside the services. Without it,
//! excess calls queue — in sockets, HTTP/2 streams, the balancer, the Raft
//! proposer — until each waits longer than its deadline and the server
//! works only on calls nobody waits for any more: goodput collapses
//! (Figure 1.1). With it, the excess is refused in microseconds, the calls
//! admitted finish in time, and the caller can back off or go elsewhere.
//! Health and reflection calls are never shed: a probe must be answered.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use metrics::counter;
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tower::{Layer, Service};

use crate::grpc::GrpcPath;
use crate::layers::refusal::Refusal;

/// Sheds calls beyond `max_in_flight` (0: never sheds).
#[derive(Debug, Clone)]
pub struct ShedLayer {
    permits: Option<Arc<Semaphore>>,
    max_in_flight: usize,
}

impl ShedLayer {
    /// At most `max_in_flight` calls at once; 0 turns shedding off.
    pub fn new(max_in_flight: usize) -> Self {
        Self {
            permits: (max_in_flight > 0).then(|| Arc::new(Semaphore::new(max_in_flight))),
            max_in_flight,
        }
    }
}

impl<S> Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Shed<S> {
        Shed {
            inner,
            permits: self.permits.clone(),
            max_in_flight: self.max_in_flight,
        }
    }
}

/// The shedding service; clones share one bound.
#[derive(Debug, Clone)]
pub struct Shed<S> {
    inner: S,
    permits: Option<Arc<Semaphore>>,
    max_in_flight: usize,
}

impl<S, B, RB> Service<http::Request<B>> for Shed<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    RB: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, RB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let Some(permits) = &self.permits else {
            return ResponseFuture::admitted(self.inner.call(request), None);
        };
        let path = GrpcPath::of(&mut request);
        if path.is_infrastructure() {
            return ResponseFuture::admitted(self.inner.call(request), None);
        }
        match permits.clone().try_acquire_owned() {
            Ok(permit) => ResponseFuture::admitted(self.inner.call(request), Some(permit)),
            Err(_) => {
                counter!("grpc_server_shed_total", "grpc_service" => path.service.clone())
                    .increment(1);
                ResponseFuture::shed(Status::resource_exhausted(format!(
                    "overloaded: {} calls in flight, the most this server takes; \
                     retry with backoff (or another replica)",
                    self.max_in_flight
                )))
            }
        }
    }
}

pin_project! {
    /// The inner call holding its permit, or the refusal.
    #[project = Proj]
    pub enum ResponseFuture<F, RB> {
        Admitted { #[pin] inner: F, permit: Option<OwnedSemaphorePermit> },
        Shed { refusal: Refusal<RB> },
    }
}

impl<F, RB> ResponseFuture<F, RB> {
    fn admitted(inner: F, permit: Option<OwnedSemaphorePermit>) -> Self {
        Self::Admitted { inner, permit }
    }

    fn shed(status: Status) -> Self
    where
        RB: Default,
    {
        Self::Shed {
            refusal: Refusal::new(status),
        }
    }
}

impl<F, RB, E> Future for ResponseFuture<F, RB>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            // The permit is released when this future is dropped: the
            // response head is out, the work is done.
            Proj::Admitted { inner, .. } => inner.poll(cx),
            Proj::Shed { refusal } => refusal.poll_take(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::code_of;
    use tonic::Code;
    use tower::ServiceExt as _;

    fn request(path: &str) -> http::Request<()> {
        http::Request::builder().uri(path).body(()).unwrap()
    }

    #[tokio::test]
    async fn sheds_beyond_the_bound_and_admits_again_once_calls_finish() {
        let (service, mut handle) =
            tower_test::mock::pair::<http::Request<()>, http::Response<()>>();
        let mut shed = ShedLayer::new(1).layer(service);
        handle.allow(10);
        let first = shed.ready().await.unwrap().call(request("/a.B/C"));
        let second = shed.ready().await.unwrap().call(request("/a.B/C"));
        let refused = second.await.unwrap();
        assert_eq!(code_of(&refused), Code::ResourceExhausted);
        // Probes pass even at the bound.
        let probe = shed
            .ready()
            .await
            .unwrap()
            .call(request("/grpc.health.v1.Health/Check"));
        let (_, reply) = handle.next_request().await.unwrap();
        reply.send_response(http::Response::new(()));
        let (_, reply) = handle.next_request().await.unwrap();
        reply.send_response(http::Response::new(()));
        assert_eq!(code_of(&first.await.unwrap()), Code::Ok);
        assert_eq!(code_of(&probe.await.unwrap()), Code::Ok);
        // The first call finished: there is room again.
        let third = shed.ready().await.unwrap().call(request("/a.B/C"));
        let (_, reply) = handle.next_request().await.unwrap();
        reply.send_response(http::Response::new(()));
        assert_eq!(code_of(&third.await.unwrap()), Code::Ok);
    }

    #[tokio::test]
    async fn zero_means_no_bound() {
        let ok = tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(()))
        });
        let shed = ShedLayer::new(0).layer(ok);
        let response = shed.oneshot(request("/a.B/C")).await.unwrap();
        assert_eq!(code_of(&response), Code::Ok);
    }
}
