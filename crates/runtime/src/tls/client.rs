//! The rustls client side. We present the store's current certificate,
//! and accept a server only if its certificate chains to a CA the store
//! trusts now *and* names the identity we meant to reach: a connection to
//! storage replica s0/r2 must end at `spiffe://anatomy.local/storage/s0/r2`.
//! The identity is the check, not the host name, so dialing a pod IP or a
//! balancer-resolved address needs no per-address certificate.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anatomy_certs::Identity;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, verify_server_cert_signed_by_trust_anchor};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::peer::identity_of;
use super::server::H2;
use super::store::CertStore;
use super::{provider, signatures};

/// Verifies a server against the store's CAs and one expected identity.
#[derive(Debug)]
pub struct IdentityVerifier {
    store: Arc<CertStore>,
    expected: Identity,
}

impl ServerCertVerifier for IdentityVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let leaf = ParsedCertificate::try_from(end_entity)?;
        let roots = self.store.current().roots.clone();
        verify_server_cert_signed_by_trust_anchor(
            &leaf,
            &roots,
            intermediates,
            now,
            provider().signature_verification_algorithms.all,
        )?;
        match identity_of(end_entity) {
            Ok(found) if found == self.expected => Ok(ServerCertVerified::assertion()),
            Ok(found) => Err(wrong_peer(format!(
                "expected {}, the server is {found}",
                self.expected
            ))),
            Err(e) => Err(wrong_peer(format!("expected {}: {e}", self.expected))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        signatures::tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        signatures::tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        signatures::schemes()
    }
}

fn wrong_peer(detail: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
        WrongPeer(detail),
    ))))
}

#[derive(Debug, thiserror::Error)]
#[error("wrong peer identity: {0}")]
struct WrongPeer(String);

/// Presents the store's current certificate.
#[derive(Debug)]
pub struct StoreClientResolver(pub Arc<CertStore>);

impl ResolvesClientCert for StoreClientResolver {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A client configuration that reaches only `expected` (ALPN h2).
pub fn mtls_config(
    store: Arc<CertStore>,
    expected: Identity,
) -> Result<Arc<ClientConfig>, super::TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| super::TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(IdentityVerifier {
            store: store.clone(),
            expected,
        }))
        .with_client_cert_resolver(Arc::new(StoreClientResolver(store)));
    config.alpn_protocols = vec![H2.to_vec()];
    Ok(Arc::new(config))
}

/// Connects TCP to the URI's host and port, then TLS (tonic's
/// `connect_with_connector`).
#[derive(Debug, Clone)]
pub struct MtlsConnector {
    config: Arc<ClientConfig>,
}

impl MtlsConnector {
    /// A connector with `config`.
    pub fn new(config: Arc<ClientConfig>) -> Self {
        Self { config }
    }
}

type ConnectFuture =
    Pin<Box<dyn Future<Output = Result<TokioIo<TlsStream<TcpStream>>, std::io::Error>> + Send>>;

impl tower::Service<http::Uri> for MtlsConnector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connector = TlsConnector::from(self.config.clone());
        Box::pin(async move {
            let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
            let host = uri
                .host()
                .ok_or_else(|| invalid(format!("{uri} has no host")))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri
                .port_u16()
                .ok_or_else(|| invalid(format!("{uri} has no port")))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(host).map_err(|e| invalid(e.to_string()))?;
            Ok(TokioIo::new(connector.connect(name, tcp).await?))
        })
    }
}
