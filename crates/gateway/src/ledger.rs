//! The public `anatomy.gateway.v1.Ledger` API: each call is authenticated
//! (see `auth`), translated to the business service's internal API with
//! the caller's tenant, sent through the balanced pool within the caller's
//! deadline (the gateway's default when the caller sent none), and
//! translated back.
//!
//! Every Ledger call is safe to repeat — reads trivially, mutations by
//! their request_id — so a call that could not reach a business replica
//! (UNAVAILABLE) is tried again on another one while the deadline allows.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anatomy_proto::business::v1 as biz;
use anatomy_proto::business::v1::ledger_client::LedgerClient;
use anatomy_proto::gateway::v1 as api;
use anatomy_proto::gateway::v1::ledger_server::Ledger;
use rand::Rng;
use tokio::time::Instant;
use tonic::{Code, Request, Response, Status};

use crate::auth::Tenant;
use crate::balance::{Pool, PoolState};

/// One boxed business call.
type Call<R> = Pin<Box<dyn Future<Output = Result<Response<R>, Status>> + Send>>;

/// The gateway's Ledger service.
#[derive(Debug, Clone)]
pub struct Gateway {
    client: LedgerClient<Pool>,
    pool: Arc<PoolState>,
    default_timeout: Duration,
    retries: u32,
}

impl Gateway {
    /// Serves over `client`; `retries` extra attempts for unreachable replicas.
    pub fn new(
        client: LedgerClient<Pool>,
        pool: Arc<PoolState>,
        default_timeout: Duration,
        retries: u32,
    ) -> Self {
        Self {
            client,
            pool,
            default_timeout,
            retries,
        }
    }

    /// Sends one call, retrying UNAVAILABLE within the deadline.
    async fn forward<Q: Clone, R>(
        &self,
        budget: Duration,
        message: Q,
        call: impl Fn(LedgerClient<Pool>, Request<Q>) -> Call<R>,
    ) -> Result<R, Status> {
        let deadline = Instant::now() + budget;
        let mut attempt = 0;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(Status::deadline_exceeded(format!(
                    "no answer within {budget:?}"
                )));
            }
            let mut request = Request::new(message.clone());
            // Pass the remaining budget on: the business service stops
            // working on the call when the caller stops waiting.
            request.set_timeout(remaining);
            let status = match call(self.client.clone(), request).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) => status,
            };
            if Instant::now() >= deadline {
                return Err(Status::deadline_exceeded(format!(
                    "no answer within {budget:?}: {}",
                    status.message()
                )));
            }
            if !unreachable(&status) || attempt >= self.retries {
                return Err(status);
            }
            self.pool.report_failure();
            attempt += 1;
            let pause =
                Duration::from_millis(20 << attempt.min(5)).mul_f64(rand::rng().random::<f64>());
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }

    fn budget<T>(&self, request: &Request<T>) -> Duration {
        anatomy_runtime::deadline::budget(request.metadata(), self.default_timeout)
    }
}

/// Worth another attempt: the call never reached a business replica that
/// could answer (no connection, or no replica ready). tonic attaches the
/// local cause as `source` to statuses it makes from client-side failures;
/// a status a replica sent back has none. A replica's own UNAVAILABLE
/// (say, a storage shard without a majority) is its answer: retrying here
/// would only burn the caller's deadline.
fn unreachable(status: &Status) -> bool {
    status.code() == Code::Unavailable && std::error::Error::source(status).is_some()
}

fn tenant<T>(request: &Request<T>) -> Result<String, Status> {
    request
        .extensions()
        .get::<Tenant>()
        .map(|t| t.0.clone())
        .ok_or_else(|| Status::unauthenticated("request was not authenticated"))
}

fn to_api(a: biz::Account) -> api::Account {
    let status = a.status();
    api::Account {
        account_id: a.account_id,
        balance: a.balance,
        version: a.version,
        status: match status {
            biz::AccountStatus::Open => api::AccountStatus::Open,
            biz::AccountStatus::Closed => api::AccountStatus::Closed,
            biz::AccountStatus::Unspecified => api::AccountStatus::Unspecified,
        } as i32,
        created_at: a.created_at,
        updated_at: a.updated_at,
    }
}

#[tonic::async_trait]
impl Ledger for Gateway {
    async fn create_account(
        &self,
        request: Request<api::CreateAccountRequest>,
    ) -> Result<Response<api::Account>, Status> {
        let (tenant, budget) = (tenant(&request)?, self.budget(&request));
        let r = request.into_inner();
        let message = biz::CreateAccountRequest {
            tenant,
            request_id: r.request_id,
            account_id: r.account_id,
        };
        let account = self
            .forward(budget, message, |mut c, req| {
                Box::pin(async move { c.create_account(req).await })
            })
            .await?;
        Ok(Response::new(to_api(account)))
    }

    async fn get_account(
        &self,
        request: Request<api::GetAccountRequest>,
    ) -> Result<Response<api::Account>, Status> {
        let (tenant, budget) = (tenant(&request)?, self.budget(&request));
        let message = biz::GetAccountRequest {
            tenant,
            account_id: request.into_inner().account_id,
        };
        let account = self
            .forward(budget, message, |mut c, req| {
                Box::pin(async move { c.get_account(req).await })
            })
            .await?;
        Ok(Response::new(to_api(account)))
    }

    async fn deposit(
        &self,
        request: Request<api::DepositRequest>,
    ) -> Result<Response<api::Account>, Status> {
        let (tenant, budget) = (tenant(&request)?, self.budget(&request));
        let r = request.into_inner();
        let message = biz::MoveMoneyRequest {
            tenant,
            request_id: r.request_id,
            account_id: r.account_id,
            amount: r.amount,
        };
        let account = self
            .forward(budget, message, |mut c, req| {
                Box::pin(async move { c.deposit(req).await })
            })
            .await?;
        Ok(Response::new(to_api(account)))
    }

    async fn withdraw(
        &self,
        request: Request<api::WithdrawRequest>,
    ) -> Result<Response<api::Account>, Status> {
        let (tenant, budget) = (tenant(&request)?, self.budget(&request));
        let r = request.into_inner();
        let message = biz::MoveMoneyRequest {
            tenant,
            request_id: r.request_id,
            account_id: r.account_id,
            amount: r.amount,
        };
        let account = self
            .forward(budget, message, |mut c, req| {
                Box::pin(async move { c.withdraw(req).await })
            })
            .await?;
        Ok(Response::new(to_api(account)))
    }
}
