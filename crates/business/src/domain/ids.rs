//! Identifiers, validated once at the edge of the domain.

use std::fmt;

use super::DomainError;

fn check_id(field: &'static str, value: &str, max: usize) -> Result<(), DomainError> {
    let bad = |reason: String| Err(DomainError::InvalidArgument { field, reason });
    if value.is_empty() {
        return bad("must not be empty".into());
    }
    if value.len() > max {
        return bad(format!(
            "must be at most {max} characters, got {}",
            value.len()
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return bad(format!("{c:?} is not allowed; use only A-Z a-z 0-9 _ . -"));
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// Who owns an account: established by the gateway from the API key.
    TenantId
);
id_type!(
    /// An account's id, chosen by the client: 1–64 of `[A-Za-z0-9_.-]`.
    AccountId
);
id_type!(
    /// A client's id for one mutation, so retries are recognised.
    RequestId
);

impl TenantId {
    /// Validates a tenant name (same alphabet as account ids).
    pub fn parse(value: &str) -> Result<Self, DomainError> {
        check_id("tenant", value, 64).map(|()| Self(value.to_string()))
    }
}

impl AccountId {
    /// Validates an account id supplied in `field`.
    pub fn parse_field(field: &'static str, value: &str) -> Result<Self, DomainError> {
        check_id(field, value, 64).map(|()| Self(value.to_string()))
    }

    /// Validates the `account_id` field.
    pub fn parse(value: &str) -> Result<Self, DomainError> {
        Self::parse_field("account_id", value)
    }
}

impl RequestId {
    /// Validates a request id: 1–128 visible ASCII characters.
    pub fn parse(value: &str) -> Result<Self, DomainError> {
        let bad = |reason: &str| {
            Err(DomainError::InvalidArgument {
                field: "request_id",
                reason: reason.to_string(),
            })
        };
        if value.is_empty() {
            return bad(
                "is required: choose a unique id per operation (e.g. a UUID) and reuse it only to retry",
            );
        }
        if value.len() > 128 {
            return bad("must be at most 128 characters");
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return bad("must be visible ASCII characters without spaces");
        }
        Ok(Self(value.to_string()))
    }
}

/// An account's full identity: tenant and account id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountKey {
    pub tenant: TenantId,
    pub account: AccountId,
}

impl AccountKey {
    /// The partition key every record of this account is stored under:
    /// `tenant/account_id`.
    pub fn partition(&self) -> String {
        format!("{}/{}", self.tenant, self.account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_follow_the_contract() {
        assert!(AccountId::parse("alice").is_ok());
        assert!(AccountId::parse("A-1_b.c").is_ok());
        assert!(AccountId::parse(&"x".repeat(64)).is_ok());
        let err = AccountId::parse(&"x".repeat(65)).expect_err("too long");
        assert!(err.to_string().contains("account_id"), "{err}");
        assert!(AccountId::parse("").is_err());
        assert!(AccountId::parse("a/b").is_err());
        assert!(AccountId::parse("a b").is_err());
        assert!(AccountId::parse("ä").is_err());
    }

    #[test]
    fn request_ids_are_visible_ascii() {
        assert!(RequestId::parse("7f1c-22:x").is_ok());
        assert!(RequestId::parse("").is_err());
        assert!(RequestId::parse("a b").is_err());
        assert!(RequestId::parse(&"r".repeat(129)).is_err());
    }

    use proptest::prelude::*;

    /// Any id the contract allows.
    fn valid_id() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_.-]{1,64}"
    }

    fn key(tenant: &str, account: &str) -> AccountKey {
        AccountKey {
            tenant: TenantId::parse(tenant).expect("tenant"),
            account: AccountId::parse(account).expect("account"),
        }
    }

    proptest! {
        #[test]
        fn valid_ids_round_trip(id in valid_id()) {
            let account = AccountId::parse(&id).expect("valid");
            let tenant = TenantId::parse(&id).expect("valid");
            prop_assert_eq!(account.as_str(), id.as_str());
            prop_assert_eq!(tenant.as_str(), id.as_str());
        }

        #[test]
        fn ids_with_any_other_character_are_refused(
            head in "[a-z]{0,8}", bad in "[^A-Za-z0-9_.-]", tail in "[a-z]{0,8}",
        ) {
            let id = format!("{head}{bad}{tail}");
            prop_assert!(AccountId::parse(&id).is_err());
            prop_assert!(TenantId::parse(&id).is_err());
        }

        /// A tenant's records live under `tenant/`; no record of another
        /// tenant has that prefix, however alike the names.
        #[test]
        fn one_tenants_prefix_never_holds_another_tenants_partition(
            t1 in valid_id(), t2 in valid_id(), a1 in valid_id(), a2 in valid_id(),
        ) {
            prop_assume!(t1 != t2);
            let mine = format!("{}/", t1);
            prop_assert!(!key(&t2, &a2).partition().starts_with(&mine));
            prop_assert!(key(&t1, &a1).partition().starts_with(&mine));
            prop_assert_ne!(key(&t1, &a1).partition(), key(&t2, &a2).partition());
        }
    }

    #[test]
    fn tenants_alike_by_name_do_not_share_prefixes() {
        let names = ["acme", "acme.x", "acme-1", "acme_", "acm", "acme.", "acmf"];
        for t1 in names {
            for t2 in names.iter().filter(|t| **t != t1) {
                let theirs = key(t2, "alice").partition();
                assert!(
                    !theirs.starts_with(&format!("{t1}/")),
                    "{t1} holds {theirs}"
                );
            }
        }
    }

    #[test]
    fn partition_is_tenant_slash_account() {
        let key = AccountKey {
            tenant: TenantId::parse("acme").expect("tenant"),
            account: AccountId::parse("alice").expect("account"),
        };
        assert_eq!(key.partition(), "acme/alice");
    }
}
