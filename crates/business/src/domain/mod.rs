//! The ledger's domain: identifiers, money, accounts and their rules,
//! transfers, idempotency receipts. Pure: no I/O, no gRPC types, no storage.

pub mod account;
pub mod error;
pub mod ids;
pub mod receipt;
pub mod transfer;

pub use account::{Account, AccountStatus, Amount, Cause, Entry};
pub use error::DomainError;
pub use ids::{AccountId, AccountKey, RequestId, TenantId};
pub use receipt::{Outcome, Receipt};
pub use transfer::{Inbound, PendingMark, Transfer, TransferId, TransferStatus};
