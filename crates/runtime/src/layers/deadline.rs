//! Deadlines on the server side: a call whose caller has already given up
//! is refused before any work starts, a call that came without a deadline
//! gets the server's default one, and a call that asked for more than the
//! server's longest (`grpc-timeout: 99999999H`) is cut to it — its header
//! rewritten, so the services pass the capped budget on to the next hop. No
//! caller can hold a slot of the shedding layer longer than that.
//!
//! Where it sits: on every server, inside the shedding layer (a refused
//! call should not hold a slot) and outside the services. A call *with* a
//! `grpc-timeout` is also cut off by tonic when that time runs out; the
//! services read the same header (`crate::grpc_timeout::budget`) to pass the
//! remaining budget on to the next hop.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Timeout;
use tonic::Status;
use tower::{Layer, Service};

use crate::grpc_timeout::parse_grpc_timeout;
use crate::layers::refusal::Refusal;

/// Below this much time left, no call is worth starting.
pub const MIN_BUDGET: Duration = Duration::from_millis(1);

/// Adds `Deadline` with a default for calls that carry none and a cap.
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    default: Duration,
    max: Duration,
}

impl DeadlineLayer {
    /// Calls without a `grpc-timeout` get `default`; none gets more than
    /// `max` (nor does the default).
    pub fn new(default: Duration, max: Duration) -> Self {
        Self {
            default: default.min(max),
            max,
        }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline {
            inner,
            default: self.default,
            max: self.max,
        }
    }
}

/// Enforces each call's deadline.
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    default: Duration,
    max: Duration,
}

/// `budget` as a `grpc-timeout` value (milliseconds; at most 8 digits).
fn header_value(budget: Duration) -> http::HeaderValue {
    let millis = budget.as_millis().clamp(1, 99_999_999);
    http::HeaderValue::from_str(&format!("{millis}m"))
        .unwrap_or_else(|_| http::HeaderValue::from_static("1m"))
}

impl<S, B, RB> Service<http::Request<B>> for Deadline<S>
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
        let sent = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        match sent {
            Some(budget) if budget < MIN_BUDGET => ResponseFuture::Expired {
                refusal: Refusal::new(Status::deadline_exceeded(format!(
                    "the caller's deadline had passed on arrival ({budget:?} left); not started"
                ))),
            },
            Some(budget) if budget > self.max => {
                request
                    .headers_mut()
                    .insert("grpc-timeout", header_value(self.max));
                ResponseFuture::OurDeadline {
                    inner: tokio::time::timeout(self.max, self.inner.call(request)),
                    budget: self.max,
                    why: Why::Capped,
                }
            }
            // tonic enforces a deadline the caller sent.
            Some(_) => ResponseFuture::CallersDeadline {
                inner: self.inner.call(request),
            },
            None => ResponseFuture::OurDeadline {
                inner: tokio::time::timeout(self.default, self.inner.call(request)),
                budget: self.default,
                why: Why::Default,
            },
        }
    }
}

/// Why the server chose a call's deadline.
#[derive(Debug, Clone, Copy)]
pub enum Why {
    /// The call brought none.
    Default,
    /// It asked for more than the server's longest.
    Capped,
}

pin_project! {
    /// The call under its deadline, or the refusal.
    #[project = Proj]
    pub enum ResponseFuture<F, RB> {
        CallersDeadline { #[pin] inner: F },
        OurDeadline { #[pin] inner: Timeout<F>, budget: Duration, why: Why },
        Expired { refusal: Refusal<RB> },
    }
}

impl<F, RB, E> Future for ResponseFuture<F, RB>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
    RB: Default,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Proj::CallersDeadline { inner } => inner.poll(cx),
            Proj::OurDeadline { inner, budget, why } => match ready!(inner.poll(cx)) {
                Ok(result) => Poll::Ready(result),
                Err(_) => Poll::Ready(Ok(Status::deadline_exceeded(match why {
                    Why::Default => format!(
                        "no answer within the server's default deadline of {budget:?} \
                         (send grpc-timeout to choose your own)"
                    ),
                    Why::Capped => format!(
                        "no answer within {budget:?}, the longest deadline this server allows \
                         (--max-deadline); the call asked for more"
                    ),
                })
                .into_http())),
            },
            Proj::Expired { refusal } => refusal.poll_take(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::code_of;
    use tonic::Code;
    use tower::ServiceExt as _;

    fn request(timeout: Option<&str>) -> http::Request<()> {
        let mut builder = http::Request::builder().uri("/a.B/C");
        if let Some(t) = timeout {
            builder = builder.header("grpc-timeout", t);
        }
        builder.body(()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn refuses_calls_whose_deadline_passed_without_calling_the_service() {
        let (service, mut handle) =
            tower_test::mock::pair::<http::Request<()>, http::Response<()>>();
        handle.allow(1);
        let mut deadline =
            DeadlineLayer::new(Duration::from_secs(5), Duration::from_secs(30)).layer(service);
        let response = deadline
            .ready()
            .await
            .unwrap()
            .call(request(Some("0m")))
            .await
            .unwrap();
        assert_eq!(code_of(&response), Code::DeadlineExceeded);
        // The service (still alive) never saw the call.
        assert!(
            futures::FutureExt::now_or_never(handle.next_request()).is_none(),
            "the expired call reached the service"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn gives_calls_without_a_deadline_the_default() {
        let never = tower::service_fn(|_: http::Request<()>| {
            std::future::pending::<Result<http::Response<()>, std::convert::Infallible>>()
        });
        let started = tokio::time::Instant::now();
        let response = DeadlineLayer::new(Duration::from_secs(5), Duration::from_secs(30))
            .layer(never)
            .oneshot(request(None))
            .await
            .unwrap();
        assert_eq!(code_of(&response), Code::DeadlineExceeded);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn cuts_a_longer_deadline_to_the_cap_and_passes_the_cap_on() {
        let (service, mut handle) =
            tower_test::mock::pair::<http::Request<()>, http::Response<()>>();
        handle.allow(1);
        let started = tokio::time::Instant::now();
        let call = DeadlineLayer::new(Duration::from_secs(5), Duration::from_secs(30))
            .layer(service)
            .oneshot(request(Some("99999999H")));
        let call = tokio::spawn(call);
        let (seen, _respond) = handle.next_request().await.expect("the call arrives");
        assert_eq!(
            seen.headers()["grpc-timeout"],
            "30000m",
            "the next hop sees the cap"
        );
        let response = call.await.expect("joined").expect("answered");
        assert_eq!(code_of(&response), Code::DeadlineExceeded);
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        let message = response.headers()["grpc-message"]
            .to_str()
            .unwrap_or_default()
            .to_string();
        assert!(message.contains("max-deadline"), "{message}");
    }

    #[test]
    fn the_default_is_never_above_the_cap() {
        let layer = DeadlineLayer::new(Duration::from_secs(60), Duration::from_secs(30));
        assert_eq!(layer.default, Duration::from_secs(30));
    }
}
