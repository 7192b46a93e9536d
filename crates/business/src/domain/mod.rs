//! The ledger's domain: identifiers, money, accounts and their rules,
//! idempotency receipts. Pure: no I/O, no gRPC types, no storage.

pub mod account;
pub mod error;
pub mod ids;
pub mod receipt;

pub use account::{Account, AccountStatus, Amount, Entry};
pub use error::DomainError;
pub use ids::{AccountId, AccountKey, RequestId, TenantId};
pub use receipt::Receipt;
