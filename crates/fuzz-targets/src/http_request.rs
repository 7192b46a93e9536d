//! The HTTP/JSON API, through the gateway's real router (the one
//! `gateway::serve` mounts), in front of a real business service.
//!
//! The input is a raw HTTP/1.1 request: request line, headers, blank line,
//! body (which makes the corpus readable: `cat fuzz/corpus/http_request/*`).
//! What hyper itself would refuse (an unparsable head, an invalid URI or
//! header) is skipped. For everything else:
//!
//! - no panic, and never a 5xx: bad input is the caller's to fix (4xx);
//!   the only 5xx allowed is 504 when the caller set its own deadline
//!   (`grpc-timeout`) and it ran out;
//! - every refusal is the JSON error shape: `{"code": ..., "message": ...}`
//!   with both non-empty.

use axum::body::Body;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

use crate::edge::{ACME_KEY, edge};

/// The largest response body read back (the router's own answers are small).
const MAX_RESPONSE_BYTES: usize = 4 << 20;

pub fn run(data: &[u8]) {
    let Some(request) = parse(data) else {
        return;
    };
    let own_deadline = request.headers().contains_key("grpc-timeout");
    let described = format!("{} {}", request.method(), request.uri());
    let edge = edge();
    let (status, body) = edge.runtime.block_on(async {
        let response = match edge.http.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status();
        let body = response.into_body().collect().await.map(|b| b.to_bytes());
        (status, body)
    });
    let body = match body {
        Ok(body) => body,
        Err(e) => panic!("{described}: the response body failed: {e}"),
    };
    assert!(
        !status.is_server_error() || (status == StatusCode::GATEWAY_TIMEOUT && own_deadline),
        "{described}: {status} for a request the caller sent: {}",
        String::from_utf8_lossy(&body)
    );
    if !status.is_success() && body.len() <= MAX_RESPONSE_BYTES {
        check_error_shape(&described, status, &body);
    }
}

fn check_error_shape(described: &str, status: StatusCode, body: &[u8]) {
    let json: serde_json::Value = match serde_json::from_slice(body) {
        Ok(json) => json,
        Err(e) => panic!(
            "{described}: {status} whose body is not JSON ({e}): {}",
            String::from_utf8_lossy(body)
        ),
    };
    for field in ["code", "message"] {
        assert!(
            json[field].as_str().is_some_and(|s| !s.is_empty()),
            "{described}: {status} without a {field}: {json}"
        );
    }
}

/// A request as hyper would hand it to the router, or None where hyper
/// would have refused the bytes itself.
fn parse(data: &[u8]) -> Option<Request<Body>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut head = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(len) = head.parse(data).ok()? else {
        return None;
    };
    let method = Method::from_bytes(head.method?.as_bytes()).ok()?;
    let mut builder = Request::builder().method(method).uri(head.path?);
    for h in head.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        builder = builder.header(name, HeaderValue::from_bytes(h.value).ok()?);
    }
    builder.body(Body::from(data[len..].to_vec())).ok()
}

fn raw(head: &str, body: &str) -> Vec<u8> {
    let mut out = head.replace('\n', "\r\n");
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

/// Every route, good and bad: unknown paths, methods, actions, keys, bodies,
/// query strings and deadlines.
pub fn seeds() -> Vec<Vec<u8>> {
    let auth = format!("authorization: Bearer {ACME_KEY}");
    let post = |path: &str, body: &str| {
        raw(
            &format!("POST {path} HTTP/1.1\n{auth}\ncontent-type: application/json\n"),
            body,
        )
    };
    let get = |path: &str| raw(&format!("GET {path} HTTP/1.1\n{auth}\n"), "");
    vec![
        post("/v1/accounts", r#"{"requestId":"r1","accountId":"alice"}"#),
        post("/v1/accounts", r#"{"requestId":"r2","accountId":"bob"}"#),
        post(
            "/v1/accounts/alice:deposit",
            r#"{"requestId":"d1","amount":"100"}"#,
        ),
        post(
            "/v1/accounts/alice:withdraw",
            r#"{"requestId":"w1","amount":7}"#,
        ),
        post("/v1/accounts/alice:close", r#"{"requestId":"c1"}"#),
        post("/v1/accounts/alice:explode", "{}"),
        post(
            "/v1/transfers",
            r#"{"requestId":"t1","fromAccountId":"alice","toAccountId":"bob","amount":"5"}"#,
        ),
        post("/v1/accounts", r#"{"requestId":"r1","accountId":"alice""#),
        post("/v1/accounts", r#"{"amount":-9223372036854775808}"#),
        get("/v1/accounts/alice"),
        get("/v1/accounts/alice/entries?page_size=2"),
        get("/v1/accounts?pageSize=-1&pageToken=%ff%fe"),
        get("/v1/accounts?page_size=abc"),
        get("/v1/transfers/t1"),
        get("/v1/nowhere/../accounts"),
        raw("DELETE /v1/accounts/alice HTTP/1.1\n", ""),
        raw(
            "GET /v1/accounts HTTP/1.1\nauthorization: Bearer nope\n",
            "",
        ),
        raw(
            &format!("GET /v1/accounts/alice HTTP/1.1\n{auth}\ngrpc-timeout: 99999999H\n"),
            "",
        ),
        raw(
            &format!("GET /v1/accounts/alice HTTP/1.1\n{auth}\ngrpc-timeout: 1x\n"),
            "",
        ),
    ]
}
