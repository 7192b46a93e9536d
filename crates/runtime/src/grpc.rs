//! What the middleware needs to know about a gRPC call from its HTTP/2
//! shape: which method it is (from the path) and how it ended (from the
//! `grpc-status` header).

use std::sync::Arc;

use tonic::Code;

/// `/package.Service/Method` split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcPath {
    /// Fully qualified service, e.g. `anatomy.gateway.v1.Ledger`.
    pub service: String,
    /// Method name, e.g. `Deposit`.
    pub method: String,
}

impl GrpcPath {
    /// Parses a request path; anything that is not `/svc/method` becomes
    /// service `unknown` so that it still gets counted.
    pub fn parse(path: &str) -> Self {
        let mut parts = path.trim_start_matches('/').splitn(2, '/');
        match (parts.next(), parts.next()) {
            (Some(service), Some(method)) if !service.is_empty() && !method.is_empty() => Self {
                service: service.to_owned(),
                method: method.to_owned(),
            },
            _ => Self {
                service: "unknown".to_owned(),
                method: path.to_owned(),
            },
        }
    }

    /// The request's path, parsed once: the outermost layer (RED) stores it
    /// in the request's extensions, the layers below take it from there.
    pub fn of<B>(request: &mut http::Request<B>) -> Arc<Self> {
        if let Some(path) = request.extensions().get::<Arc<Self>>() {
            return path.clone();
        }
        let path = Arc::new(Self::parse(request.uri().path()));
        request.extensions_mut().insert(path.clone());
        path
    }

    /// Whether this is infrastructure (health, reflection) rather than an API call.
    pub fn is_infrastructure(&self) -> bool {
        self.service.starts_with("grpc.")
    }
}

/// How a unary call ended, read from the response head.
///
/// tonic answers an error as a "trailers-only" response: `grpc-status` is
/// in the headers. A success sends headers without it, then the message,
/// then `grpc-status: 0` in the trailers. Every Anatomy RPC is unary, so a
/// head without `grpc-status` is a success; a non-200 HTTP status maps as
/// the gRPC spec's HTTP-to-gRPC table says.
pub fn code_of<B>(response: &http::Response<B>) -> Code {
    if let Some(value) = response.headers().get("grpc-status") {
        return value
            .to_str()
            .ok()
            .and_then(|s| s.parse::<i32>().ok())
            .map_or(Code::Unknown, Code::from_i32);
    }
    match response.status().as_u16() {
        200 => Code::Ok,
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502..=504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

/// The code's name as Prometheus labels spell it (go-grpc-prometheus
/// convention: `OK`, `NotFound`, `Unavailable` …).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// Codes that mean the server failed, not the caller (the availability
/// SLO counts these; the caller's own mistakes don't burn the budget).
pub fn is_server_fault(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths() {
        let p = GrpcPath::parse("/anatomy.gateway.v1.Ledger/Deposit");
        assert_eq!(p.service, "anatomy.gateway.v1.Ledger");
        assert_eq!(p.method, "Deposit");
        assert!(!p.is_infrastructure());
        assert!(GrpcPath::parse("/grpc.health.v1.Health/Check").is_infrastructure());
        assert_eq!(GrpcPath::parse("/nonsense").service, "unknown");
    }

    #[test]
    fn reads_codes_from_the_head() {
        let ok = http::Response::builder().status(200).body(()).unwrap();
        assert_eq!(code_of(&ok), Code::Ok);
        let err = http::Response::builder()
            .status(200)
            .header("grpc-status", "14")
            .body(())
            .unwrap();
        assert_eq!(code_of(&err), Code::Unavailable);
        let gw = http::Response::builder().status(503).body(()).unwrap();
        assert_eq!(code_of(&gw), Code::Unavailable);
        assert_eq!(code_name(Code::NotFound), "NotFound");
    }
}
