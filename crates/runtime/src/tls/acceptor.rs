//! The stream of connections a server serves: accepted TCP connections,
//! each through its TLS handshake on its own task (a slow or silent client
//! cannot hold up the accept loop; a handshake gets `HANDSHAKE_TIMEOUT`).
//! Each connection carries its `PeerInfo` — the identity the client's
//! verified certificate names, parsed once per connection — and tonic puts
//! it into every request's extensions.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

use super::peer::{PeerInfo, identity_of};

/// Longest a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections handed to tonic but not yet picked up.
const BACKLOG: usize = 128;

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// One accepted connection, plaintext or TLS, with what we know of its peer.
pub struct ServerConn {
    io: Io,
    peer: PeerInfo,
}

impl std::fmt::Debug for ServerConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConn")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl ServerConn {
    /// What we know of the peer.
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }
}

impl Connected for ServerConn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.peer.clone()
    }
}

impl AsyncRead for ServerConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The connections of one listener, for `serve_with_incoming_shutdown`.
/// Dropping it (tonic does at shutdown) stops accepting and closes the
/// listening socket.
pub struct Incoming {
    rx: mpsc::Receiver<ServerConn>,
    accept_loop: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming").finish_non_exhaustive()
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

impl Stream for Incoming {
    type Item = Result<ServerConn, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|conn| conn.map(Ok))
    }
}

/// Accepts on `listener`: plaintext without `tls`, else through a TLS
/// handshake with `tls` (clients that fail it never reach tonic).
pub fn incoming(listener: TcpListener, tls: Option<Arc<ServerConfig>>) -> Incoming {
    let (tx, rx) = mpsc::channel(BACKLOG);
    let accept_loop = tokio::spawn(accept_loop(listener, tls.map(TlsAcceptor::from), tx));
    Incoming { rx, accept_loop }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    tx: mpsc::Sender<ServerConn>,
) {
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = tx.closed() => return,
        };
        tune(&tcp);
        let peer = PeerInfo {
            remote: Some(remote),
            identity: None,
        };
        match &tls {
            None => {
                let conn = ServerConn {
                    io: Io::Plain(tcp),
                    peer,
                };
                if tx.send(conn).await.is_err() {
                    return;
                }
            }
            Some(acceptor) => {
                tokio::spawn(handshake(acceptor.clone(), tcp, peer, tx.clone()));
            }
        }
    }
}

/// TCP_NODELAY (small gRPC frames must not wait for Nagle and delayed
/// ACKs: 40 ms stalls) and keepalive probes on a long-idle connection.
fn tune(tcp: &TcpStream) {
    let _ = tcp.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
    let _ = socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive);
}

async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    mut peer: PeerInfo,
    tx: mpsc::Sender<ServerConn>,
) {
    let remote = peer.remote;
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return refused(remote, &e.to_string()),
        Err(_) => return refused(remote, "timed out"),
    };
    peer.identity = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|leaf| identity_of(leaf).ok());
    let _ = tx
        .send(ServerConn {
            io: Io::Tls(Box::new(stream)),
            peer,
        })
        .await;
}

fn refused(remote: Option<std::net::SocketAddr>, error: &str) {
    metrics::counter!("tls_handshake_failures_total").increment(1);
    tracing::info!(peer = ?remote, error, "TLS handshake failed; connection closed");
}
