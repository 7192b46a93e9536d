//! Page sizes and opaque page tokens. A token names the last item of the
//! previous page (an account id, an entry sequence), so it stays valid
//! while items are added.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::domain::{AccountId, DomainError};

/// Items per page when the caller does not say.
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// Most items per page.
pub const MAX_PAGE_SIZE: usize = 500;

/// Validates `page_size` (0 = the default; capped at the maximum).
pub fn page_size(requested: i32) -> Result<usize, DomainError> {
    match requested {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n < 0 => Err(DomainError::InvalidArgument {
            field: "page_size",
            reason: format!("must not be negative, got {n}"),
        }),
        n => Ok((n as usize).min(MAX_PAGE_SIZE)),
    }
}

fn bad_token() -> DomainError {
    DomainError::InvalidArgument {
        field: "page_token",
        reason: "not a token from a previous page of this list; start again with an empty token"
            .into(),
    }
}

fn encode(kind: &str, value: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{value}"))
}

fn decode<'a>(
    kind: &str,
    token: &'a str,
    buf: &'a mut String,
) -> Result<Option<&'a str>, DomainError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad_token())?;
    *buf = String::from_utf8(bytes).map_err(|_| bad_token())?;
    buf.strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix(':'))
        .map(Some)
        .ok_or_else(bad_token)
}

/// The token after account `last`.
pub fn account_token(last: &AccountId) -> String {
    encode("a", last.as_str())
}

/// The account a token resumes after.
pub fn after_account(token: &str) -> Result<Option<AccountId>, DomainError> {
    let mut buf = String::new();
    decode("a", token, &mut buf)?
        .map(|id| AccountId::parse(id).map_err(|_| bad_token()))
        .transpose()
}

/// The token after entry `sequence`.
pub fn entry_token(sequence: u64) -> String {
    encode("e", &sequence.to_string())
}

/// The entry sequence a token resumes before (entries go newest first).
pub fn before_entry(token: &str) -> Result<Option<u64>, DomainError> {
    let mut buf = String::new();
    decode("e", token, &mut buf)?
        .map(|s| s.parse().map_err(|_| bad_token()))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A forged or corrupted token is refused or names a valid account
        /// id — never anything else: the list then resumes after that id
        /// inside the caller's own tenant (the tenant comes from the API
        /// key, never from the token).
        #[test]
        fn any_account_token_is_refused_or_a_valid_id(token in ".{0,80}") {
            if let Ok(Some(id)) = after_account(&token) {
                prop_assert!(AccountId::parse(id.as_str()).is_ok());
                prop_assert!(!id.as_str().contains('/'));
            }
        }

        #[test]
        fn forged_tokens_of_any_bytes_are_refused_or_a_valid_id(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let token = URL_SAFE_NO_PAD.encode(&bytes);
            if let Ok(Some(id)) = after_account(&token) {
                prop_assert!(AccountId::parse(id.as_str()).is_ok());
            }
            let _ = before_entry(&token);
        }

        #[test]
        fn tokens_round_trip(id in "[A-Za-z0-9_.-]{1,64}", sequence in any::<u64>()) {
            let account = AccountId::parse(&id).expect("valid");
            prop_assert_eq!(after_account(&account_token(&account)).expect("decodes"), Some(account));
            prop_assert_eq!(before_entry(&entry_token(sequence)).expect("decodes"), Some(sequence));
            prop_assert!(before_entry(&account_token(&AccountId::parse(&id).expect("valid"))).is_err());
        }
    }

    #[test]
    fn tokens_round_trip_and_do_not_mix() {
        let id = AccountId::parse("alice").expect("id");
        assert_eq!(
            after_account(&account_token(&id)).expect("decode"),
            Some(id)
        );
        assert_eq!(before_entry(&entry_token(42)).expect("decode"), Some(42));
        assert_eq!(after_account("").expect("empty"), None);
        assert!(
            after_account(&entry_token(1)).is_err(),
            "an entry token is not an account token"
        );
        assert!(before_entry("!!!").is_err());
    }

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(0).expect("default"), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(10_000).expect("capped"), MAX_PAGE_SIZE);
        assert!(page_size(-1).is_err());
    }
}
