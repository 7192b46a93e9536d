//! Service identities: who a certificate says its holder is.
//!
//! Every certificate names exactly one identity as a SPIFFE-style URI in
//! its subject alternative names, e.g. `spiffe://anatomy.local/business`
//! or `spiffe://anatomy.local/storage/s0/r1` (shard 0, replica 1). Files
//! and processes use the short form, the *stem*: `business`,
//! `storage-s0-r1` (so `.anatomy/tls/storage-s0-r1.pem`).

use std::fmt;
use std::str::FromStr;

/// The trust domain of every Anatomy identity.
pub const TRUST_DOMAIN: &str = "anatomy.local";

/// The URI prefix every identity starts with.
pub const URI_PREFIX: &str = "spiffe://anatomy.local/";

/// Who holds a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identity {
    /// The public edge; calls business.
    Gateway,
    /// The ledger; calls storage.
    Business,
    /// A person or tool (grpcurl, loadgen) acting as the cluster's operator.
    Operator,
    /// One replica of one storage shard.
    Storage { shard: u32, replica: u64 },
}

/// A string that names no identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not an Anatomy identity (expected gateway, business, operator or storage-s<shard>-r<replica>; \
     as a URI spiffe://anatomy.local/gateway … spiffe://anatomy.local/storage/s0/r1)"
)]
pub struct IdentityError(pub String);

impl Identity {
    /// The storage replica `replica` of shard `shard`.
    pub fn storage(shard: u32, replica: u64) -> Self {
        Self::Storage { shard, replica }
    }

    /// The SPIFFE-style URI the certificate carries.
    pub fn uri(&self) -> String {
        match self {
            Self::Storage { shard, replica } => format!("{URI_PREFIX}storage/s{shard}/r{replica}"),
            other => format!("{URI_PREFIX}{}", other.stem()),
        }
    }

    /// The short name files are called after: `gateway`, `storage-s0-r1`.
    pub fn stem(&self) -> String {
        match self {
            Self::Gateway => "gateway".into(),
            Self::Business => "business".into(),
            Self::Operator => "operator".into(),
            Self::Storage { shard, replica } => format!("storage-s{shard}-r{replica}"),
        }
    }

    /// Parses the URI form.
    pub fn from_uri(uri: &str) -> Result<Self, IdentityError> {
        let bad = || IdentityError(uri.to_string());
        let path = uri.strip_prefix(URI_PREFIX).ok_or_else(bad)?;
        match path.split('/').collect::<Vec<_>>().as_slice() {
            ["gateway"] => Ok(Self::Gateway),
            ["business"] => Ok(Self::Business),
            ["operator"] => Ok(Self::Operator),
            ["storage", shard, replica] => {
                let shard = number(shard.strip_prefix('s')).ok_or_else(bad)?;
                let replica = number(replica.strip_prefix('r')).ok_or_else(bad)?;
                Ok(Self::storage(shard, replica))
            }
            _ => Err(bad()),
        }
    }

    /// Parses the short form (`storage-s0-r1`).
    pub fn from_stem(stem: &str) -> Result<Self, IdentityError> {
        let bad = || IdentityError(stem.to_string());
        match stem {
            "gateway" => Ok(Self::Gateway),
            "business" => Ok(Self::Business),
            "operator" => Ok(Self::Operator),
            _ => {
                let rest = stem.strip_prefix("storage-s").ok_or_else(bad)?;
                let (shard, replica) = rest.split_once("-r").ok_or_else(bad)?;
                Ok(Self::storage(
                    number(Some(shard)).ok_or_else(bad)?,
                    number(Some(replica)).ok_or_else(bad)?,
                ))
            }
        }
    }

    /// The certificate file's name in a TLS directory.
    pub fn cert_file(&self) -> String {
        format!("{}.pem", self.stem())
    }

    /// The private key file's name in a TLS directory.
    pub fn key_file(&self) -> String {
        format!("{}.key", self.stem())
    }
}

/// A decimal number without sign or leading `+`.
fn number<T: FromStr>(text: Option<&str>) -> Option<T> {
    let text = text?;
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.stem())
    }
}

impl FromStr for Identity {
    type Err = IdentityError;

    /// Either form: `storage-s0-r1` or `spiffe://anatomy.local/storage/s0/r1`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.starts_with("spiffe://") {
            Self::from_uri(text)
        } else {
            Self::from_stem(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_and_stem_round_trip() {
        for id in [
            Identity::Gateway,
            Identity::Business,
            Identity::Operator,
            Identity::storage(0, 1),
            Identity::storage(12, 3),
        ] {
            assert_eq!(Identity::from_uri(&id.uri()), Ok(id));
            assert_eq!(Identity::from_stem(&id.stem()), Ok(id));
            assert_eq!(id.uri().parse::<Identity>(), Ok(id));
            assert_eq!(id.to_string().parse::<Identity>(), Ok(id));
        }
        assert_eq!(
            Identity::storage(0, 1).uri(),
            "spiffe://anatomy.local/storage/s0/r1"
        );
        assert_eq!(Identity::storage(0, 1).cert_file(), "storage-s0-r1.pem");
    }

    #[test]
    fn refuses_what_is_not_an_identity() {
        for bad in [
            "spiffe://other.domain/gateway",
            "spiffe://anatomy.local/admin",
            "spiffe://anatomy.local/storage/s0",
            "spiffe://anatomy.local/storage/0/1",
            "spiffe://anatomy.local/storage/s+0/r1",
            "spiffe://anatomy.local/gateway/extra",
            "https://anatomy.local/gateway",
            "storage-s0",
            "storage-sx-r1",
            "storage-s0-r",
            "",
        ] {
            assert!(bad.parse::<Identity>().is_err(), "{bad} parsed");
        }
    }
}
