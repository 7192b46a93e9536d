//! A certificate, its key and the CAs to trust, read from PEM and checked
//! before anything uses them: the key matches the certificate, the
//! certificate is valid now and chains to a trusted CA, and it names the
//! identity this process is meant to have.

use std::sync::Arc;

use anatomy_certs::Identity;
use rustls::RootCertStore;
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;

use super::peer::identity_of;
use super::provider;

/// Why certificates could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{what} holds no usable PEM {kind}: {detail}")]
    Pem {
        what: String,
        kind: &'static str,
        detail: String,
    },
    #[error("{what}: the private key does not belong to the certificate ({detail})")]
    KeyMismatch { what: String, detail: String },
    #[error("{what} is not signed by a CA in {ca} or is not valid now: {detail}")]
    Untrusted {
        what: String,
        ca: String,
        detail: String,
    },
    #[error("{what} names {found}, but this process is {expected}")]
    WrongIdentity {
        what: String,
        expected: Identity,
        found: String,
    },
    #[error("cannot build the TLS configuration: {0}")]
    Config(String),
    #[error("cannot make development certificates: {0}")]
    DevCerts(#[from] anatomy_certs::DirError),
}

/// The raw contents of the files, as last read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    /// The trust bundle (absent for a public server certificate).
    pub ca: Option<Vec<u8>>,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

/// Names used in error messages.
#[derive(Debug, Clone)]
pub struct Names {
    pub ca: String,
    pub cert: String,
}

/// Checked, ready-to-use TLS material.
#[derive(Debug)]
pub struct Material {
    /// The identity our certificate names (checked when one was expected).
    pub identity: Option<Identity>,
    /// Our certificate chain and signing key.
    pub key: Arc<CertifiedKey>,
    /// The CAs we trust (empty for a public server certificate).
    pub roots: Arc<RootCertStore>,
    /// Verifies client certificates against `roots` (None without a CA).
    pub client_verifier: Option<Arc<dyn ClientCertVerifier>>,
}

fn pem_error<'a>(what: &'a str, kind: &'static str) -> impl FnOnce(String) -> TlsError + 'a {
    move |detail| TlsError::Pem {
        what: what.to_string(),
        kind,
        detail,
    }
}

/// Every certificate in a PEM text (none is an error).
pub fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(what, "certificate")(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_error(what, "certificate")("none found".into()));
    }
    Ok(certs)
}

/// The trust store of a CA bundle (one or more CAs).
pub fn roots(pem: &[u8], what: &str) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certificates(pem, what)? {
        store
            .add(cert)
            .map_err(|e| pem_error(what, "CA certificate")(e.to_string()))?;
    }
    Ok(store)
}

/// Builds and checks material from file contents. With `expect`, the
/// certificate must name that identity and chain to the bundle.
pub fn build(files: &Files, names: &Names, expect: Option<Identity>) -> Result<Material, TlsError> {
    let provider = provider();
    let chain = certificates(&files.cert, &names.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&files.key)
        .map_err(|e| pem_error(&names.cert, "private key")(e.to_string()))?;
    let key = CertifiedKey::from_der(chain.clone(), key, &provider).map_err(|e| {
        TlsError::KeyMismatch {
            what: names.cert.clone(),
            detail: e.to_string(),
        }
    })?;
    let (roots, client_verifier) = match &files.ca {
        Some(ca) => {
            let roots = Arc::new(roots(ca, &names.ca)?);
            check_chain(&chain, &roots, names)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider)
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            (roots, Some(verifier))
        }
        None => (Arc::new(RootCertStore::empty()), None),
    };
    let identity = check_identity(&chain[0], names, expect)?;
    Ok(Material {
        identity,
        key: Arc::new(key),
        roots,
        client_verifier,
    })
}

fn check_chain(
    chain: &[CertificateDer<'static>],
    roots: &RootCertStore,
    names: &Names,
) -> Result<(), TlsError> {
    let untrusted = |detail: String| TlsError::Untrusted {
        what: names.cert.clone(),
        ca: names.ca.clone(),
        detail,
    };
    let leaf = ParsedCertificate::try_from(&chain[0]).map_err(|e| untrusted(e.to_string()))?;
    verify_server_cert_signed_by_trust_anchor(
        &leaf,
        roots,
        &chain[1..],
        UnixTime::now(),
        provider().signature_verification_algorithms.all,
    )
    .map_err(|e| untrusted(e.to_string()))
}

fn check_identity(
    leaf: &CertificateDer<'_>,
    names: &Names,
    expect: Option<Identity>,
) -> Result<Option<Identity>, TlsError> {
    let Some(expected) = expect else {
        return Ok(identity_of(leaf).ok());
    };
    match identity_of(leaf) {
        Ok(found) if found == expected => Ok(Some(found)),
        Ok(found) => Err(TlsError::WrongIdentity {
            what: names.cert.clone(),
            expected,
            found: found.to_string(),
        }),
        Err(e) => Err(TlsError::WrongIdentity {
            what: names.cert.clone(),
            expected,
            found: e.to_string(),
        }),
    }
}
