//! What the HTTP/JSON API shares with the gRPC side's protection
//! (`anatomy_runtime::layers::{shed, red}`): at most `--max-concurrent-calls`
//! requests at once, one more answered at once with 429 and the API's JSON
//! error body (never queued); and RED metrics per route, where a path that
//! matches no route counts as `unknown`, so random paths cannot grow
//! `/metrics`.
//!
//! Where it sits: outside the routes and their timeout (a refused request
//! does no work), inside the request id and tracing (it is still logged).

use std::time::Duration;

use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Sheds beyond `max_in_flight` requests at once (0: no bound), and counts
/// every request by route.
pub fn protect(router: Router, max_in_flight: usize) -> Router {
    let router = router.layer(middleware::from_fn(red));
    if max_in_flight == 0 {
        return router;
    }
    let slots = Arc::new(Semaphore::new(max_in_flight));
    router.layer(middleware::from_fn_with_state(slots, shed))
}

/// Takes a slot for the request's whole life, or answers 429 at once.
async fn shed(State(slots): State<Arc<Semaphore>>, request: Request, next: Next) -> Response {
    let Ok(_slot) = slots.try_acquire_owned() else {
        return overloaded();
    };
    next.run(request).await
}

/// RESOURCE_EXHAUSTED in the API's error shape (HTTP 429).
fn overloaded() -> Response {
    crate::http_errors::error(&tonic::Status::resource_exhausted(
        "the gateway is at its limit of requests in flight; retry with backoff",
    ))
}

/// Rate, errors and duration per route (the route's pattern, not the path).
async fn red(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unknown".to_string(), |m| m.as_str().to_string());
    let method = request.method().as_str().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let took: Duration = started.elapsed();
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_server_requests_total",
        "route" => route.clone(), "method" => method.clone(), "status" => status)
    .increment(1);
    metrics::histogram!("http_server_request_seconds", "route" => route, "method" => method)
        .record(took.as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use tower::ServiceExt as _;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_over_the_limit_is_refused_at_once_with_the_json_body() {
        let (entered, mut wait_entered) = tokio::sync::mpsc::channel::<()>(1);
        let app = protect(
            Router::new().route(
                "/slow",
                get(move || {
                    let entered = entered.clone();
                    async move {
                        let _ = entered.send(()).await;
                        std::future::pending::<()>().await;
                    }
                }),
            ),
            1,
        );
        let first = tokio::spawn(
            app.clone()
                .oneshot(Request::get("/slow").body(Body::empty()).unwrap()),
        );
        wait_entered.recv().await.expect("the first request is in");
        let started = Instant::now();
        let refused = app
            .oneshot(Request::get("/slow").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "answered at once, not queued"
        );
        let body = axum::body::to_bytes(refused.into_body(), 1 << 16)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&body).contains("RESOURCE_EXHAUSTED"));
        first.abort();
    }
}
