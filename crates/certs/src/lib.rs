//! Anatomy's certificates: a cluster CA and one certificate per service
//! identity, made in-process with rcgen (ring; no OpenSSL, no CLI tools),
//! so that `scripts/up.sh`, the Compose and Kubernetes scripts, and a bare
//! `cargo run` all get the same layout. See docs/security.md.
//!
//! - `identity`: who a certificate names (`spiffe://anatomy.local/...`).
//! - `authority`: making a CA and signing leaves.
//! - `dir`: the directory layout, rotation (renew, CA rollover), export.
#![forbid(unsafe_code)]

pub mod authority;
pub mod cli;
pub mod dir;
pub mod identity;
pub mod names;

pub use authority::{Authority, CertError, LeafOptions, Pair};
pub use dir::{DirError, TlsDir};
pub use identity::{Identity, IdentityError};

/// Every identity of a cluster of `shards` × `replicas` storage replicas:
/// gateway, business, operator, then each storage replica.
pub fn cluster_identities(shards: u32, replicas: u64) -> Vec<Identity> {
    let mut out = vec![Identity::Gateway, Identity::Business, Identity::Operator];
    for shard in 0..shards {
        for replica in 1..=replicas {
            out.push(Identity::storage(shard, replica));
        }
    }
    out
}

/// Development certificates, for a process started with no certificates
/// (a bare `cargo run`): when `me` has no pair in `dir`, makes what is
/// missing — the CA (unless the directory already has a trust bundle), and
/// the pairs of gateway, business, operator and `me` — so the services
/// started one by one share one CA and grpcurl has the operator's pair.
/// Returns the identities it issued (empty when nothing was missing).
pub fn ensure_dev(dir: &TlsDir, me: Identity) -> Result<Vec<Identity>, DirError> {
    if dir.has(me) && dir.ca_path().is_file() {
        return Ok(Vec::new());
    }
    dir.locked(|| {
        let mut wanted = cluster_identities(0, 0);
        if !wanted.contains(&me) {
            wanted.push(me);
        }
        dir.init(&wanted, &LeafOptions::default())
    })
}
