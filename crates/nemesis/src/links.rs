//! Fault-injecting TCP links. Each directed peer link (replica A dialling
//! replica B) gets its own proxy on a loopback port, as etcd's robustness
//! tests put a proxy on every member link; A's shard map names the proxy
//! instead of B (see `maps`). A link either passes bytes or blackholes
//! them: it accepts and reads, forwards nothing and answers nothing, so the
//! caller sees timeouts, as across a real partition (a refused connection
//! would be a kinder failure than networks give).
//!
//! Every change of a link's state closes its open connections: callers
//! reconnect and meet the new state at once, rather than keep a connection
//! that was opened before a partition (and would survive it) or one that
//! was blackholed (and would stay dead after the heal).

use std::net::SocketAddr;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What a link does with its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Pass,
    Blackhole,
}

/// One directed link's proxy.
#[derive(Debug, Clone)]
pub struct Link {
    /// The replica that dials (`storage-s0-r1`).
    pub from: String,
    /// The replica dialled.
    pub to: String,
    /// Where the proxy listens (what `from`'s shard map names `to` as).
    pub listen: SocketAddr,
    state: watch::Sender<LinkState>,
}

impl Link {
    /// Starts a proxy on a free loopback port that forwards to `target`.
    pub async fn open(from: &str, to: &str, target: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let listen = listener.local_addr()?;
        let (state, watching) = watch::channel(LinkState::Pass);
        tokio::spawn(accept(listener, target.to_string(), watching));
        Ok(Self {
            from: from.to_string(),
            to: to.to_string(),
            listen,
            state,
        })
    }

    /// Passes or blackholes from now on; open connections are closed.
    pub fn set(&self, state: LinkState) {
        self.state.send_replace(state);
    }

    /// What the link does now.
    pub fn state(&self) -> LinkState {
        *self.state.borrow()
    }
}

async fn accept(listener: TcpListener, target: String, state: watch::Receiver<LinkState>) {
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            continue;
        };
        let _ = conn.set_nodelay(true);
        tokio::spawn(serve(conn, target.clone(), state.clone()));
    }
}

/// Serves one connection in the link's current state, until the state
/// changes or either side closes.
async fn serve(mut conn: TcpStream, target: String, mut state: watch::Receiver<LinkState>) {
    let now = *state.borrow_and_update();
    match now {
        LinkState::Pass => {
            let Ok(mut upstream) = TcpStream::connect(&target).await else {
                return;
            };
            let _ = upstream.set_nodelay(true);
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream) => {}
                _ = state.changed() => {}
            }
        }
        LinkState::Blackhole => {
            tokio::select! {
                () = discard(&mut conn) => {}
                _ = state.changed() => {}
            }
        }
    }
}

/// Reads and drops everything until the caller closes.
async fn discard(conn: &mut TcpStream) {
    let mut buf = vec![0u8; 16 * 1024];
    while matches!(conn.read(&mut buf).await, Ok(n) if n > 0) {}
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// An echo server on a free loopback port.
    async fn echo() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = conn.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(conn: &mut TcpStream) -> Option<Vec<u8>> {
        conn.write_all(b"ping").await.ok()?;
        let mut got = [0u8; 4];
        match tokio::time::timeout(Duration::from_millis(300), conn.read_exact(&mut got)).await {
            Ok(Ok(_)) => Some(got.to_vec()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn passes_blackholes_and_heals() {
        let link = Link::open("a", "b", &echo().await).await.expect("open");
        let mut before = TcpStream::connect(link.listen).await.expect("connect");
        assert_eq!(round_trip(&mut before).await.as_deref(), Some(&b"ping"[..]));

        link.set(LinkState::Blackhole);
        let mut cut = TcpStream::connect(link.listen).await.expect("accepted");
        assert_eq!(round_trip(&mut cut).await, None, "nothing comes back");
        assert_eq!(
            round_trip(&mut before).await,
            None,
            "the open connection was closed"
        );

        link.set(LinkState::Pass);
        assert_eq!(
            round_trip(&mut cut).await,
            None,
            "blackholed ones stay closed"
        );
        let mut after = TcpStream::connect(link.listen).await.expect("connect");
        assert_eq!(round_trip(&mut after).await.as_deref(), Some(&b"ping"[..]));
    }
}
