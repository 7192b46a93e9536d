//! Who is on the other end of a connection: the identity its certificate
//! names, read once per connection.

use std::net::SocketAddr;

use anatomy_certs::Identity;
use anatomy_certs::identity::URI_PREFIX;
use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer as _;

/// What a server knows about the peer of a connection; tonic puts it in
/// every request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's address.
    pub remote: Option<SocketAddr>,
    /// The identity its (verified) certificate names; `None` on a
    /// plaintext connection.
    pub identity: Option<Identity>,
}

/// Why a certificate names no identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    #[error("the certificate does not parse: {0}")]
    Unparsable(String),
    #[error("the certificate has no {URI_PREFIX}… URI in its subject alternative names")]
    NoIdentity,
    #[error("the certificate names more than one identity")]
    Ambiguous,
    #[error(transparent)]
    Bad(#[from] anatomy_certs::IdentityError),
}

/// The identity a certificate names: its one `spiffe://anatomy.local/…`
/// URI SAN.
pub fn identity_of(cert: &CertificateDer<'_>) -> Result<Identity, PeerError> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(cert)
        .map_err(|e| PeerError::Unparsable(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| PeerError::Unparsable(e.to_string()))?
        .ok_or(PeerError::NoIdentity)?;
    let mut uris = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) if uri.starts_with(URI_PREFIX) => Some(*uri),
            _ => None,
        });
    let uri = uris.next().ok_or(PeerError::NoIdentity)?;
    if uris.next().is_some() {
        return Err(PeerError::Ambiguous);
    }
    Ok(Identity::from_uri(uri)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anatomy_certs::{Authority, LeafOptions};
    use rustls::pki_types::pem::PemObject as _;

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    #[test]
    fn reads_the_identity_from_the_san_uri() {
        let ca = Authority::generate(std::time::Duration::from_secs(3600)).unwrap();
        for id in [Identity::Gateway, Identity::storage(0, 1)] {
            let pair = ca.issue(id, &LeafOptions::default()).unwrap();
            assert_eq!(identity_of(&der(&pair.cert_pem)), Ok(id));
        }
        // A CA certificate names no identity.
        assert_eq!(identity_of(&der(ca.cert_pem())), Err(PeerError::NoIdentity));
        assert!(matches!(
            identity_of(&CertificateDer::from(vec![1, 2, 3])),
            Err(PeerError::Unparsable(_))
        ));
    }
}
