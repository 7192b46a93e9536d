//! Authorization: which identity may call which service, decided per
//! request from the identity the peer's certificate names (see
//! `crate::tls`). A call the matrix does not allow is answered
//! PERMISSION_DENIED before it reaches the service; a call with no
//! identity at all (a certificate without an Anatomy identity)
//! UNAUTHENTICATED. Health and reflection (`grpc.*`) are open to every
//! peer that got through the handshake.
//!
//! Where it sits: inside the RED and trace layers (refusals are counted
//! and traced, per caller) and outside shedding (a refused call never
//! takes a slot a real one could use).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anatomy_certs::Identity;
use pin_project_lite::pin_project;
use tonic::Status;
use tower::{Layer, Service};

use crate::grpc::GrpcPath;
use crate::layers::refusal::Refusal;
use crate::tls::PeerInfo;

/// Who may call a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// Exactly this identity.
    Is(Identity),
    /// Any storage replica.
    AnyStorage,
    /// A storage replica of this shard.
    StorageOfShard(u32),
}

impl Caller {
    fn admits(&self, who: &Identity) -> bool {
        match (self, who) {
            (Self::Is(id), who) => id == who,
            (Self::AnyStorage, Identity::Storage { .. }) => true,
            (Self::StorageOfShard(s), Identity::Storage { shard, .. }) => s == shard,
            _ => false,
        }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Is(id) => write!(f, "{id}"),
            Self::AnyStorage => f.write_str("any storage replica"),
            Self::StorageOfShard(s) => write!(f, "storage replicas of shard {s}"),
        }
    }
}

/// The services of one server and who may call each. Services without a
/// rule are refused to everyone (except `grpc.*`).
#[derive(Debug, Clone, Default)]
pub struct Matrix {
    rules: Vec<(&'static str, Vec<Caller>)>,
}

impl Matrix {
    /// A matrix that allows nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets `callers` call `service` (fully qualified, e.g. `anatomy.storage.v1.Kv`).
    pub fn allow(mut self, service: &'static str, callers: &[Caller]) -> Self {
        self.rules.push((service, callers.to_vec()));
        self
    }

    /// Whether `peer` may make the call at `path`.
    pub fn check(&self, path: &GrpcPath, peer: Option<&PeerInfo>) -> Result<(), Status> {
        if path.is_infrastructure() {
            return Ok(());
        }
        let Some(who) = peer.and_then(|p| p.identity.as_ref()) else {
            return Err(Status::unauthenticated(format!(
                "{}/{} needs a client certificate naming an Anatomy identity \
                 (spiffe://anatomy.local/...) signed by the cluster CA",
                path.service, path.method
            )));
        };
        let Some((_, callers)) = self.rules.iter().find(|(s, _)| *s == path.service) else {
            return Err(Status::permission_denied(format!(
                "{who} may not call {}: this server lets no one call it",
                path.service
            )));
        };
        if callers.iter().any(|c| c.admits(who)) {
            return Ok(());
        }
        let allowed: Vec<String> = callers.iter().map(Caller::to_string).collect();
        Err(Status::permission_denied(format!(
            "{who} may not call {}/{} (allowed: {})",
            path.service,
            path.method,
            allowed.join(", ")
        )))
    }
}

/// Enforces a matrix, or nothing (`off`: plaintext, or a public server).
#[derive(Debug, Clone, Default)]
pub struct AuthorizeLayer {
    matrix: Option<Arc<Matrix>>,
}

impl AuthorizeLayer {
    /// Enforces `matrix`.
    pub fn new(matrix: Matrix) -> Self {
        Self {
            matrix: Some(Arc::new(matrix)),
        }
    }

    /// Lets every call through.
    pub fn off() -> Self {
        Self { matrix: None }
    }
}

impl<S> Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Authorize<S> {
        Authorize {
            inner,
            matrix: self.matrix.clone(),
        }
    }
}

/// The authorizing service.
#[derive(Debug, Clone)]
pub struct Authorize<S> {
    inner: S,
    matrix: Option<Arc<Matrix>>,
}

impl<S, B, RB> Service<http::Request<B>> for Authorize<S>
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
        let Some(matrix) = &self.matrix else {
            return ResponseFuture::Allowed {
                inner: self.inner.call(request),
            };
        };
        let path = GrpcPath::of(&mut request);
        match matrix.check(&path, request.extensions().get::<PeerInfo>()) {
            Ok(()) => ResponseFuture::Allowed {
                inner: self.inner.call(request),
            },
            Err(status) => {
                let peer = request.extensions().get::<PeerInfo>();
                tracing::warn!(
                    peer = ?peer.and_then(|p| p.remote),
                    identity = ?peer.and_then(|p| p.identity),
                    grpc.service = %path.service,
                    grpc.method = %path.method,
                    code = ?status.code(),
                    "call refused"
                );
                metrics::counter!("grpc_server_refused_total",
                    "grpc_service" => path.service.clone(),
                    "grpc_code" => crate::grpc::code_name(status.code()))
                .increment(1);
                ResponseFuture::Refused {
                    refusal: Refusal::new(status),
                }
            }
        }
    }
}

pin_project! {
    /// The inner call, or the refusal.
    #[project = Proj]
    pub enum ResponseFuture<F, RB> {
        Allowed { #[pin] inner: F },
        Refused { refusal: Refusal<RB> },
    }
}

impl<F, RB, E> Future for ResponseFuture<F, RB>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Proj::Allowed { inner } => inner.poll(cx),
            Proj::Refused { refusal } => refusal.poll_take(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::code_of;
    use tonic::Code;
    use tower::ServiceExt as _;

    fn storage_matrix(shard: u32) -> Matrix {
        Matrix::new()
            .allow(
                "anatomy.storage.v1.Kv",
                &[
                    Caller::Is(Identity::Business),
                    Caller::Is(Identity::Operator),
                ],
            )
            .allow("anatomy.storage.v1.Raft", &[Caller::StorageOfShard(shard)])
            .allow(
                "anatomy.storage.v1.Admin",
                &[Caller::Is(Identity::Operator), Caller::AnyStorage],
            )
    }

    fn peer(identity: Option<Identity>) -> PeerInfo {
        PeerInfo {
            remote: None,
            identity,
        }
    }

    fn code(m: &Matrix, path: &str, who: Option<Identity>) -> Code {
        match m.check(&GrpcPath::parse(path), Some(&peer(who))) {
            Ok(()) => Code::Ok,
            Err(status) => status.code(),
        }
    }

    #[test]
    fn the_storage_matrix() {
        use Identity::*;
        let m = storage_matrix(0);
        let kv = "/anatomy.storage.v1.Kv/Write";
        let raft = "/anatomy.storage.v1.Raft/AppendEntries";
        let admin = "/anatomy.storage.v1.Admin/ClusterStatus";
        let same = Identity::storage(0, 2);
        let other = Identity::storage(1, 1);
        let table = [
            (kv, Some(Business), Code::Ok),
            (kv, Some(Operator), Code::Ok),
            (kv, Some(Gateway), Code::PermissionDenied),
            (kv, Some(other), Code::PermissionDenied),
            (raft, Some(same), Code::Ok),
            (raft, Some(other), Code::PermissionDenied),
            (raft, Some(Operator), Code::PermissionDenied),
            (raft, Some(Business), Code::PermissionDenied),
            (admin, Some(Operator), Code::Ok),
            (admin, Some(other), Code::Ok),
            (admin, Some(Business), Code::PermissionDenied),
            (kv, None, Code::Unauthenticated),
            (
                "/anatomy.other.v1.X/Y",
                Some(Operator),
                Code::PermissionDenied,
            ),
            ("/grpc.health.v1.Health/Check", None, Code::Ok),
            (
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                Some(Gateway),
                Code::Ok,
            ),
        ];
        for (path, who, want) in table {
            assert_eq!(code(&m, path, who), want, "{path} by {who:?}");
        }
        // No peer information at all (not a TLS connection): unauthenticated.
        let status = m.check(&GrpcPath::parse(kv), None).unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        let denied = m
            .check(&GrpcPath::parse(kv), Some(&peer(Some(Gateway))))
            .unwrap_err();
        assert!(
            denied
                .message()
                .contains("gateway may not call anatomy.storage.v1.Kv/Write")
        );
        assert!(denied.message().contains("allowed: business, operator"));
    }

    #[tokio::test]
    async fn the_layer_refuses_before_the_service() {
        let ok = tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(()))
        });
        let service = AuthorizeLayer::new(storage_matrix(0)).layer(ok);
        let call = |who: Option<Identity>| {
            let mut request = http::Request::builder()
                .uri("/anatomy.storage.v1.Kv/Read")
                .body(())
                .unwrap();
            request.extensions_mut().insert(peer(who));
            service.clone().oneshot(request)
        };
        assert_eq!(
            code_of(&call(Some(Identity::Business)).await.unwrap()),
            Code::Ok
        );
        assert_eq!(
            code_of(&call(Some(Identity::Gateway)).await.unwrap()),
            Code::PermissionDenied
        );
        assert_eq!(code_of(&call(None).await.unwrap()), Code::Unauthenticated);
        let open = AuthorizeLayer::off().layer(ok);
        let request = http::Request::builder()
            .uri("/anatomy.storage.v1.Kv/Read")
            .body(())
            .unwrap();
        assert_eq!(code_of(&open.oneshot(request).await.unwrap()), Code::Ok);
    }
}
