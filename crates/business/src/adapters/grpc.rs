//! The `anatomy.business.v1.Ledger` gRPC service: turns requests into
//! domain commands, runs the use case within the caller's deadline, and
//! maps the outcome back. The one place domain errors become statuses.

use std::time::Duration;

use anatomy_proto::business::v1 as pb;
use anatomy_proto::business::v1::ledger_server::Ledger as LedgerRpc;
use tonic::{Code, Request, Response, Status};

use crate::app::{AccountStore, Clock, Deadline, Ledger, MoveMoney};
use crate::domain::{
    Account, AccountId, AccountKey, AccountStatus, Amount, DomainError, RequestId, TenantId,
};

impl From<DomainError> for Status {
    fn from(e: DomainError) -> Self {
        let code = match &e {
            DomainError::InvalidArgument { .. } => Code::InvalidArgument,
            DomainError::AccountNotFound { .. } => Code::NotFound,
            DomainError::AccountExists { .. } => Code::AlreadyExists,
            DomainError::InsufficientFunds { .. }
            | DomainError::AccountClosed { .. }
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
    ledger: Ledger<S, C>,
    default_timeout: Duration,
}

impl<S, C> LedgerService<S, C> {
    /// Serves `ledger`; `default_timeout` applies when a caller sends no deadline.
    pub fn new(ledger: Ledger<S, C>, default_timeout: Duration) -> Self {
        Self {
            ledger,
            default_timeout,
        }
    }

    fn deadline<T>(&self, request: &Request<T>) -> Deadline {
        Deadline::after(anatomy_runtime::deadline::budget(
            request.metadata(),
            self.default_timeout,
        ))
    }
}

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

fn to_pb(tenant: &str, a: Account) -> pb::Account {
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

#[tonic::async_trait]
impl<S: AccountStore, C: Clock> LedgerRpc for LedgerService<S, C> {
    async fn create_account(
        &self,
        request: Request<pb::CreateAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let deadline = self.deadline(&request);
        let r = request.into_inner();
        let key = key(&r.tenant, &r.account_id)?;
        let request_id = RequestId::parse(&r.request_id)?;
        let account = self
            .ledger
            .create_account(key, request_id, deadline)
            .await?;
        Ok(Response::new(to_pb(&r.tenant, account)))
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let deadline = self.deadline(&request);
        let r = request.into_inner();
        let account = self
            .ledger
            .get_account(key(&r.tenant, &r.account_id)?, deadline)
            .await?;
        Ok(Response::new(to_pb(&r.tenant, account)))
    }

    async fn deposit(
        &self,
        request: Request<pb::MoveMoneyRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let deadline = self.deadline(&request);
        let r = request.into_inner();
        let tenant = r.tenant.clone();
        let account = self.ledger.deposit(move_money(r)?, deadline).await?;
        Ok(Response::new(to_pb(&tenant, account)))
    }

    async fn withdraw(
        &self,
        request: Request<pb::MoveMoneyRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let deadline = self.deadline(&request);
        let r = request.into_inner();
        let tenant = r.tenant.clone();
        let account = self.ledger.withdraw(move_money(r)?, deadline).await?;
        Ok(Response::new(to_pb(&tenant, account)))
    }
}
