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

use business_api::v1 as biz;
use business_api::v1::ledger_client::LedgerClient;
use gateway_api::v1 as api;
use gateway_api::v1::ledger_server::Ledger;
use tokio::time::Instant;
use tonic::{Code, Request, Response, Status};

use crate::auth::Tenant;
use crate::balance::{self, Pool, PoolState};
use crate::convert;
use crate::rate_limit::TenantLimits;
use anatomy_runtime::retry::{self, Attempt, GaveUp, RetryPolicy, Step};

/// One boxed business call.
type Call<R> = Pin<Box<dyn Future<Output = Result<Response<R>, Status>> + Send>>;

/// How the gateway treats each call on its way to business.
#[derive(Debug, Clone)]
pub struct CallPolicy {
    /// The deadline of a call whose caller sent none.
    pub default_timeout: Duration,
    /// How a call no replica could answer is retried: backoff, at most
    /// how many retries, and the retry budget shared by every call.
    pub retry: RetryPolicy,
    /// The least wait before retrying a call no replica was ready for:
    /// long enough that the retries together outlast a breaker's open
    /// period, so a replica that came back gets its probe.
    pub none_ready_wait: Duration,
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

    /// Sends one call, retrying on another replica when none answered,
    /// within the caller's `timeout` (the runtime's one retry loop).
    async fn forward<Q: Clone, R>(
        &self,
        timeout: Duration,
        message: Q,
        call: impl Fn(LedgerClient<Pool>, Request<Q>) -> Call<R>,
    ) -> Result<R, Status> {
        let deadline = Instant::now() + timeout;
        let outcome = retry::run(&self.policy.retry, deadline, |attempt| {
            let mut request = Request::new(message.clone());
            // Pass the time left on: the business service stops working
            // on the call when the caller stops waiting.
            request.set_timeout(attempt.remaining);
            let answer = call(self.client.clone(), request);
            async move { self.judge(attempt, answer.await) }
        })
        .await;
        outcome.map_err(|gave_up| gave_up_status(gave_up, timeout))
    }

    /// What one attempt's outcome means: retry only what never reached an
    /// answer from a replica.
    fn judge<R>(&self, attempt: Attempt, outcome: Result<Response<R>, Status>) -> Step<R, Status> {
        match outcome {
            Ok(response) => Step::Done(response.into_inner()),
            Err(status) if none_ready(&status) => {
                // Every replica's breaker is open (say one restarted and
                // the other is restarting now): wait for a breaker to let a
                // probe through rather than spend the retries at once.
                metrics::counter!("gateway_retries_total", "reason" => "none_ready").increment(1);
                Step::RetryAfter(status, self.policy.none_ready_wait)
            }
            Err(status) if unreachable(&status) => {
                self.pool.report_failure();
                if attempt.number < self.policy.retry.max_retries.unwrap_or(u32::MAX) {
                    metrics::counter!("gateway_retries_total", "reason" => "unreachable")
                        .increment(1);
                    tracing::info!(retry = attempt.number + 1, error = %status.message(),
                        "no business replica answered; retrying");
                }
                Step::Retry(status)
            }
            Err(status) => Step::Fail(status),
        }
    }

    fn budget<T>(&self, request: &Request<T>) -> Duration {
        anatomy_runtime::grpc_timeout::budget(request.metadata(), self.policy.default_timeout)
    }

    /// Relays one call to business: takes the tenant from authentication
    /// (and names it on the call's span), applies the tenant's rate limit,
    /// translates the message with `to_business`, sends it with `send`
    /// within the caller's deadline (or the default), and translates the
    /// answer with `to_api`.
    async fn relay<A, Q: Clone, R, B>(
        &self,
        request: Request<A>,
        to_business: impl FnOnce(String, A) -> Q,
        send: impl Fn(LedgerClient<Pool>, Request<Q>) -> Call<R>,
        to_api: impl FnOnce(R) -> B,
    ) -> Result<Response<B>, Status> {
        let tenant = tenant(&request)?;
        tracing::Span::current().record("tenant", tenant.as_str());
        self.policy.tenant_limits.check(&tenant)?;
        let budget = self.budget(&request);
        let message = to_business(tenant, request.into_inner());
        let answer = self.forward(budget, message, send).await?;
        Ok(Response::new(to_api(answer)))
    }
}

/// The status a caller gets when the retry loop stopped.
fn gave_up_status(gave_up: GaveUp<Status>, timeout: Duration) -> Status {
    match gave_up {
        GaveUp::Failed(status) | GaveUp::Exhausted(status) => status,
        GaveUp::Deadline(None) => {
            Status::deadline_exceeded(format!("no answer within {timeout:?}"))
        }
        GaveUp::Deadline(Some(last)) => {
            Status::deadline_exceeded(format!("no answer within {timeout:?}: {}", last.message()))
        }
        GaveUp::BudgetSpent(last) => {
            metrics::counter!("gateway_retries_total", "reason" => "budget_exhausted").increment(1);
            Status::unavailable(format!(
                "no business replica answered, and the retry budget is spent \
                 (too many calls are failing): {}",
                last.message()
            ))
        }
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
    // take (HTTP/2 REFUSED_STREAM / CANCEL), which tonic reports so. And
    // Internal with a local source: an HTTP/2 protocol error on a
    // connection closed under the call (seen once in ~15 000 deposits while
    // scripts/e2e/rotation.sh restarted a business replica); a replica's own
    // INTERNAL answer has no source and is not retried.
    let transport_failed = matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Internal
    ) && std::error::Error::source(status).is_some();
    transport_failed || none_ready(status)
}

/// The pool's own refusal when no replica was ready (one restarting, the
/// others' breakers open): tonic drops the source of a Status it finds in
/// an error chain, so it is known by its message.
fn none_ready(status: &Status) -> bool {
    status.code() == Code::Unavailable && status.message() == balance::NO_REPLICA_READY
}

fn tenant<T>(request: &Request<T>) -> Result<String, Status> {
    request
        .extensions()
        .get::<Tenant>()
        .map(|t| t.0.clone())
        .ok_or_else(|| Status::unauthenticated("request was not authenticated"))
}

#[tonic::async_trait]
impl Ledger for Gateway {
    async fn create_account(
        &self,
        request: Request<api::CreateAccountRequest>,
    ) -> Result<Response<api::Account>, Status> {
        self.relay(
            request,
            |tenant, r| biz::CreateAccountRequest {
                tenant,
                request_id: r.request_id,
                account_id: r.account_id,
            },
            |mut client, message| Box::pin(async move { client.create_account(message).await }),
            convert::account,
        )
        .await
    }

    async fn get_account(
        &self,
        request: Request<api::GetAccountRequest>,
    ) -> Result<Response<api::Account>, Status> {
        self.relay(
            request,
            |tenant, r| biz::GetAccountRequest {
                tenant,
                account_id: r.account_id,
            },
            |mut client, message| Box::pin(async move { client.get_account(message).await }),
            convert::account,
        )
        .await
    }

    async fn deposit(
        &self,
        request: Request<api::DepositRequest>,
    ) -> Result<Response<api::Account>, Status> {
        self.relay(
            request,
            |tenant, r| biz::MoveMoneyRequest {
                tenant,
                request_id: r.request_id,
                account_id: r.account_id,
                amount: r.amount,
            },
            |mut client, message| Box::pin(async move { client.deposit(message).await }),
            convert::account,
        )
        .await
    }

    async fn withdraw(
        &self,
        request: Request<api::WithdrawRequest>,
    ) -> Result<Response<api::Account>, Status> {
        self.relay(
            request,
            |tenant, r| biz::MoveMoneyRequest {
                tenant,
                request_id: r.request_id,
                account_id: r.account_id,
                amount: r.amount,
            },
            |mut client, message| Box::pin(async move { client.withdraw(message).await }),
            convert::account,
        )
        .await
    }

    async fn close_account(
        &self,
        request: Request<api::CloseAccountRequest>,
    ) -> Result<Response<api::Account>, Status> {
        self.relay(
            request,
            |tenant, r| biz::CloseAccountRequest {
                tenant,
                request_id: r.request_id,
                account_id: r.account_id,
            },
            |mut client, message| Box::pin(async move { client.close_account(message).await }),
            convert::account,
        )
        .await
    }

    async fn transfer(
        &self,
        request: Request<api::TransferRequest>,
    ) -> Result<Response<api::Transfer>, Status> {
        self.relay(
            request,
            |tenant, r| biz::TransferRequest {
                tenant,
                request_id: r.request_id,
                from_account_id: r.from_account_id,
                to_account_id: r.to_account_id,
                amount: r.amount,
            },
            |mut client, message| Box::pin(async move { client.transfer(message).await }),
            convert::transfer,
        )
        .await
    }

    async fn get_transfer(
        &self,
        request: Request<api::GetTransferRequest>,
    ) -> Result<Response<api::Transfer>, Status> {
        self.relay(
            request,
            |tenant, r| biz::GetTransferRequest {
                tenant,
                transfer_id: r.transfer_id,
            },
            |mut client, message| Box::pin(async move { client.get_transfer(message).await }),
            convert::transfer,
        )
        .await
    }

    async fn list_accounts(
        &self,
        request: Request<api::ListAccountsRequest>,
    ) -> Result<Response<api::ListAccountsResponse>, Status> {
        self.relay(
            request,
            |tenant, r| biz::ListAccountsRequest {
                tenant,
                page_size: r.page_size,
                page_token: r.page_token,
            },
            |mut client, message| Box::pin(async move { client.list_accounts(message).await }),
            convert::accounts,
        )
        .await
    }

    async fn list_entries(
        &self,
        request: Request<api::ListEntriesRequest>,
    ) -> Result<Response<api::ListEntriesResponse>, Status> {
        self.relay(
            request,
            |tenant, r| biz::ListEntriesRequest {
                tenant,
                account_id: r.account_id,
                page_size: r.page_size,
                page_token: r.page_token,
            },
            |mut client, message| Box::pin(async move { client.list_entries(message).await }),
            convert::entries,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn with_source(mut status: Status) -> Status {
        status.set_source(Arc::new(std::io::Error::other("connection refused")));
        status
    }

    #[test]
    fn what_reached_no_replica_is_retried() {
        assert!(unreachable(&with_source(Status::unavailable(
            "tcp connect error"
        ))));
        assert!(unreachable(&with_source(Status::cancelled("stream reset"))));
        assert!(unreachable(&with_source(Status::internal(
            "h2 protocol error"
        ))));
        assert!(unreachable(&Status::unavailable(balance::NO_REPLICA_READY)));
    }

    #[test]
    fn a_replicas_own_answer_is_final() {
        // A replica said so (no local cause): retrying would burn the deadline.
        assert!(!unreachable(&Status::unavailable(
            "storage unavailable: shard 1"
        )));
        assert!(!unreachable(&with_source(Status::invalid_argument(
            "amount"
        ))));
        assert!(!unreachable(&Status::internal(balance::NO_REPLICA_READY)));
    }
}
