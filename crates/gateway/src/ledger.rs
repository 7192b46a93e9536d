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
use std::sync::atomic::{AtomicU32, Ordering};
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
    /// How long to wait before trying again a call no replica was ready
    /// for (every breaker open: one replica restarted and the other is
    /// restarting now). Such a call was never sent, so the wait is not a
    /// retry: it spends neither the retries nor the budget.
    pub none_ready_wait: Duration,
    /// How long, in all, a call waits for some replica to become ready
    /// before it fails with UNAVAILABLE: a little longer than a breaker's
    /// open period, so that a replica that came back gets its probe first,
    /// and short enough that a dead dependency still fails fast.
    pub none_ready_patience: Duration,
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
        let waited = AtomicU32::new(0);
        let outcome = retry::run(&self.policy.retry, deadline, |attempt| {
            let mut request = Request::new(message.clone());
            // Pass the time left on: the business service stops working
            // on the call when the caller stops waiting.
            request.set_timeout(attempt.remaining);
            let answer = call(self.client.clone(), request);
            let waited = &waited;
            async move { self.judge(attempt, waited, answer.await) }
        })
        .await;
        outcome.map_err(|gave_up| gave_up_status(gave_up, timeout))
    }

    /// What one attempt's outcome means: retry only what never reached an
    /// answer from a replica; `waited` counts the waits for a ready one.
    fn judge<R>(
        &self,
        attempt: Attempt,
        waited: &AtomicU32,
        outcome: Result<Response<R>, Status>,
    ) -> Step<R, Status> {
        match outcome {
            Ok(response) => Step::Done(response.into_inner()),
            Err(status) if none_ready(&status) => {
                // Every replica's breaker is open (say one restarted and
                // the other is restarting now): wait for a breaker to let a
                // probe through. Found by scripts/e2e/rotation.sh in CI:
                // when these waits counted as retries, a call that had
                // spent two retries on the replica going down had too few
                // left to outlast the open breaker of the one that had
                // just come back, and failed with UNAVAILABLE.
                let waits = waited.fetch_add(1, Ordering::Relaxed);
                if self.policy.none_ready_wait * waits >= self.policy.none_ready_patience {
                    return Step::Fail(status);
                }
                metrics::counter!("gateway_retries_total", "reason" => "none_ready").increment(1);
                Step::Wait(status, self.policy.none_ready_wait)
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
        GaveUp::Failed(status) => status,
        // Every retry failed on the way to a replica: say which dependency
        // (the last failure alone may read "Connection refused").
        GaveUp::Exhausted(status) if none_ready(&status) => status,
        GaveUp::Exhausted(status) => Status::unavailable(format!(
            "no business replica answered: {}",
            status.message()
        )),
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
/// mid-call (a replica killed) — rather than being answered. A replica's own
/// UNAVAILABLE (say, a storage shard without a majority) is not retried,
/// that would only burn the caller's deadline. Every Ledger call is safe to
/// repeat, so a call that may have reached a replica can go again.
fn unreachable(status: &Status) -> bool {
    anatomy_runtime::grpc::failed_in_transit(status) || none_ready(status)
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

    use anatomy_runtime::retry::Backoff;

    use super::*;
    use crate::rate_limit::TenantLimits;

    const WAIT: Duration = Duration::from_millis(500);

    /// A gateway with the defaults' shape (3 retries, waits of a quarter
    /// of a 2 s breaker pause, patience of 1.25 pauses) whose calls the
    /// tests script (its pool is never used).
    fn gateway() -> Gateway {
        let (pool, state) = balance::unreachable_pool();
        let policy = CallPolicy {
            default_timeout: Duration::from_secs(10),
            retry: RetryPolicy {
                backoff: Backoff {
                    base: Duration::from_millis(20),
                    max: Duration::from_millis(20),
                },
                max_retries: Some(3),
                budget: None,
            },
            none_ready_wait: WAIT,
            none_ready_patience: WAIT * 5,
            tenant_limits: TenantLimits::new(0, 0),
        };
        Gateway::new(LedgerClient::new(pool), state, policy)
    }

    /// Sends one call whose attempts answer `script` in turn (then OK),
    /// and how many attempts were made.
    async fn forward_scripted(
        gateway: &Gateway,
        script: Vec<Status>,
    ) -> (Result<u32, Status>, usize) {
        let script = std::sync::Mutex::new(script.into_iter());
        let attempts = std::sync::atomic::AtomicUsize::new(0);
        let answer = gateway
            .forward(Duration::from_secs(10), (), |_client, _request| {
                let n = attempts.fetch_add(1, Ordering::SeqCst);
                let next = script.lock().expect("script").next();
                Box::pin(async move {
                    next.map_or_else(|| Ok(Response::new(u32::try_from(n).expect("few"))), Err)
                })
            })
            .await;
        (answer, attempts.load(Ordering::SeqCst))
    }

    fn none_ready() -> Status {
        Status::unavailable(balance::NO_REPLICA_READY)
    }

    #[tokio::test(start_paused = true)]
    async fn waits_for_a_ready_replica_do_not_spend_the_retries() {
        // The replica going down failed two attempts; the other replica's
        // breaker is still open for a while: three waits, then it answers.
        let refused = || with_source(Status::unavailable("connection refused"));
        let script = vec![
            refused(),
            refused(),
            none_ready(),
            none_ready(),
            none_ready(),
        ];
        let started = Instant::now();
        let (answer, attempts) = forward_scripted(&gateway(), script).await;
        assert_eq!(answer.expect("answered after the waits"), 5);
        assert_eq!(attempts, 6);
        assert!(started.elapsed() >= WAIT * 3, "{:?}", started.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_waits_for_a_ready_replica_only_so_long() {
        let script = (0..100).map(|_| none_ready()).collect();
        let started = Instant::now();
        let (answer, attempts) = forward_scripted(&gateway(), script).await;
        let status = answer.expect_err("no replica became ready");
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), balance::NO_REPLICA_READY);
        assert_eq!(attempts, 6, "five waits make the patience of 2.5 s");
        assert_eq!(started.elapsed(), WAIT * 5);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_spent_on_a_dead_replica_name_the_dependency() {
        let script = (0..4)
            .map(|_| with_source(Status::unavailable("Connection refused (os error 111)")))
            .collect();
        let (answer, attempts) = forward_scripted(&gateway(), script).await;
        let status = answer.expect_err("every attempt refused");
        assert_eq!(attempts, 4, "the first attempt and 3 retries");
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(
            status.message(),
            "no business replica answered: Connection refused (os error 111)"
        );
    }

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
