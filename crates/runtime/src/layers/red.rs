//! RED metrics for a gRPC server: Rate, Errors (by status code) and
//! Duration of every call, plus the calls in flight.
//!
//! Where it sits: outermost on the server, around everything else
//! (tracing, load shedding, the services), so a call rejected by an inner
//! layer is still counted, with the code the caller saw, and the latency
//! is what the caller waited for (minus the network).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use metrics::{counter, gauge, histogram};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tonic::Code;
use tower::{Layer, Service};

use crate::grpc::{GrpcPath, code_name, code_of};

/// Adds `Red` around a server.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedLayer;

impl<S> Layer<S> for RedLayer {
    type Service = Red<S>;

    fn layer(&self, inner: S) -> Red<S> {
        Red { inner }
    }
}

/// Records every call's start, end, code and duration.
#[derive(Debug, Clone)]
pub struct Red<S> {
    inner: S,
}

impl<S, B, RB> Service<http::Request<B>> for Red<S>
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
        let call = CallRecord::start(&GrpcPath::of(&mut request));
        ResponseFuture {
            inner: self.inner.call(request),
            call: Some(call),
        }
    }
}

pin_project! {
    /// The inner response future, recording how the call ended.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        call: Option<CallRecord>,
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
        if let Some(call) = this.call.take() {
            call.finish(code);
        }
        Poll::Ready(result)
    }
}

/// One call being counted. Dropped unfinished (the caller went away),
/// it counts as `Canceled`.
#[derive(Debug)]
struct CallRecord {
    /// (service, method): only methods served here, else `unknown`.
    labels: (String, String),
    started: Instant,
    finished: bool,
}

impl CallRecord {
    fn start(path: &GrpcPath) -> Self {
        let labels = path.labels();
        counter!("grpc_server_started_total",
            "grpc_service" => labels.0.clone(), "grpc_method" => labels.1.clone())
        .increment(1);
        gauge!("grpc_server_in_flight", "grpc_service" => labels.0.clone()).increment(1.0);
        Self {
            labels,
            started: Instant::now(),
            finished: false,
        }
    }

    fn finish(mut self, code: Code) {
        self.record(code);
    }

    fn record(&mut self, code: Code) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let (service, method) = self.labels.clone();
        gauge!("grpc_server_in_flight", "grpc_service" => service.clone()).decrement(1.0);
        histogram!("grpc_server_handling_seconds",
            "grpc_service" => service.clone(), "grpc_method" => method.clone())
        .record(self.started.elapsed().as_secs_f64());
        counter!("grpc_server_handled_total",
            "grpc_service" => service, "grpc_method" => method, "grpc_code" => code_name(code))
        .increment(1);
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        self.record(Code::Cancelled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use tower::ServiceExt as _;

    fn handled(snapshot: &[(String, String, DebugValue)], code: &str) -> u64 {
        snapshot
            .iter()
            .filter(|(name, labels, _)| {
                name == "grpc_server_handled_total" && labels.contains(&format!("grpc_code={code}"))
            })
            .map(|(_, _, v)| match v {
                DebugValue::Counter(n) => *n,
                _ => 0,
            })
            .sum()
    }

    fn snapshot(recorder: &DebuggingRecorder) -> Vec<(String, String, DebugValue)> {
        recorder
            .snapshotter()
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let key = key.key();
                let labels: Vec<String> = key
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                (key.name().to_owned(), labels.join(","), value)
            })
            .collect()
    }

    #[tokio::test]
    async fn counts_calls_by_code_including_cancelled_ones() {
        let recorder = DebuggingRecorder::new();
        let _guard = metrics::set_default_local_recorder(&recorder);
        let ok = tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(()))
        });
        let failing = tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .header("grpc-status", "5")
                    .body(())
                    .unwrap(),
            )
        });
        let request = || {
            http::Request::builder()
                .uri("/anatomy.gateway.v1.Ledger/Deposit")
                .body(())
                .unwrap()
        };
        RedLayer.layer(ok).oneshot(request()).await.unwrap();
        RedLayer.layer(failing).oneshot(request()).await.unwrap();
        let never = tower::service_fn(|_: http::Request<()>| {
            std::future::pending::<Result<http::Response<()>, std::convert::Infallible>>()
        });
        drop(RedLayer.layer(never).call(request()));
        let values = snapshot(&recorder);
        assert_eq!(handled(&values, "OK"), 1);
        assert_eq!(handled(&values, "NotFound"), 1);
        assert_eq!(handled(&values, "Canceled"), 1);
    }
}
