//! The cluster's certificate authority: makes itself, and signs one
//! certificate per identity.
//!
//! Keys are ECDSA P-256 (rcgen on ring). A leaf names its identity as a URI
//! SAN and carries `localhost` and `127.0.0.1` (what grpcurl dials on the
//! local cluster, and through `kubectl port-forward`), plus any extra
//! names; it is good for both ends of a connection (serverAuth and
//! clientAuth), because every service is a server and a client.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

use crate::Identity;

/// Why a certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot make a certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{0:?} is not a valid DNS name or IP address for a certificate")]
    BadName(String),
    #[error("the CA certificate or key is not usable: {0}")]
    BadCa(String),
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// What a leaf certificate should say besides its identity.
#[derive(Debug, Clone)]
pub struct LeafOptions {
    /// Extra DNS names or IP addresses (besides localhost and 127.0.0.1).
    pub names: Vec<String>,
    /// How long the certificate is valid from now.
    pub valid_for: Duration,
}

impl Default for LeafOptions {
    fn default() -> Self {
        Self {
            names: Vec::new(),
            valid_for: Duration::from_secs(365 * 24 * 3600),
        }
    }
}

/// Certificates are valid from a little before now, so a peer whose clock
/// is slightly behind still accepts a fresh one.
const BACKDATE: Duration = Duration::from_secs(3600);

/// A CA that can sign.
pub struct Authority {
    cert_pem: String,
    key: KeyPair,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

fn validity(params: &mut CertificateParams, valid_for: Duration) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + valid_for;
}

impl Authority {
    /// A new CA, valid for `valid_for`. Its name carries its creation time,
    /// so the old and the new CA of a rollover have different names.
    pub fn generate(valid_for: Duration) -> Result<Self, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "Anatomy");
        let created = OffsetDateTime::now_utc().unix_timestamp_nanos();
        name.push(DnType::CommonName, format!("Anatomy cluster CA {created}"));
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, valid_for);
        let cert_pem = params.self_signed(&key)?.pem();
        Self::from_pem(&cert_pem, &key.serialize_pem())
    }

    /// A CA from its certificate and key (PEM).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        let bad = |e: rcgen::Error| CertError::BadCa(e.to_string());
        let key = KeyPair::from_pem(key_pem).map_err(bad)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, KeyPair::from_pem(key_pem).map_err(bad)?)
            .map_err(bad)?;
        Ok(Self {
            cert_pem: cert_pem.to_string(),
            key,
            issuer,
        })
    }

    /// The CA certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key (PEM).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A new key and certificate for `identity`.
    pub fn issue(&self, identity: Identity, options: &LeafOptions) -> Result<Pair, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "Anatomy");
        name.push(DnType::CommonName, identity.stem());
        params.distinguished_name = name;
        params.subject_alt_names = sans(identity, &options.names)?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, options.valid_for);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Pair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The identity's URI, localhost, 127.0.0.1 and the extra names.
fn sans(identity: Identity, extra: &[String]) -> Result<Vec<SanType>, CertError> {
    let mut out = vec![
        SanType::URI(
            identity
                .uri()
                .try_into()
                .map_err(|_| CertError::BadName(identity.uri()))?,
        ),
        SanType::DnsName(
            "localhost"
                .try_into()
                .map_err(|_| CertError::BadName("localhost".into()))?,
        ),
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    ];
    for name in extra.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let san = match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                name.try_into()
                    .map_err(|_| CertError::BadName(name.to_string()))?,
            ),
        };
        if !out.contains(&san) {
            out.push(san);
        }
    }
    Ok(out)
}
