//! The `anatomy.business.v1.Ledger` gRPC service: turns requests into
//! domain commands, runs the use case within the caller's deadline, and
//! maps the outcome back. The one place domain errors become statuses.

use std::sync::Arc;
use std::time::Duration;

use business_api::v1 as pb;
use business_api::v1::ledger_server::Ledger as LedgerRpc;
use tonic::{Code, Request, Response, Status};

use crate::app::{Clock, Ledger, MoveMoney, Store, TimeBudget, TransferCmd};
use crate::domain::{
    Account, AccountId, AccountKey, AccountStatus, Amount, DomainError, Entry, RequestId, TenantId,
    Transfer, TransferId, TransferStatus,
};

impl From<DomainError> for Status {
    fn from(e: DomainError) -> Self {
        let code = match &e {
            DomainError::InvalidArgument { .. } | DomainError::SelfTransfer => {
                Code::InvalidArgument
            }
            DomainError::AccountNotFound { .. } | DomainError::TransferNotFound { .. } => {
                Code::NotFound
            }
            DomainError::AccountExists { .. } => Code::AlreadyExists,
            DomainError::InsufficientFunds { .. }
            | DomainError::BalanceCeiling { .. }
            | DomainError::AccountClosed { .. }
            | DomainError::AccountNotEmpty { .. }
            | DomainError::TransfersInFlight { .. }
            | DomainError::RequestIdReused { .. } => Code::FailedPrecondition,
            DomainError::Contention { .. } => Code::Aborted,
            DomainError::Unavailable(_) => Code::Unavailable,
            DomainError::Internal(_) => Code::Internal,
        };
        Status::new(code, e.to_string())
    }
}

/// The gRPC face of the ledger.
#[derive(Debug)]
pub struct LedgerService<S, C> {
    ledger: Arc<Ledger<S, C>>,
    default_timeout: Duration,
}

impl<S, C> LedgerService<S, C> {
    /// Serves `ledger`; `default_timeout` applies when a caller sends no deadline.
    pub fn new(ledger: Arc<Ledger<S, C>>, default_timeout: Duration) -> Self {
        Self {
            ledger,
            default_timeout,
        }
    }

    /// The call's time budget (what the caller's deadline leaves); also names
    /// the tenant on the call's span.
    fn budget<T: Tenanted>(&self, request: &Request<T>) -> TimeBudget {
        tracing::Span::current().record("tenant", request.get_ref().tenant());
        TimeBudget::after(anatomy_runtime::grpc_timeout::budget(
            request.metadata(),
            self.default_timeout,
        ))
    }
}

/// Requests that carry the tenant they act for.
trait Tenanted {
    fn tenant(&self) -> &str;
}

macro_rules! tenanted {
    ($($t:ty),*) => {
        $(impl Tenanted for $t {
            fn tenant(&self) -> &str {
                &self.tenant
            }
        })*
    };
}

tenanted!(
    pb::CloseAccountRequest,
    pb::CreateAccountRequest,
    pb::GetAccountRequest,
    pb::GetTransferRequest,
    pb::ListAccountsRequest,
    pb::ListEntriesRequest,
    pb::MoveMoneyRequest,
    pb::TransferRequest
);

fn key(tenant: &str, account_id: &str) -> Result<AccountKey, DomainError> {
    Ok(AccountKey {
        tenant: TenantId::parse(tenant)?,
        account: AccountId::parse(account_id)?,
    })
}

fn move_money(r: pb::MoveMoneyRequest) -> Result<MoveMoney, DomainError> {
    Ok(MoveMoney {
        key: key(&r.tenant, &r.account_id)?,
        request_id: RequestId::parse(&r.request_id)?,
        amount: Amount::parse(r.amount)?,
    })
}

fn account_pb(tenant: &str, a: Account) -> pb::Account {
    pb::Account {
        tenant: tenant.to_string(),
        account_id: a.id.to_string(),
        balance: a.balance,
        version: a.version,
        status: match a.status {
            AccountStatus::Open => pb::AccountStatus::Open,
            AccountStatus::Closed => pb::AccountStatus::Closed,
        } as i32,
        created_at: Some(a.created_at.into()),
        updated_at: Some(a.updated_at.into()),
    }
}

fn transfer_pb(tenant: &str, t: Transfer) -> pb::Transfer {
    let (status, failure_reason) = match &t.status {
        TransferStatus::Pending => (pb::TransferStatus::Pending, String::new()),
        TransferStatus::Completed => (pb::TransferStatus::Completed, String::new()),
        TransferStatus::Failed { reason } => (pb::TransferStatus::Failed, reason.clone()),
    };
    pb::Transfer {
        tenant: tenant.to_string(),
        transfer_id: t.id.to_string(),
        from_account_id: t.id.from.to_string(),
        to_account_id: t.to.to_string(),
        amount: t.amount.get(),
        status: status as i32,
        failure_reason,
        request_id: t.id.request_id.to_string(),
        created_at: Some(t.created_at.into()),
        updated_at: Some(t.updated_at.into()),
    }
}

fn entry_pb(e: Entry) -> pb::Entry {
    pb::Entry {
        sequence: e.sequence,
        amount: e.amount,
        balance_after: e.balance_after,
        request_id: e.request_id.to_string(),
        transfer_id: e.transfer_id.map(|t| t.to_string()).unwrap_or_default(),
        created_at: Some(e.created_at.into()),
    }
}

type Answer<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl<S: Store, C: Clock> LedgerRpc for LedgerService<S, C> {
    async fn create_account(
        &self,
        request: Request<pb::CreateAccountRequest>,
    ) -> Answer<pb::Account> {
        let budget = self.budget(&request);
        let r = request.into_inner();
        let key = key(&r.tenant, &r.account_id)?;
        let request_id = RequestId::parse(&r.request_id)?;
        let account = self.ledger.create_account(key, request_id, budget).await?;
        Ok(Response::new(account_pb(&r.tenant, account)))
    }

    async fn get_account(&self, request: Request<pb::GetAccountRequest>) -> Answer<pb::Account> {
        let budget = self.budget(&request);
        let r = request.into_inner();
        let account = self
            .ledger
            .get_account(key(&r.tenant, &r.account_id)?, budget)
            .await?;
        Ok(Response::new(account_pb(&r.tenant, account)))
    }

    async fn deposit(&self, request: Request<pb::MoveMoneyRequest>) -> Answer<pb::Account> {
        let budget = self.budget(&request);
        let r = request.into_inner();
        let tenant = r.tenant.clone();
        let account = self.ledger.deposit(move_money(r)?, budget).await?;
        Ok(Response::new(account_pb(&tenant, account)))
    }

    async fn withdraw(&self, request: Request<pb::MoveMoneyRequest>) -> Answer<pb::Account> {
        let budget = self.budget(&request);
        let r = request.into_inner();
        let tenant = r.tenant.clone();
        let account = self.ledger.withdraw(move_money(r)?, budget).await?;
        Ok(Response::new(account_pb(&tenant, account)))
    }

    async fn close_account(
        &self,
        request: Request<pb::CloseAccountRequest>,
    ) -> Answer<pb::Account> {
        let budget = self.budget(&request);
        let r = request.into_inner();
        let key = key(&r.tenant, &r.account_id)?;
        let request_id = RequestId::parse(&r.request_id)?;
        let account = self.ledger.close_account(key, request_id, budget).await?;
        Ok(Response::new(account_pb(&r.tenant, account)))
    }

    async fn transfer(&self, request: Request<pb::TransferRequest>) -> Answer<pb::Transfer> {
        let budget = self.budget(&request);
        let r = request.into_inner();
        let cmd = TransferCmd {
            tenant: TenantId::parse(&r.tenant)?,
            request_id: RequestId::parse(&r.request_id)?,
            from: AccountId::parse_field("from_account_id", &r.from_account_id)?,
            to: AccountId::parse_field("to_account_id", &r.to_account_id)?,
            amount: Amount::parse(r.amount)?,
        };
        let transfer = self.ledger.transfer(cmd, budget).await?;
        Ok(Response::new(transfer_pb(&r.tenant, transfer)))
    }

    async fn get_transfer(&self, request: Request<pb::GetTransferRequest>) -> Answer<pb::Transfer> {
        let budget = self.budget(&request);
        let r = request.into_inner();
        let tenant = TenantId::parse(&r.tenant)?;
        let id = TransferId::parse(&r.transfer_id)?;
        let transfer = self.ledger.get_transfer(tenant, id, budget).await?;
        Ok(Response::new(transfer_pb(&r.tenant, transfer)))
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> Answer<pb::ListAccountsResponse> {
        let budget = self.budget(&request);
        let r = request.into_inner();
        let page = self
            .ledger
            .list_accounts(
                TenantId::parse(&r.tenant)?,
                r.page_size,
                &r.page_token,
                budget,
            )
            .await?;
        Ok(Response::new(pb::ListAccountsResponse {
            accounts: page
                .accounts
                .into_iter()
                .map(|a| account_pb(&r.tenant, a))
                .collect(),
            next_page_token: page.next_page_token,
            missing_shards: page.missing_shards,
        }))
    }

    async fn list_entries(
        &self,
        request: Request<pb::ListEntriesRequest>,
    ) -> Answer<pb::ListEntriesResponse> {
        let budget = self.budget(&request);
        let r = request.into_inner();
        let page = self
            .ledger
            .list_entries(
                key(&r.tenant, &r.account_id)?,
                r.page_size,
                &r.page_token,
                budget,
            )
            .await?;
        Ok(Response::new(pb::ListEntriesResponse {
            entries: page.entries.into_iter().map(entry_pb).collect(),
            next_page_token: page.next_page_token,
        }))
    }
}
