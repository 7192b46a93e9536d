//! The rustls server side. Our certificate comes from the store on every
//! handshake (so a rotated one is served at once); client certificates
//! are required and verified against the CAs the store trusts now. Who
//! the client is, and what it may call, is decided later, per request
//! (`crate::layers::authorize`).

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};

use super::material::TlsError;
use super::store::CertStore;
use super::{provider, signatures};

/// ALPN for gRPC (and HTTP/2).
pub const H2: &[u8] = b"h2";
/// ALPN for HTTP/1.1.
pub const HTTP1: &[u8] = b"http/1.1";

/// Serves the store's current certificate.
#[derive(Debug)]
pub struct StoreResolver(pub Arc<CertStore>);

impl ResolvesServerCert for StoreResolver {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().key.clone())
    }
}

/// Requires a client certificate that chains to a CA the store trusts now.
#[derive(Debug)]
pub struct StoreClientVerifier(pub Arc<CertStore>);

impl StoreClientVerifier {
    fn inner(&self) -> Result<Arc<dyn ClientCertVerifier>, rustls::Error> {
        self.0
            .current()
            .client_verifier
            .clone()
            .ok_or_else(|| rustls::Error::General("no CA to verify client certificates".into()))
    }
}

impl ClientCertVerifier for StoreClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    /// No hints: a client sends the certificate it has (the CAs change
    /// during a rollover, and every client has exactly one).
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner()?
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        signatures::tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        signatures::tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        signatures::schemes()
    }
}

/// An mTLS server configuration over the store (gRPC: ALPN h2).
pub fn mtls_config(store: Arc<CertStore>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(Arc::new(StoreClientVerifier(store.clone())))
        .with_cert_resolver(Arc::new(StoreResolver(store)));
    config.alpn_protocols = vec![H2.to_vec()];
    Ok(Arc::new(config))
}

/// A server configuration without client certificates (the gateway's
/// public listeners), offering `alpn`.
pub fn public_config(store: Arc<CertStore>, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(StoreResolver(store)));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}
