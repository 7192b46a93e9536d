//! What a process uses on its internal connections: mutual TLS (the
//! default), or plaintext when `--insecure-plaintext` says so.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anatomy_certs::{Identity, TlsDir};
use tokio::net::TcpListener;
use tonic::transport::{Channel, Endpoint};

use super::acceptor::{self, Incoming};
use super::client::{self, MtlsConnector};
use super::material::TlsError;
use super::server;
use super::store::{CertStore, TlsPaths};
use crate::layers::authorize::{AuthorizeLayer, Matrix};

/// Plaintext or mutual TLS, for serving and for dialing.
#[derive(Debug, Clone)]
pub enum Transport {
    /// No TLS, no identities, no authorization (`--insecure-plaintext`).
    Plaintext,
    /// Our certificate and the CAs we trust, reloaded from their files.
    Mtls(Arc<CertStore>),
}

impl Transport {
    /// mTLS as `me`, from `me`'s files in `dir`, re-read every `reload`.
    /// With `dev_certs`, missing files are made first (see
    /// `anatomy_certs::ensure_dev`).
    pub fn mtls(
        dir: &Path,
        me: Identity,
        reload: Duration,
        dev_certs: bool,
    ) -> Result<Self, TlsError> {
        if dev_certs {
            let made = anatomy_certs::ensure_dev(&TlsDir::new(dir), me)?;
            if !made.is_empty() {
                tracing::warn!(
                    dir = %dir.display(),
                    made = ?made.iter().map(Identity::stem).collect::<Vec<_>>(),
                    "made DEVELOPMENT certificates (a fresh CA and pairs); \
                     mount real ones and set --tls-dev-certs=false outside development"
                );
            }
        }
        let store = CertStore::open(TlsPaths::in_dir(dir, me), Some(me))?;
        store.spawn_watch(reload);
        Ok(Self::Mtls(store))
    }

    /// The authorization a server over this transport enforces: `matrix`
    /// with mTLS; nothing in plaintext (there are no identities).
    pub fn authorize(&self, matrix: Matrix) -> AuthorizeLayer {
        match self {
            Self::Plaintext => AuthorizeLayer::off(),
            Self::Mtls(_) => AuthorizeLayer::new(matrix),
        }
    }

    /// Whether connections are mutual TLS.
    pub fn is_mtls(&self) -> bool {
        matches!(self, Self::Mtls(_))
    }

    /// Our identity (none in plaintext).
    pub fn identity(&self) -> Option<Identity> {
        match self {
            Self::Plaintext => None,
            Self::Mtls(store) => store.identity(),
        }
    }

    /// The connections accepted on `listener`: TLS handshakes with client
    /// certificates required, or plaintext.
    pub fn incoming(&self, listener: TcpListener) -> Result<Incoming, TlsError> {
        let config = match self {
            Self::Plaintext => None,
            Self::Mtls(store) => Some(server::mtls_config(store.clone())?),
        };
        Ok(acceptor::incoming(listener, config))
    }

    /// A channel to `endpoint` that connects on first use (and reconnects
    /// by itself); with mTLS only to a server whose certificate names `peer`.
    pub fn lazy_channel(&self, endpoint: Endpoint, peer: Identity) -> Result<Channel, TlsError> {
        match self {
            Self::Plaintext => Ok(endpoint.connect_lazy()),
            Self::Mtls(store) => {
                let config = client::mtls_config(store.clone(), peer)?;
                Ok(endpoint.connect_with_connector_lazy(MtlsConnector::new(config)))
            }
        }
    }
}

/// The endpoint of `addr` (`host:port`). The scheme is `http` even over
/// TLS: our own connector does TLS, and tonic would otherwise try its own
/// TLS on an `https` URI whenever one of its TLS features is compiled in.
pub fn endpoint(addr: &str) -> Result<Endpoint, tonic::transport::Error> {
    Endpoint::from_shared(format!("http://{addr}"))
}
