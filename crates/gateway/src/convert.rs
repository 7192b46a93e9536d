//! Translation between the public API (`anatomy.gateway.v1`) and the
//! business service's internal one (`anatomy.business.v1`). The public
//! contract carries no tenant: the gateway adds the authenticated one.

use business_api::v1 as biz;
use gateway_api::v1 as api;

fn time(t: Option<prost_types::Timestamp>) -> Option<pbjson_types::Timestamp> {
    t.map(|t| pbjson_types::Timestamp {
        seconds: t.seconds,
        nanos: t.nanos,
    })
}

/// A business account as the public API shows it.
pub fn account(a: biz::Account) -> api::Account {
    let status = match a.status() {
        biz::AccountStatus::Open => api::AccountStatus::Open,
        biz::AccountStatus::Closed => api::AccountStatus::Closed,
        biz::AccountStatus::Unspecified => api::AccountStatus::Unspecified,
    };
    api::Account {
        account_id: a.account_id,
        balance: a.balance,
        version: a.version,
        status: status as i32,
        created_at: time(a.created_at),
        updated_at: time(a.updated_at),
    }
}

/// A business transfer as the public API shows it.
pub fn transfer(t: biz::Transfer) -> api::Transfer {
    let status = match t.status() {
        biz::TransferStatus::Pending => api::TransferStatus::Pending,
        biz::TransferStatus::Completed => api::TransferStatus::Completed,
        biz::TransferStatus::Failed => api::TransferStatus::Failed,
        biz::TransferStatus::Unspecified => api::TransferStatus::Unspecified,
    };
    api::Transfer {
        transfer_id: t.transfer_id,
        from_account_id: t.from_account_id,
        to_account_id: t.to_account_id,
        amount: t.amount,
        status: status as i32,
        failure_reason: t.failure_reason,
        request_id: t.request_id,
        created_at: time(t.created_at),
        updated_at: time(t.updated_at),
    }
}

/// A business entry as the public API shows it.
pub fn entry(e: biz::Entry) -> api::Entry {
    api::Entry {
        sequence: e.sequence,
        amount: e.amount,
        balance_after: e.balance_after,
        request_id: e.request_id,
        transfer_id: e.transfer_id,
        created_at: time(e.created_at),
    }
}

/// A page of accounts.
pub fn accounts(r: biz::ListAccountsResponse) -> api::ListAccountsResponse {
    api::ListAccountsResponse {
        accounts: r.accounts.into_iter().map(account).collect(),
        next_page_token: r.next_page_token,
        missing_shards: r.missing_shards,
    }
}

/// A page of entries.
pub fn entries(r: biz::ListEntriesResponse) -> api::ListEntriesResponse {
    api::ListEntriesResponse {
        entries: r.entries.into_iter().map(entry).collect(),
        next_page_token: r.next_page_token,
    }
}
