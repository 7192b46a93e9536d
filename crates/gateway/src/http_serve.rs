//! Serving the HTTP/JSON API on its listener, with the time limits a slow
//! or hostile client meets (`axum::serve` sets none): a client must send a
//! request's headers within `header_timeout` of connecting or of its last
//! answer (an idle keep-alive connection is closed after as long), and an
//! HTTP/2 client that stops answering pings within it is dropped. The body
//! has its own read timeout (`http::router`), and the whole request the
//! deadline backstop.
//!
//! On shutdown the accept loop stops and every connection is closed
//! gracefully: requests in flight finish, keep-alive connections end.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::serve::Listener as _;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;

use crate::public::HttpListener;

/// Serves `router` on `listener` until `shutdown` completes, then lets the
/// connections finish gracefully (the caller bounds how long it waits).
pub async fn serve(
    mut listener: HttpListener,
    router: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let builder = connection_builder(header_timeout);
    let (closing, closed) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (io, _) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        let mut closed = closed.clone();
        tokio::spawn(async move {
            let connection = builder.serve_connection(TokioIo::new(io), service);
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = async { let _ = closed.wait_for(|closing| *closing).await; } => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                // A client that went away or broke the protocol: its own
                // business, not the server's.
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    let _ = closing.send(true);
    drop(closed);
    // Every connection task holds a receiver until it has ended.
    closing.closed().await;
}

/// HTTP/1.1 and HTTP/2 (by preface or ALPN) with the timeouts above.
fn connection_builder(header_timeout: Duration) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(header_timeout))
        .keep_alive_timeout(header_timeout);
    builder
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// A server with a 200 ms header timeout; its address.
    async fn server() -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let listener = crate::public::http(listener, None).expect("listener");
        let router = Router::new().route("/", axum::routing::get(|| async { "hi" }));
        let timeout = Duration::from_millis(200);
        tokio::spawn(serve(listener, router, timeout, std::future::pending()));
        addr
    }

    /// Reads until the server closes the connection, which must be within
    /// the header timeout (hyper's own default would be 30 s); what it sent.
    async fn read_to_close(conn: &mut TcpStream) -> String {
        let started = tokio::time::Instant::now();
        let mut answer = Vec::new();
        conn.read_to_end(&mut answer).await.expect("read");
        let waited = started.elapsed();
        assert!(
            waited <= Duration::from_millis(300),
            "closed after {waited:?}"
        );
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_sends_no_headers_is_cut_off() {
        let mut conn = TcpStream::connect(server().await).await.expect("connect");
        conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        // The headers never end: the server closes the connection (408).
        let answer = read_to_close(&mut conn).await;
        assert!(answer.is_empty() || answer.contains("408"), "{answer}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_keep_alive_connection_is_closed_after_its_answer() {
        let mut conn = TcpStream::connect(server().await).await.expect("connect");
        conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let answer = read_to_close(&mut conn).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("hi"), "{answer}");
    }
}
