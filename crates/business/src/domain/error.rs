//! Everything a ledger operation can refuse, in domain terms. The gRPC
//! adapter maps each to one status code (see `adapters::grpc`).

/// A ledger operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// A request field is malformed.
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    /// The account does not exist (in the caller's tenant).
    #[error("account {account_id:?} not found")]
    AccountNotFound { account_id: String },
    /// CreateAccount for an id that is taken.
    #[error("account {account_id:?} already exists")]
    AccountExists { account_id: String },
    /// Withdraw more than the balance.
    #[error("insufficient funds: balance is {balance}, cannot withdraw {amount}")]
    InsufficientFunds { balance: i64, amount: i64 },
    /// A deposit or credit would take the account past the ceiling, counting
    /// the money in flight out of it (which comes back if its transfers fail).
    #[error(
        "account {account_id:?} cannot take {amount}: its balance {balance} plus the {in_flight_out} in flight out of it (which comes back if those transfers fail) would pass the ceiling of {} minor units",
        super::account::CEILING
    )]
    BalanceCeiling {
        account_id: String,
        balance: i64,
        in_flight_out: i64,
        amount: i64,
    },
    /// CloseAccount on an account that still holds money.
    #[error("account {account_id:?} still holds {balance}; withdraw or transfer it first")]
    AccountNotEmpty { account_id: String, balance: i64 },
    /// CloseAccount while transfers from the account are still in flight.
    #[error("account {account_id:?} has transfers in flight; retry once they end")]
    TransfersInFlight { account_id: String },
    /// A transfer to the account it comes from.
    #[error("invalid to_account_id: a transfer needs two different accounts")]
    SelfTransfer,
    /// No such transfer (in the caller's tenant).
    #[error("transfer {transfer_id:?} not found")]
    TransferNotFound { transfer_id: String },
    /// The account is closed and takes no more money.
    #[error("account {account_id:?} is closed")]
    AccountClosed { account_id: String },
    /// The request_id was used before for a different request.
    #[error(
        "request_id {request_id:?} already used for a different request ({previous}); use a new request_id"
    )]
    RequestIdReused {
        request_id: String,
        previous: String,
    },
    /// Too many concurrent changes to one account; the client may retry.
    #[error("account {account_id:?} changed concurrently {attempts} times in a row; retry")]
    Contention { account_id: String, attempts: u32 },
    /// Storage could not answer in time.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Stored data or storage answers make no sense (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}
