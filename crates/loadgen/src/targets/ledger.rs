//! The ledger, end to end through the gateway's public API.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gateway_api::v1 as api;
use gateway_api::v1::ledger_client::LedgerClient;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};

use anatomy_runtime::grpc::failed_in_transit;
use anatomy_runtime::retry::{self, Backoff, RetryPolicy, Step};

use super::failure;
use crate::runner::Target;

/// Deposits of 1 into a set of accounts, round-robin over gateways.
#[derive(Debug)]
pub struct Deposits {
    clients: Vec<LedgerClient<Channel>>,
    next: AtomicUsize,
    api_key: String,
    accounts: u64,
    run_id: String,
    timeout: Duration,
}

impl Deposits {
    /// Connects (lazily) to every gateway (`host:port`).
    pub fn new(
        gateways: &[String],
        api_key: &str,
        accounts: u64,
        timeout: Duration,
    ) -> Result<Self, tonic::transport::Error> {
        let clients = gateways
            .iter()
            .map(|g| {
                Ok(LedgerClient::new(
                    Endpoint::from_shared(format!("http://{g}"))?
                        .tcp_nodelay(true)
                        .connect_lazy(),
                ))
            })
            .collect::<Result<_, tonic::transport::Error>>()?;
        let run_id = format!(
            "lg{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis())
        );
        Ok(Self {
            clients,
            next: AtomicUsize::new(0),
            api_key: api_key.to_string(),
            accounts: accounts.max(1),
            run_id,
            timeout,
        })
    }

    fn request<T>(&self, message: T) -> Result<Request<T>, String> {
        self.request_within(message, self.timeout)
    }

    fn request_within<T>(&self, message: T, timeout: Duration) -> Result<Request<T>, String> {
        let mut r = Request::new(message);
        let auth = format!("Bearer {}", self.api_key)
            .parse()
            .map_err(|_| "bad api key".to_string())?;
        r.metadata_mut().insert("authorization", auth);
        r.set_timeout(timeout);
        Ok(r)
    }

    fn client(&self) -> LedgerClient<Channel> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len().max(1);
        self.clients[i].clone()
    }

    fn account(&self, i: u64) -> String {
        format!("loadgen-{}", i % self.accounts)
    }

    /// Opens every account (those that exist already are fine).
    pub async fn setup(&self) -> Result<(), String> {
        for i in 0..self.accounts {
            let message = api::CreateAccountRequest {
                request_id: format!("loadgen-create-{i}"),
                account_id: self.account(i),
            };
            match self.client().create_account(self.request(message)?).await {
                Ok(_) => {}
                Err(s) if s.code() == Code::AlreadyExists => {}
                Err(s) => {
                    return Err(format!(
                        "creating {}: {:?}: {}",
                        self.account(i),
                        s.code(),
                        s.message()
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Target for Deposits {
    /// One deposit. A deposit that never reached a gateway, or whose
    /// gateway went away mid-call (restarting, draining, or closing an aged
    /// connection), goes again to the next gateway with the same
    /// request_id — the ledger applies it once — after a short jittered
    /// backoff (a closing connection refuses new calls until its last call
    /// is done and the channel dials a new one): the runtime's retry loop,
    /// at most `GATEWAY_RETRIES` times, all within the one timeout. An
    /// answer from a gateway, even an error, is final.
    async fn call(&self, n: u64) -> Result<(), String> {
        let message = api::DepositRequest {
            request_id: format!("{}-{n}", self.run_id),
            account_id: self.account(n),
            amount: 1,
        };
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let policy = RetryPolicy {
            backoff: GATEWAY_BACKOFF,
            max_retries: Some(GATEWAY_RETRIES),
            budget: None,
        };
        let deadline = tokio::time::Instant::now() + self.timeout;
        let outcome = retry::run(&policy, deadline, |attempt| {
            // Each attempt goes to the next gateway, not back to the same one.
            let i = (first + attempt.number as usize) % self.clients.len().max(1);
            let client = self.clients.get(i).cloned();
            let request = self.request_within(message.clone(), attempt.remaining);
            async move {
                let (Some(mut client), Ok(request)) = (client, request) else {
                    return Step::Fail(tonic::Status::invalid_argument(
                        "no gateway or bad api key",
                    ));
                };
                match client.deposit(request).await {
                    Ok(_) => Step::Done(()),
                    Err(s) if failed_in_transit(&s) => Step::Retry(s),
                    Err(s) => Step::Fail(s),
                }
            }
        })
        .await;
        outcome.map_err(|gave_up| match gave_up.last() {
            Some(status) => failure(status),
            None => "ClientTimeout".into(),
        })
    }
}

/// Retries of a deposit that reached no gateway: enough to try every
/// gateway of a small deployment and to outlast a connection that is
/// closing (its last calls take a few milliseconds).
const GATEWAY_RETRIES: u32 = 3;

/// The pause before each retry (jittered, doubling).
const GATEWAY_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(20),
    max: Duration::from_millis(200),
};
