//! The public `anatomy.gateway.v1.Ledger` API: each call is authenticated
//! (see `auth`), translated to the business service's internal API with
//! the caller's tenant, sent through the balanced pool within the caller's
//! deadline (the gateway's default when the caller sent none), and
//! translated back.
//!
//! Every Ledger call is safe to repeat — reads trivially, mutations by
//! their request_id — so a call that could not reach a business replica
//! (UNAVAILABLE) is tried again on another one while the deadline allows
//! and the retry budget has room: retries may add at most
//! --retry-budget-percent to the load, so that when every replica is in
//! trouble they cannot multiply the trouble.

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

use tower::retry::budget::{Budget as _, TpsBudget};

use crate::auth::Tenant;
use crate::balance::{Pool, PoolState};
use crate::convert;
use crate::rate_limit::TenantLimits;

/// One boxed business call.
type Call<R> = Pin<Box<dyn Future<Output = Result<Response<R>, Status>> + Send>>;

/// How the gateway treats each call on its way to business.
#[derive(Debug, Clone)]
pub struct CallPolicy {
    /// The deadline of a call whose caller sent none.
    pub default_timeout: Duration,
    /// Extra attempts for a call no replica could answer.
    pub retries: u32,
    /// What retries may add to the load (shared by every call).
    pub retry_budget: Arc<TpsBudget>,
    /// Per-tenant token buckets.
    pub tenant_limits: TenantLimits,
}

/// The gateway's Ledger service.
#[derive(Debug, Clone)]
pub struct Gateway {
    client: LedgerClient<Pool>,
    pool: Arc<PoolState>,
    policy: CallPolicy,
}

impl Gateway {
    /// Serves over `client` with `policy`.
    pub fn new(client: LedgerClient<Pool>, pool: Arc<PoolState>, policy: CallPolicy) -> Self {
        Self {
            client,
            pool,
            policy,
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
        self.policy.retry_budget.deposit();
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
            if !unreachable(&status) || attempt >= self.policy.retries {
                return Err(status);
            }
            self.pool.report_failure();
            if !self.policy.retry_budget.withdraw() {
                metrics::counter!("gateway_retries_total", "reason" => "budget_exhausted")
                    .increment(1);
                return Err(Status::unavailable(format!(
                    "no business replica answered, and the retry budget is spent \
                     (too many calls are failing): {}",
                    status.message()
                )));
            }
            metrics::counter!("gateway_retries_total", "reason" => "unreachable").increment(1);
            attempt += 1;
            tracing::info!(retry = attempt, error = %status.message(), "no business replica answered; retrying");
            let pause =
                Duration::from_millis(20 << attempt.min(5)).mul_f64(rand::rng().random::<f64>());
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }

    fn budget<T>(&self, request: &Request<T>) -> Duration {
        anatomy_runtime::deadline::budget(request.metadata(), self.policy.default_timeout)
    }
}

/// Worth another attempt: the call failed on the way to or from a business
/// replica — no connection, no replica ready, or the connection broke
/// mid-call (a replica killed) — rather than being answered. tonic attaches
/// the local cause as `source` to statuses it makes from such failures; a
/// status a replica sent back has none, and is its answer: a replica's own
/// UNAVAILABLE (say, a storage shard without a majority) is not retried,
/// that would only burn the caller's deadline. Every Ledger call is safe to
/// repeat, so a call that may have reached a replica can go again.
fn unreachable(status: &Status) -> bool {
    // Cancelled too: a replica shutting down resets the streams it did not
    // take (HTTP/2 REFUSED_STREAM / CANCEL), which tonic reports so.
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled
    ) && std::error::Error::source(status).is_some()
}

fn tenant<T>(request: &Request<T>) -> Result<String, Status> {
    request
        .extensions()
        .get::<Tenant>()
        .map(|t| t.0.clone())
        .ok_or_else(|| Status::unauthenticated("request was not authenticated"))
}

/// Forwards one call: the tenant from authentication, the deadline from
/// the caller (or the default), the message translated by `to_business`,
/// the answer by `to_api`.
macro_rules! forward {
    ($self:ident, $request:ident, $method:ident, |$tenant:ident, $r:ident| $to_business:expr, $to_api:path) => {{
        let ($tenant, budget) = (tenant(&$request)?, $self.budget(&$request));
        tracing::Span::current().record("tenant", $tenant.as_str());
        $self.policy.tenant_limits.check(&$tenant)?;
        let $r = $request.into_inner();
        let message = $to_business;
        let answer = $self
            .forward(budget, message, |mut c, req| {
                Box::pin(async move { c.$method(req).await })
            })
            .await?;
        Ok(Response::new($to_api(answer)))
    }};
}

#[tonic::async_trait]
impl Ledger for Gateway {
    async fn create_account(
        &self,
        request: Request<api::CreateAccountRequest>,
    ) -> Result<Response<api::Account>, Status> {
        forward!(
            self,
            request,
            create_account,
            |tenant, r| biz::CreateAccountRequest {
                tenant,
                request_id: r.request_id,
                account_id: r.account_id,
            },
            convert::account
        )
    }

    async fn get_account(
        &self,
        request: Request<api::GetAccountRequest>,
    ) -> Result<Response<api::Account>, Status> {
        forward!(
            self,
            request,
            get_account,
            |tenant, r| biz::GetAccountRequest {
                tenant,
                account_id: r.account_id,
            },
            convert::account
        )
    }

    async fn deposit(
        &self,
        request: Request<api::DepositRequest>,
    ) -> Result<Response<api::Account>, Status> {
        forward!(
            self,
            request,
            deposit,
            |tenant, r| biz::MoveMoneyRequest {
                tenant,
                request_id: r.request_id,
                account_id: r.account_id,
                amount: r.amount,
            },
            convert::account
        )
    }

    async fn withdraw(
        &self,
        request: Request<api::WithdrawRequest>,
    ) -> Result<Response<api::Account>, Status> {
        forward!(
            self,
            request,
            withdraw,
            |tenant, r| biz::MoveMoneyRequest {
                tenant,
                request_id: r.request_id,
                account_id: r.account_id,
                amount: r.amount,
            },
            convert::account
        )
    }

    async fn close_account(
        &self,
        request: Request<api::CloseAccountRequest>,
    ) -> Result<Response<api::Account>, Status> {
        forward!(
            self,
            request,
            close_account,
            |tenant, r| biz::CloseAccountRequest {
                tenant,
                request_id: r.request_id,
                account_id: r.account_id,
            },
            convert::account
        )
    }

    async fn transfer(
        &self,
        request: Request<api::TransferRequest>,
    ) -> Result<Response<api::Transfer>, Status> {
        forward!(
            self,
            request,
            transfer,
            |tenant, r| biz::TransferRequest {
                tenant,
                request_id: r.request_id,
                from_account_id: r.from_account_id,
                to_account_id: r.to_account_id,
                amount: r.amount,
            },
            convert::transfer
        )
    }

    async fn get_transfer(
        &self,
        request: Request<api::GetTransferRequest>,
    ) -> Result<Response<api::Transfer>, Status> {
        forward!(
            self,
            request,
            get_transfer,
            |tenant, r| biz::GetTransferRequest {
                tenant,
                transfer_id: r.transfer_id,
            },
            convert::transfer
        )
    }

    async fn list_accounts(
        &self,
        request: Request<api::ListAccountsRequest>,
    ) -> Result<Response<api::ListAccountsResponse>, Status> {
        forward!(
            self,
            request,
            list_accounts,
            |tenant, r| biz::ListAccountsRequest {
                tenant,
                page_size: r.page_size,
                page_token: r.page_token,
            },
            convert::accounts
        )
    }

    async fn list_entries(
        &self,
        request: Request<api::ListEntriesRequest>,
    ) -> Result<Response<api::ListEntriesResponse>, Status> {
        forward!(
            self,
            request,
            list_entries,
            |tenant, r| biz::ListEntriesRequest {
                tenant,
                account_id: r.account_id,
                page_size: r.page_size,
                page_token: r.page_token,
            },
            convert::entries
        )
    }
}
