//! The Ledger API as HTTP/JSON, for callers without a gRPC client.
//!
//! Not a second implementation: every route builds the same request the
//! gRPC side receives and calls the same `Gateway` handler, after the same
//! API-key check, with the same default deadline. Bodies and answers use
//! the proto3 JSON mapping (lowerCamelCase names — snake_case is accepted
//! too — int64 as strings, timestamps in RFC 3339). Errors follow the
//! standard gRPC → HTTP mapping, with a body `{"code": "...", "message": "..."}`.
//!
//! | route | RPC |
//! |---|---|
//! | `POST /v1/accounts` | CreateAccount |
//! | `GET /v1/accounts?page_size=&page_token=` | ListAccounts |
//! | `GET /v1/accounts/{account_id}` | GetAccount |
//! | `POST /v1/accounts/{account_id}:deposit` / `:withdraw` / `:close` | Deposit / Withdraw / CloseAccount |
//! | `GET /v1/accounts/{account_id}/entries?page_size=&page_token=` | ListEntries |
//! | `POST /v1/transfers` | Transfer |
//! | `GET /v1/transfers/{transfer_id}` | GetTransfer |
//!
//! The cross-cutting parts are layers (see `router`): a request id, so a
//! call can be followed through the logs; tracing; one JSON error shape for
//! every refusal; CORS, so a browser page may call the API; gzip; a body
//! size limit and a body read timeout; a timeout backstop above the
//! deadline each call carries (capped, as on the gRPC port); and the API
//! key check before any body is read.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gateway_api::v1 as api;
use gateway_api::v1::ledger_server::Ledger;
use serde::{Deserialize, Serialize};
use tonic::Status;
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::cors::CorsLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
use tower_http::trace::TraceLayer;

use anatomy_runtime::grpc_timeout::parse_grpc_timeout;
use tonic::metadata::MetadataMap;

use crate::auth::{ApiKeys, Tenant};
use crate::http_errors::{error, json_errors};
use crate::ledger::Gateway;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every route needs.
#[derive(Debug, Clone)]
pub struct HttpState {
    pub gateway: Gateway,
    pub keys: ApiKeys,
    /// The longest deadline a request may ask for (`grpc-timeout` header);
    /// longer ones are cut to it, as on the gRPC port.
    pub max_deadline: Duration,
}

/// Who is calling, and how long they wait: the tenant the `authenticate`
/// layer found (before any body was read) and the request's `grpc-timeout`
/// header, if any.
#[derive(Debug, Clone)]
struct Caller {
    tenant: Tenant,
    timeout: Option<Duration>,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        let tenant = parts
            .extensions
            .get::<Tenant>()
            .cloned()
            .ok_or_else(|| error(&Status::unauthenticated("request was not authenticated")))?;
        let timeout = match parts.headers.get("grpc-timeout") {
            None => None,
            Some(value) => Some(
                value
                    .to_str()
                    .ok()
                    .and_then(parse_grpc_timeout)
                    .ok_or_else(|| {
                        error(&Status::invalid_argument(
                            "the grpc-timeout header must be a number of up to 8 digits \
                             and a unit (H, M, S, m, u, n), e.g. 500m",
                        ))
                    })?,
            ),
        };
        Ok(Self { tenant, timeout })
    }
}

/// Authenticates every API request from its `authorization` header before
/// anything else is done with it — its body is not even read — and hands
/// the tenant on to the route.
async fn authenticate(State(keys): State<ApiKeys>, mut request: Request, next: Next) -> Response {
    let mut metadata = MetadataMap::new();
    if let Some(value) = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
    {
        metadata.insert("authorization", value);
    }
    match keys.authenticate(&metadata) {
        Ok(tenant) => {
            request.extensions_mut().insert(tenant);
            next.run(request).await
        }
        Err(status) => error(&status),
    }
}

/// Runs one Ledger call for an HTTP request, within the caller's deadline
/// cut to `max_deadline` (the gateway's default when they sent none).
async fn call<Q, R, F, Fut>(state: &HttpState, caller: Caller, message: Q, method: F) -> Response
where
    F: FnOnce(Gateway, tonic::Request<Q>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<R>, Status>>,
    R: Serialize,
{
    let mut request = tonic::Request::new(message);
    if let Some(timeout) = caller.timeout {
        request.set_timeout(timeout.min(state.max_deadline));
    }
    request.extensions_mut().insert(caller.tenant);
    match method(state.gateway.clone(), request).await {
        Ok(response) => axum::Json(response.into_inner()).into_response(),
        Err(status) => error(&status),
    }
}

/// Parses a JSON body, or explains what is wrong with it.
fn body<T: for<'de> Deserialize<'de> + Default>(bytes: &Bytes) -> Result<T, Status> {
    if bytes.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| {
        Status::invalid_argument(format!(
            "the request body is not valid JSON for this call: {e}"
        ))
    })
}

/// `?page_size=&page_token=` (also in lowerCamelCase).
#[derive(Debug, Default, Deserialize)]
struct Page {
    #[serde(alias = "pageSize")]
    page_size: Option<i32>,
    #[serde(alias = "pageToken")]
    page_token: Option<String>,
}

type Shared = State<Arc<HttpState>>;

async fn create_account(State(s): Shared, caller: Caller, bytes: Bytes) -> Response {
    let message: api::CreateAccountRequest = match body(&bytes) {
        Ok(m) => m,
        Err(s) => return error(&s),
    };
    call(&s, caller, message, |g, r| async move {
        g.create_account(r).await
    })
    .await
}

async fn list_accounts(State(s): Shared, caller: Caller, Query(page): Query<Page>) -> Response {
    let message = api::ListAccountsRequest {
        page_size: page.page_size.unwrap_or(0),
        page_token: page.page_token.unwrap_or_default(),
    };
    call(&s, caller, message, |g, r| async move {
        g.list_accounts(r).await
    })
    .await
}

async fn get_account(State(s): Shared, caller: Caller, Path(account_id): Path<String>) -> Response {
    let message = api::GetAccountRequest { account_id };
    call(
        &s,
        caller,
        message,
        |g, r| async move { g.get_account(r).await },
    )
    .await
}

/// `POST /v1/accounts/{account_id}:{deposit|withdraw|close}`.
async fn account_action(
    State(s): Shared,
    caller: Caller,
    Path(target): Path<String>,
    bytes: Bytes,
) -> Response {
    let Some((account_id, action)) = target.rsplit_once(':') else {
        return error(&Status::not_found(format!(
            "no route POST /v1/accounts/{target}: use /v1/accounts/{{id}}:deposit, :withdraw or :close"
        )));
    };
    let account_id = account_id.to_string();
    match action {
        "deposit" => {
            let m: api::DepositRequest = match body(&bytes) {
                Ok(m) => m,
                Err(s) => return error(&s),
            };
            let m = api::DepositRequest { account_id, ..m };
            call(&s, caller, m, |g, r| async move { g.deposit(r).await }).await
        }
        "withdraw" => {
            let m: api::WithdrawRequest = match body(&bytes) {
                Ok(m) => m,
                Err(s) => return error(&s),
            };
            let m = api::WithdrawRequest { account_id, ..m };
            call(&s, caller, m, |g, r| async move { g.withdraw(r).await }).await
        }
        "close" => {
            let m: api::CloseAccountRequest = match body(&bytes) {
                Ok(m) => m,
                Err(s) => return error(&s),
            };
            let m = api::CloseAccountRequest { account_id, ..m };
            call(
                &s,
                caller,
                m,
                |g, r| async move { g.close_account(r).await },
            )
            .await
        }
        other => error(&Status::not_found(format!(
            "unknown action :{other}; use :deposit, :withdraw or :close"
        ))),
    }
}

async fn list_entries(
    State(s): Shared,
    caller: Caller,
    Path(account_id): Path<String>,
    Query(page): Query<Page>,
) -> Response {
    let message = api::ListEntriesRequest {
        account_id,
        page_size: page.page_size.unwrap_or(0),
        page_token: page.page_token.unwrap_or_default(),
    };
    call(&s, caller, message, |g, r| async move {
        g.list_entries(r).await
    })
    .await
}

async fn transfer(State(s): Shared, caller: Caller, bytes: Bytes) -> Response {
    let message: api::TransferRequest = match body(&bytes) {
        Ok(m) => m,
        Err(s) => return error(&s),
    };
    call(
        &s,
        caller,
        message,
        |g, r| async move { g.transfer(r).await },
    )
    .await
}

async fn get_transfer(
    State(s): Shared,
    caller: Caller,
    Path(transfer_id): Path<String>,
) -> Response {
    let message = api::GetTransferRequest { transfer_id };
    call(&s, caller, message, |g, r| async move {
        g.get_transfer(r).await
    })
    .await
}

async fn not_found() -> Response {
    error(&Status::not_found(
        "no such route; the API lives under /v1/accounts and /v1/transfers",
    ))
}

/// The HTTP router, with its middleware.
///
/// Outermost first: a request id (set if missing, echoed back); tracing;
/// CORS; gzip; every error answer in the API's JSON shape (axum's own
/// rejections — a bad query string, a wrong method, a body over the limit,
/// the backstop's timeout — are plain text otherwise; inside gzip, so it
/// reads them uncompressed); the body size limit and `body_timeout` for
/// reading it; and a timeout backstop a second above the longest deadline
/// a call may have. Inside the routes (`route_layer`, so a path that
/// matches no route is a 404 whoever asks), authentication, before any
/// extractor reads the body.
pub fn router(state: HttpState, body_timeout: Duration) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let backstop = state.max_deadline + Duration::from_secs(1);
    let keys = state.keys.clone();
    let outer = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
        .layer(PropagateRequestIdLayer::new(request_id))
        .layer(TraceLayer::new_for_http())
        .layer(CorsLayer::permissive())
        .layer(CompressionLayer::new());
    let inner = ServiceBuilder::new()
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(RequestBodyTimeoutLayer::new(body_timeout))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            backstop,
        ));
    Router::new()
        .route("/v1/accounts", post(create_account).get(list_accounts))
        .route(
            "/v1/accounts/{account_id}",
            get(get_account).post(account_action),
        )
        .route("/v1/accounts/{account_id}/entries", get(list_entries))
        .route("/v1/transfers", post(transfer))
        .route("/v1/transfers/{transfer_id}", get(get_transfer))
        .route_layer(middleware::from_fn_with_state(keys, authenticate))
        .fallback(not_found)
        .with_state(Arc::new(state))
        .layer(inner)
        .layer(middleware::map_response(json_errors))
        .layer(outer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::DEV_KEYS;
    use crate::balance;
    use crate::ledger::CallPolicy;
    use crate::rate_limit::TenantLimits;
    use anatomy_runtime::retry::{Backoff, RetryPolicy};
    use axum::body::Body;
    use tower::ServiceExt as _;

    /// The router over a gateway whose business address nothing listens
    /// on: these requests are refused before any call would be made.
    fn app() -> Router {
        let (pool, state) = balance::unreachable_pool();
        let policy = CallPolicy {
            default_timeout: Duration::from_secs(1),
            retry: RetryPolicy {
                backoff: Backoff {
                    base: Duration::from_millis(1),
                    max: Duration::from_millis(1),
                },
                max_retries: Some(0),
                budget: None,
            },
            none_ready_wait: Duration::ZERO,
            none_ready_patience: Duration::ZERO,
            tenant_limits: TenantLimits::new(0, 0),
        };
        let gateway = Gateway::new(
            business_api::v1::ledger_client::LedgerClient::new(pool),
            state,
            policy,
        );
        let state = HttpState {
            gateway,
            keys: ApiKeys::parse(DEV_KEYS).expect("dev keys"),
            max_deadline: Duration::from_secs(30),
        };
        router(state, Duration::from_secs(10))
    }

    /// Sends one request; the answer's status, code and request id.
    async fn send(request: axum::http::Request<Body>) -> (StatusCode, String, bool) {
        let response = app().oneshot(request).await.expect("infallible");
        let status = response.status();
        let has_id = response.headers().contains_key("x-request-id");
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        let json: serde_json::Value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&body)));
        let code = json["code"].as_str().expect("a code").to_string();
        assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
        (status, code, has_id)
    }

    fn request(
        method: &str,
        uri: &str,
        key: Option<&str>,
        body: &str,
    ) -> axum::http::Request<Body> {
        let mut builder = axum::http::Request::builder().method(method).uri(uri);
        if let Some(key) = key {
            builder = builder.header("authorization", format!("Bearer {key}"));
        }
        builder.body(Body::from(body.to_string())).expect("request")
    }

    #[tokio::test]
    async fn the_key_is_checked_before_the_body_is_read() {
        let (status, code, has_id) = send(request("POST", "/v1/accounts", None, "{not json")).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED")
        );
        assert!(has_id, "the request id survives");
        let (status, code, _) = send(request(
            "POST",
            "/v1/accounts",
            Some("dev-key-acme"),
            "{not json",
        ))
        .await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT")
        );
    }

    #[tokio::test]
    async fn every_refusal_has_the_json_error_shape() {
        let key = Some("dev-key-acme");
        let cases = [
            (
                request("GET", "/v1/accounts?page_size=many", key, ""),
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
            ),
            (
                request("DELETE", "/v1/accounts", key, ""),
                StatusCode::METHOD_NOT_ALLOWED,
                "UNIMPLEMENTED",
            ),
            (
                request("GET", "/nowhere", None, ""),
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
            ),
            (
                request(
                    "POST",
                    "/v1/transfers",
                    key,
                    &"x".repeat(MAX_BODY_BYTES + 1),
                ),
                StatusCode::PAYLOAD_TOO_LARGE,
                "OUT_OF_RANGE",
            ),
        ];
        for (request, want_status, want_code) in cases {
            let what = format!("{} {}", request.method(), request.uri());
            let (status, code, _) = send(request).await;
            assert_eq!((status, code.as_str()), (want_status, want_code), "{what}");
        }
    }

    #[tokio::test]
    async fn a_malformed_grpc_timeout_header_is_refused() {
        let mut r = request("GET", "/v1/accounts/a", Some("dev-key-acme"), "");
        r.headers_mut().insert(
            "grpc-timeout",
            axum::http::HeaderValue::from_static("forever"),
        );
        let (status, code, _) = send(r).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT")
        );
    }
}
