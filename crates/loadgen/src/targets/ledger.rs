//! The ledger, end to end through the gateway's public API.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anatomy_proto::gateway::v1 as api;
use anatomy_proto::gateway::v1::ledger_client::LedgerClient;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};

use super::kind;
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
        let mut r = Request::new(message);
        let auth = format!("Bearer {}", self.api_key)
            .parse()
            .map_err(|_| "bad api key".to_string())?;
        r.metadata_mut().insert("authorization", auth);
        r.set_timeout(self.timeout);
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
    /// gateway went away mid-call (restarting, draining), goes to the next
    /// gateway with the same request_id — the ledger applies it once —
    /// at most once per gateway: the retries a well-behaved client is
    /// allowed. An answer from a gateway, even an error, is final.
    async fn call(&self, n: u64) -> Result<(), String> {
        let message = api::DepositRequest {
            request_id: format!("{}-{n}", self.run_id),
            account_id: self.account(n),
            amount: 1,
        };
        let mut last = String::new();
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        for attempt in 0..self.clients.len().max(1) {
            // Each attempt goes to the next gateway, not back to the same one.
            let mut client = self
                .clients
                .get((first + attempt) % self.clients.len().max(1))
                .cloned()
                .ok_or("no gateway to call")?;
            match client.deposit(self.request(message.clone())?).await {
                Ok(_) => return Ok(()),
                Err(s) if gateway_unreachable(&s) => last = kind(&s),
                Err(s) => return Err(kind(&s)),
            }
        }
        Err(last)
    }
}

/// The call failed on the way to or from the gateway — no connection, or
/// the connection reset while the gateway shut down — rather than being
/// answered: tonic attaches the local cause as the status's source; a
/// status the gateway sent has none. Safe to send again, elsewhere.
fn gateway_unreachable(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled
    ) && std::error::Error::source(status).is_some()
}
