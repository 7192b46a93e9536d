//! Authentication: `authorization: Bearer <api key>` names the tenant.
//!
//! This is an interceptor on the Ledger service only, so health checks and
//! reflection stay open. It sits first: nothing else runs for a caller we
//! do not know.

use std::collections::HashMap;
use std::sync::Arc;

use tonic::{Request, Status};

/// The development keys used when none are configured.
pub const DEV_KEYS: &str = "dev-key-acme=acme,dev-key-globex=globex";

/// The tenant a request was authenticated as (a request extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant(pub String);

/// A bad `--api-keys` value.
#[derive(Debug, thiserror::Error)]
#[error("invalid --api-keys entry {entry:?}: {reason} (expected key=tenant,key=tenant)")]
pub struct ApiKeyError {
    entry: String,
    reason: &'static str,
}

/// API key → tenant.
#[derive(Debug, Clone)]
pub struct ApiKeys(Arc<HashMap<String, String>>);

fn valid_tenant(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl ApiKeys {
    /// Parses `key=tenant,key=tenant`.
    pub fn parse(spec: &str) -> Result<Self, ApiKeyError> {
        let mut keys = HashMap::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let err = |reason| ApiKeyError {
                entry: entry.to_string(),
                reason,
            };
            let (key, tenant) = entry.split_once('=').ok_or_else(|| err("missing '='"))?;
            let (key, tenant) = (key.trim(), tenant.trim());
            if key.is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(err("the key must be non-empty without spaces"));
            }
            if !valid_tenant(tenant) {
                return Err(err("the tenant must be 1-64 of A-Z a-z 0-9 _ . -"));
            }
            if keys.insert(key.to_string(), tenant.to_string()).is_some() {
                return Err(err("the key appears twice"));
            }
        }
        if keys.is_empty() {
            return Err(ApiKeyError {
                entry: spec.to_string(),
                reason: "no keys given",
            });
        }
        Ok(Self(Arc::new(keys)))
    }

    /// The tenant of a key.
    pub fn tenant(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The tenant of a request's `authorization` metadata.
    pub fn authenticate(&self, metadata: &tonic::metadata::MetadataMap) -> Result<Tenant, Status> {
        let value = metadata.get("authorization").ok_or_else(|| {
            Status::unauthenticated(
                "missing credentials: send metadata 'authorization: Bearer <api key>'",
            )
        })?;
        let key = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                Status::unauthenticated("the authorization metadata must be 'Bearer <api key>'")
            })?;
        self.tenant(key)
            .map(|t| Tenant(t.to_string()))
            .ok_or_else(|| Status::unauthenticated("unknown API key"))
    }
}

impl tonic::service::Interceptor for ApiKeys {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let tenant = self.authenticate(request.metadata())?;
        request.extensions_mut().insert(tenant);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use tonic::service::Interceptor;

    use super::*;

    fn request(auth: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(a) = auth {
            r.metadata_mut()
                .insert("authorization", a.parse().expect("ascii"));
        }
        r
    }

    #[test]
    fn maps_keys_to_tenants() {
        let mut keys = ApiKeys::parse(DEV_KEYS).expect("dev keys");
        let ok = keys
            .call(request(Some("Bearer dev-key-acme")))
            .expect("known key");
        assert_eq!(
            ok.extensions().get::<Tenant>(),
            Some(&Tenant("acme".into()))
        );
        for bad in [
            None,
            Some("Bearer nope"),
            Some("dev-key-acme"),
            Some("Basic x"),
        ] {
            let status = keys.call(request(bad)).expect_err("refused");
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{bad:?}");
        }
    }

    #[test]
    fn rejects_malformed_key_lists() {
        assert!(ApiKeys::parse("k=acme,k2=globex").is_ok());
        for bad in ["", "k", "k=", "=acme", "k=a/b", "k=acme,k=globex"] {
            assert!(ApiKeys::parse(bad).is_err(), "{bad:?}");
        }
    }
}
