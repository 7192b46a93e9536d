//! What the middleware needs to know about a gRPC call from its HTTP/2
//! shape: which method it is (from the path) and how it ended (from the
//! `grpc-status` header).

use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock, RwLock};

use prost::Message as _;
use tonic::Code;

/// The health and reflection methods: served to anyone, never shed.
/// Exactly these: any other `/grpc.…` path is an ordinary (unknown) call.
pub const INFRASTRUCTURE: [&str; 4] = [
    "grpc.health.v1.Health/Check",
    "grpc.health.v1.Health/Watch",
    "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// Every method the servers of this process serve (`service/method`), from
/// their descriptor sets. Metrics label only these: a request to any other
/// path counts as `unknown`, so random paths cannot grow `/metrics`.
static KNOWN: LazyLock<RwLock<BTreeSet<String>>> = LazyLock::new(RwLock::default);

/// Adds the methods of the services in an encoded `FileDescriptorSet`.
pub fn register_methods(descriptor_set: &[u8]) {
    let Ok(set) = prost_types::FileDescriptorSet::decode(descriptor_set) else {
        return;
    };
    let mut known = KNOWN
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for file in &set.file {
        let package = file.package();
        for service in &file.service {
            for method in &service.method {
                let full = if package.is_empty() {
                    format!("{}/{}", service.name(), method.name())
                } else {
                    format!("{package}.{}/{}", service.name(), method.name())
                };
                known.insert(full);
            }
        }
    }
}

/// Whether `service/method` is served here (everything is, until some
/// server registered its methods: unit tests, libraries).
fn is_known(service: &str, method: &str) -> bool {
    let known = KNOWN
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    known.is_empty() || known.contains(&format!("{service}/{method}"))
}

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

    /// Whether this is infrastructure (exactly the health and reflection
    /// methods) rather than an API call.
    pub fn is_infrastructure(&self) -> bool {
        INFRASTRUCTURE
            .iter()
            .any(|m| m.split_once('/') == Some((self.service.as_str(), self.method.as_str())))
    }

    /// The `(service, method)` labels of its metrics: `unknown` for a path
    /// no server here serves.
    pub fn labels(&self) -> (String, String) {
        if is_known(&self.service, &self.method) {
            (self.service.clone(), self.method.clone())
        } else {
            ("unknown".to_owned(), "unknown".to_owned())
        }
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

/// The call failed on the way to or from the server — no connection, or
/// the connection broke under the call (a server restarting or killed) —
/// rather than being answered. tonic attaches the local cause as `source`
/// to the statuses it makes from such failures; a status a server sent
/// back has none, and is its answer. Internal is included: an HTTP/2
/// protocol error on a connection closed under the call comes out so
/// (seen in ~1 of 15 000 deposits while a replica restarted). Callers
/// retry these only where the call is safe to repeat.
pub fn failed_in_transit(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Internal
    ) && std::error::Error::source(status).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_statuses_with_a_local_cause_failed_in_transit() {
        let local = |code| {
            let mut status = tonic::Status::new(code, "h2 protocol error");
            let cause = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
            status.set_source(Arc::new(cause));
            status
        };
        assert!(failed_in_transit(&local(Code::Internal)));
        assert!(failed_in_transit(&local(Code::Unavailable)));
        assert!(!failed_in_transit(&local(Code::InvalidArgument)));
        // The same code sent by a server is its answer.
        assert!(!failed_in_transit(&tonic::Status::internal("boom")));
        assert!(!failed_in_transit(&tonic::Status::unavailable("no quorum")));
    }

    #[test]
    fn parses_paths() {
        let p = GrpcPath::parse("/anatomy.gateway.v1.Ledger/Deposit");
        assert_eq!(p.service, "anatomy.gateway.v1.Ledger");
        assert_eq!(p.method, "Deposit");
        assert!(!p.is_infrastructure());
        assert!(GrpcPath::parse("/grpc.health.v1.Health/Check").is_infrastructure());
        assert!(
            !GrpcPath::parse("/grpc.health.v1.Health/Forge").is_infrastructure(),
            "only the exact methods"
        );
        assert!(!GrpcPath::parse("/grpc.anything/Else").is_infrastructure());
        assert_eq!(GrpcPath::parse("/nonsense").service, "unknown");
    }

    #[test]
    fn labels_only_registered_methods() {
        register_methods(tonic_health::pb::FILE_DESCRIPTOR_SET);
        let check = GrpcPath::parse("/grpc.health.v1.Health/Check");
        assert_eq!(
            check.labels(),
            ("grpc.health.v1.Health".into(), "Check".into())
        );
        for random in ["/x.Y/Z", "/grpc.health.v1.Health/Nope", "/a/b/c", "/"] {
            let labels = GrpcPath::parse(random).labels();
            assert_eq!(labels, ("unknown".into(), "unknown".into()), "{random}");
        }
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
