//! A circuit breaker for one endpoint.
//!
//! Where it sits: around each endpoint *inside* a balancer, below the
//! load measurement. A dead endpoint fails fast, so to a least-loaded
//! balancer it looks like the best choice; the breaker takes it out of the
//! ready set instead. After `failure_threshold` consecutive failures the
//! breaker opens: `poll_ready` is Pending for `open_for`, so the balancer
//! routes around the endpoint. Then it half-opens: one probe call goes
//! through; success closes the breaker, failure opens it again.
//!
//! A failure is an error from the inner service (the call never got an
//! answer: connection refused, reset, timed out). Any answer, including a
//! gRPC error status, is a success: the endpoint is alive. A call that was
//! never sent counts as neither (see `NeverSent`): when a server ages a
//! connection (GOAWAY), the calls queued for it at that instant are
//! dropped unsent while the channel dials a new connection, and at high
//! load those are enough to open a breaker on a healthy endpoint — on
//! every endpoint at once, if their connections age together.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

/// When a breaker opens and for how long.
#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long it stays open before a probe.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 3,
            open_for: Duration::from_secs(2),
        }
    }
}

/// Where a breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow; `failures` in a row so far.
    Closed { failures: u32 },
    /// No calls until `until`.
    Open { until: Instant },
    /// One probe call is allowed (`probing` once it is on its way).
    HalfOpen { probing: bool },
}

/// A shared view of one breaker's state (for metrics and tests).
#[derive(Debug, Clone)]
pub struct BreakerHandle(Arc<Mutex<BreakerState>>);

impl BreakerHandle {
    /// The current state.
    pub fn state(&self) -> BreakerState {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Wraps services in a `Breaker`.
#[derive(Debug, Clone, Copy, Default)]
pub struct BreakerLayer {
    config: BreakerConfig,
}

impl BreakerLayer {
    /// A layer with `config`.
    pub fn new(config: BreakerConfig) -> Self {
        Self { config }
    }
}

impl<S> Layer<S> for BreakerLayer {
    type Service = Breaker<S>;

    fn layer(&self, inner: S) -> Breaker<S> {
        Breaker::new(inner, self.config)
    }
}

/// The breaker service.
#[derive(Debug)]
pub struct Breaker<S> {
    inner: S,
    config: BreakerConfig,
    state: Arc<Mutex<BreakerState>>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<S: Clone> Clone for Breaker<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: self.config,
            state: self.state.clone(),
            sleep: None,
        }
    }
}

impl<S> Breaker<S> {
    /// A closed breaker around `inner`.
    pub fn new(inner: S, config: BreakerConfig) -> Self {
        Self {
            inner,
            config,
            state: Arc::new(Mutex::new(BreakerState::Closed { failures: 0 })),
            sleep: None,
        }
    }

    /// A handle that reads this breaker's state.
    pub fn handle(&self) -> BreakerHandle {
        BreakerHandle(self.state.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until `until`, registering a wake-up.
    fn wait_until(&mut self, cx: &mut Context<'_>, until: Instant) -> Poll<()> {
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
        if sleep.deadline() != until {
            sleep.as_mut().reset(until);
        }
        ready!(sleep.as_mut().poll(cx));
        self.sleep = None;
        Poll::Ready(())
    }
}

/// How often a breaker whose probe is out checks again.
const PROBE_RECHECK: Duration = Duration::from_millis(50);

impl<S, R> Service<R> for Breaker<S>
where
    S: Service<R>,
    S::Error: NeverSent,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        loop {
            let state = *self.lock();
            match state {
                BreakerState::Closed { .. } | BreakerState::HalfOpen { probing: false } => break,
                BreakerState::Open { until } => {
                    ready!(self.wait_until(cx, until));
                    let mut s = self.lock();
                    if matches!(*s, BreakerState::Open { .. }) {
                        *s = BreakerState::HalfOpen { probing: false };
                    }
                }
                BreakerState::HalfOpen { probing: true } => {
                    ready!(self.wait_until(cx, Instant::now() + PROBE_RECHECK));
                }
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        {
            let mut s = self.lock();
            if let BreakerState::HalfOpen { probing } = &mut *s {
                *probing = true;
            }
        }
        ResponseFuture {
            inner: self.inner.call(request),
            state: self.state.clone(),
            config: self.config,
        }
    }
}

/// An endpoint's error that can tell whether the call was never sent.
pub trait NeverSent {
    /// The call never left this process (it was queued for a connection
    /// that closed before taking it), or the server refused it unprocessed,
    /// so it says nothing of the endpoint.
    fn never_sent(&self) -> bool;

    /// The error and its sources, for the log.
    fn describe(&self) -> String {
        String::new()
    }
}

fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        out.push_str(": ");
        out.push_str(&e.to_string());
        next = e.source();
    }
    out
}

impl NeverSent for tonic::transport::Error {
    fn never_sent(&self) -> bool {
        canceled_before_sent(self)
    }

    fn describe(&self) -> String {
        chain(self)
    }
}

impl NeverSent for tower::BoxError {
    fn never_sent(&self) -> bool {
        canceled_before_sent(self.as_ref())
    }

    fn describe(&self) -> String {
        chain(self.as_ref())
    }
}

/// A request the server certainly did not process, found anywhere in the
/// error's source chain: hyper's "operation was canceled" (dropped before
/// it was sent), or an HTTP/2 stream the server refused — REFUSED_STREAM,
/// or above the last stream id of a graceful GOAWAY (NO_ERROR), which is
/// how a connection being aged turns away the calls that raced its
/// GOAWAY (RFC 9113 §8.7: such requests were not processed).
fn canceled_before_sent(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_canceled)
            || e.downcast_ref::<h2::Error>()
                .is_some_and(refused_unprocessed)
        {
            return true;
        }
        next = e.source();
    }
    false
}

fn refused_unprocessed(e: &h2::Error) -> bool {
    match e.reason() {
        Some(h2::Reason::REFUSED_STREAM) => true,
        Some(h2::Reason::NO_ERROR) => e.is_go_away() && e.is_remote(),
        _ => false,
    }
}

pin_project! {
    /// Records the outcome of a call in its breaker.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        state: Arc<Mutex<BreakerState>>,
        config: BreakerConfig,
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: NeverSent,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let mut state = this
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if result.as_ref().err().is_some_and(NeverSent::never_sent) {
            // Nothing learned; a probe that was never sent lets the next
            // call probe instead.
            if let BreakerState::HalfOpen { probing } = &mut *state {
                *probing = false;
            }
            return Poll::Ready(result);
        }
        *state = match (result.is_ok(), *state) {
            (true, _) => BreakerState::Closed { failures: 0 },
            (false, BreakerState::Closed { failures })
                if failures + 1 < this.config.failure_threshold =>
            {
                BreakerState::Closed {
                    failures: failures + 1,
                }
            }
            (false, _) => {
                if let Err(e) = &result {
                    tracing::warn!(error = e.describe(), open_for = ?this.config.open_for,
                        "breaker opens: the endpoint failed {} call(s) in a row",
                        this.config.failure_threshold);
                }
                BreakerState::Open {
                    until: Instant::now() + this.config.open_for,
                }
            }
        };
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use tower_test::mock;

    use super::*;

    type Mock = mock::Mock<&'static str, &'static str>;
    type Handle = mock::Handle<&'static str, &'static str>;

    fn breaker() -> (Breaker<Mock>, Handle) {
        let (service, handle) = mock::pair();
        let config = BreakerConfig {
            failure_threshold: 2,
            open_for: Duration::from_secs(5),
        };
        (Breaker::new(service, config), handle)
    }

    async fn call(b: &mut Breaker<Mock>, h: &mut Handle, ok: bool) -> bool {
        poll_fn(|cx| b.poll_ready(cx)).await.expect("ready");
        let response = b.call("req");
        let (_, send) = h
            .next_request()
            .await
            .expect("request reached the inner service");
        if ok {
            send.send_response("ok");
        } else {
            send.send_error("connection refused");
        }
        response.await.is_ok()
    }

    fn is_ready(b: &mut Breaker<Mock>) -> bool {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        matches!(b.poll_ready(&mut cx), Poll::Ready(Ok(())))
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_and_probes_after_the_pause() {
        let (mut b, mut h) = breaker();
        h.allow(10);
        assert!(!call(&mut b, &mut h, false).await);
        assert_eq!(b.handle().state(), BreakerState::Closed { failures: 1 });
        assert!(!call(&mut b, &mut h, false).await);
        assert!(matches!(b.handle().state(), BreakerState::Open { .. }));
        assert!(!is_ready(&mut b), "an open breaker is not ready");

        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(!is_ready(&mut b), "still open before open_for has passed");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(is_ready(&mut b), "half-open after open_for");
        assert_eq!(
            b.handle().state(),
            BreakerState::HalfOpen { probing: false }
        );

        assert!(call(&mut b, &mut h, true).await, "the probe succeeds");
        assert_eq!(b.handle().state(), BreakerState::Closed { failures: 0 });
    }

    /// hyper's error for a request a closed connection never took.
    async fn canceled_before_sent() -> hyper::Error {
        let (client, _server) = tokio::io::duplex(64);
        let (mut send, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(client))
                .await
                .expect("handshake");
        drop(connection);
        send.send_request(http::Request::new(String::new()))
            .await
            .expect_err("the connection is gone")
    }

    #[tokio::test]
    async fn only_hypers_canceled_requests_were_never_sent() {
        let canceled: tower::BoxError = Box::new(canceled_before_sent().await);
        assert!(canceled.never_sent());
        let refused: tower::BoxError = "connection refused".into();
        assert!(!refused.never_sent());
    }

    #[test]
    fn a_stream_the_server_refused_was_never_processed() {
        let refused: tower::BoxError = Box::new(h2::Error::from(h2::Reason::REFUSED_STREAM));
        assert!(refused.never_sent());
        for reason in [
            h2::Reason::INTERNAL_ERROR,
            h2::Reason::CANCEL,
            h2::Reason::NO_ERROR,
        ] {
            // Reset by this side, or for a reason that does not say the
            // server left it alone: it may have been processed.
            let reset: tower::BoxError = Box::new(h2::Error::from(reason));
            assert!(!reset.never_sent(), "{reason:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn calls_never_sent_neither_count_nor_reset() {
        let (mut b, mut h) = breaker();
        h.allow(10);
        assert!(!call(&mut b, &mut h, false).await);
        for _ in 0..5 {
            poll_fn(|cx| b.poll_ready(cx)).await.expect("ready");
            let response = b.call("req");
            let (_, send) = h.next_request().await.expect("request");
            send.send_error(canceled_before_sent().await);
            assert!(response.await.is_err());
        }
        assert_eq!(
            b.handle().state(),
            BreakerState::Closed { failures: 1 },
            "unsent calls leave the count as it was"
        );
        assert!(is_ready(&mut b));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_opens_again_and_success_resets_the_count() {
        let (mut b, mut h) = breaker();
        h.allow(10);
        assert!(!call(&mut b, &mut h, false).await);
        assert!(call(&mut b, &mut h, true).await);
        assert_eq!(
            b.handle().state(),
            BreakerState::Closed { failures: 0 },
            "a success resets the count"
        );
        assert!(!call(&mut b, &mut h, false).await);
        assert!(!call(&mut b, &mut h, false).await);
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(is_ready(&mut b));
        assert!(!call(&mut b, &mut h, false).await, "the probe fails");
        assert!(matches!(b.handle().state(), BreakerState::Open { .. }));
        assert!(!is_ready(&mut b));
    }
}
