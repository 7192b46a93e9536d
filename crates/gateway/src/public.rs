//! The public listeners (gRPC and HTTP/JSON): plaintext by default, for
//! local use and the README's `grpcurl -plaintext` lines; server TLS when
//! `--public-tls-cert`/`--public-tls-key` are given (no client
//! certificates: tenants authenticate with API keys). The certificate is
//! reloaded when its files change, like the internal ones.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anatomy_runtime::tls::acceptor::{self, Incoming, ServerConn};
use anatomy_runtime::tls::server::{H2, HTTP1, public_config};
use anatomy_runtime::tls::store::TlsPaths;
use anatomy_runtime::tls::{CertStore, TlsError};
use futures::StreamExt as _;
use tokio::net::TcpListener;

use crate::config::GatewayArgs;

/// The public certificate, if the flags name one (watched for changes).
pub fn certificate(args: &GatewayArgs) -> Result<Option<Arc<CertStore>>, TlsError> {
    let (Some(cert), Some(key)) = (&args.public_tls_cert, &args.public_tls_key) else {
        return Ok(None);
    };
    let store = CertStore::open(paths(cert, key), None)?;
    store.spawn_watch(args.tls.common.tls_reload_interval);
    Ok(Some(store))
}

fn paths(cert: &Path, key: &Path) -> TlsPaths {
    TlsPaths {
        ca: None,
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
    }
}

/// The gRPC listener's connections (ALPN h2).
pub fn grpc(listener: TcpListener, cert: Option<&Arc<CertStore>>) -> Result<Incoming, TlsError> {
    let config = cert.map(|c| public_config(c.clone(), &[H2])).transpose()?;
    Ok(acceptor::incoming(listener, config))
}

/// The HTTP listener, for `axum::serve` (ALPN h2 and http/1.1).
pub fn http(
    listener: TcpListener,
    cert: Option<&Arc<CertStore>>,
) -> Result<HttpListener, TlsError> {
    let local = listener.local_addr().map_err(|source| TlsError::Read {
        path: "the HTTP listener's address".into(),
        source,
    })?;
    let config = cert
        .map(|c| public_config(c.clone(), &[H2, HTTP1]))
        .transpose()?;
    Ok(HttpListener {
        incoming: acceptor::incoming(listener, config),
        local,
    })
}

/// Accepted (and, with TLS, handshaken) HTTP connections.
#[derive(Debug)]
pub struct HttpListener {
    incoming: Incoming,
    local: SocketAddr,
}

impl axum::serve::Listener for HttpListener {
    type Io = ServerConn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (ServerConn, SocketAddr) {
        loop {
            match self.incoming.next().await {
                Some(Ok(conn)) => {
                    let addr = conn.peer().remote.unwrap_or(self.local);
                    return (conn, addr);
                }
                Some(Err(_)) => continue,
                // The accept loop is gone (shutdown): accept nothing more.
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
