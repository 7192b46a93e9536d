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
//! The cross-cutting parts are tower-http layers, outermost first: a
//! request id (set if missing, echoed back) so a call can be followed
//! through the logs; tracing of each request; CORS, so a browser page may
//! call the API; gzip; a body size limit; and a timeout backstop above the
//! deadline each call already carries.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anatomy_proto::gateway::v1 as api;
use anatomy_proto::gateway::v1::ledger_server::Ledger;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tonic::{Code, Status};
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::cors::CorsLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::auth::ApiKeys;
use crate::ledger::Gateway;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every route needs.
#[derive(Debug, Clone)]
pub struct HttpState {
    pub gateway: Gateway,
    pub keys: ApiKeys,
}

/// The HTTP gRPC status mapping (google.rpc.Code → HTTP).
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The name proto3 JSON uses for a code, e.g. `NOT_FOUND`.
fn code_name(code: Code) -> String {
    let camel = format!("{code:?}");
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[derive(Serialize)]
struct ErrorBody {
    code: String,
    message: String,
}

fn error(status: &Status) -> Response {
    let body = ErrorBody {
        code: code_name(status.code()),
        message: status.message().to_string(),
    };
    (http_status(status.code()), axum::Json(body)).into_response()
}

/// Metadata a gRPC caller would send, taken from the HTTP headers.
const FORWARDED: [&str; 2] = ["authorization", "grpc-timeout"];

/// Runs one Ledger call for an HTTP request.
async fn call<Q, R, F, Fut>(
    state: &HttpState,
    headers: &HeaderMap,
    message: Q,
    method: F,
) -> Response
where
    F: FnOnce(Gateway, tonic::Request<Q>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<R>, Status>>,
    R: Serialize,
{
    let mut request = tonic::Request::new(message);
    for name in FORWARDED {
        if let Some(value) = headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
        {
            request.metadata_mut().insert(name, value);
        }
    }
    match state.keys.authenticate(request.metadata()) {
        Ok(tenant) => {
            request.extensions_mut().insert(tenant);
        }
        Err(status) => return error(&status),
    }
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

async fn create_account(State(s): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    let message: api::CreateAccountRequest = match body(&bytes) {
        Ok(m) => m,
        Err(s) => return error(&s),
    };
    call(&s, &headers, message, |g, r| async move {
        g.create_account(r).await
    })
    .await
}

async fn list_accounts(State(s): Shared, headers: HeaderMap, Query(page): Query<Page>) -> Response {
    let message = api::ListAccountsRequest {
        page_size: page.page_size.unwrap_or(0),
        page_token: page.page_token.unwrap_or_default(),
    };
    call(&s, &headers, message, |g, r| async move {
        g.list_accounts(r).await
    })
    .await
}

async fn get_account(
    State(s): Shared,
    headers: HeaderMap,
    Path(account_id): Path<String>,
) -> Response {
    let message = api::GetAccountRequest { account_id };
    call(&s, &headers, message, |g, r| async move {
        g.get_account(r).await
    })
    .await
}

/// `POST /v1/accounts/{account_id}:{deposit|withdraw|close}`.
async fn account_action(
    State(s): Shared,
    headers: HeaderMap,
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
            call(&s, &headers, m, |g, r| async move { g.deposit(r).await }).await
        }
        "withdraw" => {
            let m: api::WithdrawRequest = match body(&bytes) {
                Ok(m) => m,
                Err(s) => return error(&s),
            };
            let m = api::WithdrawRequest { account_id, ..m };
            call(&s, &headers, m, |g, r| async move { g.withdraw(r).await }).await
        }
        "close" => {
            let m: api::CloseAccountRequest = match body(&bytes) {
                Ok(m) => m,
                Err(s) => return error(&s),
            };
            let m = api::CloseAccountRequest { account_id, ..m };
            call(
                &s,
                &headers,
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
    headers: HeaderMap,
    Path(account_id): Path<String>,
    Query(page): Query<Page>,
) -> Response {
    let message = api::ListEntriesRequest {
        account_id,
        page_size: page.page_size.unwrap_or(0),
        page_token: page.page_token.unwrap_or_default(),
    };
    call(&s, &headers, message, |g, r| async move {
        g.list_entries(r).await
    })
    .await
}

async fn transfer(State(s): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    let message: api::TransferRequest = match body(&bytes) {
        Ok(m) => m,
        Err(s) => return error(&s),
    };
    call(
        &s,
        &headers,
        message,
        |g, r| async move { g.transfer(r).await },
    )
    .await
}

async fn get_transfer(
    State(s): Shared,
    headers: HeaderMap,
    Path(transfer_id): Path<String>,
) -> Response {
    let message = api::GetTransferRequest { transfer_id };
    call(&s, &headers, message, |g, r| async move {
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
pub fn router(state: HttpState, timeout: Duration) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let layers = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
        .layer(PropagateRequestIdLayer::new(request_id))
        .layer(TraceLayer::new_for_http())
        .layer(CorsLayer::permissive())
        .layer(CompressionLayer::new())
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            timeout,
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
        .fallback(not_found)
        .with_state(Arc::new(state))
        .layer(layers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_http_and_names() {
        assert_eq!(http_status(Code::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(
            http_status(Code::FailedPrecondition),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(http_status(Code::AlreadyExists), StatusCode::CONFLICT);
        assert_eq!(
            http_status(Code::ResourceExhausted),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            http_status(Code::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            http_status(Code::DeadlineExceeded),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(code_name(Code::FailedPrecondition), "FAILED_PRECONDITION");
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
    }
}
