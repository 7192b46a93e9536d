//! Service identity: mutual TLS on every internal hop, with rustls on
//! ring (one crypto provider, passed explicitly and installed once; no
//! OpenSSL). See docs/security.md.
//!
//! One concern per module:
//! - `material`: a certificate, its key and the trusted CAs, checked
//!   (key matches, chains to a trusted CA, names the expected identity).
//! - `store`: that material re-read from its files when they change,
//!   keeping the last good pair when a new one is invalid.
//! - `peer`: the identity a peer's certificate names (its SAN URI).
//! - `server`: the rustls server side: our certificate, client
//!   certificates required and verified against the CAs.
//! - `acceptor`: TLS handshakes off the accept loop; each connection
//!   carries its peer's identity to the request extensions.
//! - `client`: the rustls client side: our certificate, the server
//!   verified against the CAs and pinned to the identity we meant to reach.
//! - `transport`: what a process uses — plaintext or mTLS — to serve and
//!   to open channels; `args`: its flags.
//!
//! The authorization that uses the peer identity is a tower layer:
//! `crate::layers::authorize`.

pub mod acceptor;
pub mod args;
pub mod client;
pub mod material;
pub mod peer;
pub mod server;
pub mod signatures;
pub mod store;
pub mod transport;

use std::sync::{Arc, OnceLock};

pub use anatomy_certs::Identity;
pub use args::TlsArgs;
pub use material::TlsError;
pub use peer::PeerInfo;
pub use store::CertStore;
pub use transport::Transport;

use rustls::crypto::CryptoProvider;

/// The one crypto provider: ring. Every rustls config here is built with
/// it explicitly, so whether another provider is compiled in does not
/// matter; `install_provider` also makes it the process default.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// Makes ring the process-wide default provider (once; later calls and a
/// provider installed earlier are fine).
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
