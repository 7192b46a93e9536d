//! The bank workload: random transfers between a fixed set of accounts,
//! then a check of the ledger's invariants through the public API only —
//! what any client could verify:
//!
//! 1. the sum of all balances equals the sum deposited (no money created
//!    or destroyed);
//! 2. no balance is negative;
//! 3. every transfer ends COMPLETED or FAILED (none stuck PENDING), whether
//!    its caller heard back or not;
//! 4. every transfer acknowledged COMPLETED shows in both accounts' histories;
//! 5. each account's history replays to its balance.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gateway_api::v1 as api;
use gateway_api::v1::ledger_client::LedgerClient;
use rand::Rng;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};

use super::kind;
use crate::runner::Target;

/// How one transfer attempt ended for its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Heard {
    Completed,
    Failed,
    Pending,
    Error(String),
}

#[derive(Debug, Clone)]
struct Attempt {
    transfer_id: String,
    from: usize,
    to: usize,
    heard: Heard,
}

/// The bank workload.
#[derive(Debug)]
pub struct Bank {
    clients: Vec<LedgerClient<Channel>>,
    next: AtomicUsize,
    api_key: String,
    accounts: usize,
    initial: i64,
    max_amount: i64,
    timeout: Duration,
    run_id: String,
    attempts: Mutex<Vec<Attempt>>,
}

/// What the check found.
#[derive(Debug, Default)]
pub struct Verdict {
    pub violations: Vec<String>,
    pub summary: BTreeMap<String, usize>,
}

impl Bank {
    /// Connects (lazily) to every gateway.
    pub fn new(
        gateways: &[String],
        api_key: &str,
        accounts: usize,
        initial: i64,
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
            "bank{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis())
        );
        Ok(Self {
            clients,
            next: AtomicUsize::new(0),
            api_key: api_key.to_string(),
            accounts: accounts.max(2),
            initial,
            max_amount: (initial / 10).max(1),
            timeout,
            run_id,
            attempts: Mutex::new(Vec::new()),
        })
    }

    fn client(&self) -> LedgerClient<Channel> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len().max(1);
        self.clients[i].clone()
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

    fn account(i: usize) -> String {
        format!("bank-{i}")
    }

    /// Retries a setup or check call until it answers (bounded).
    async fn patiently<T, F, Fut>(&self, what: &str, call: F) -> Result<T, String>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let mut last = String::new();
        for _ in 0..60 {
            match call().await {
                Ok(v) => return Ok(v),
                Err(s)
                    if matches!(
                        s.code(),
                        Code::Unavailable
                            | Code::DeadlineExceeded
                            | Code::Cancelled
                            | Code::Aborted
                    ) =>
                {
                    last = format!("{:?}: {}", s.code(), s.message());
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(s) => return Err(format!("{what}: {:?}: {}", s.code(), s.message())),
            }
        }
        Err(format!("{what}: still failing after 30 s: {last}"))
    }

    /// Opens every account and deposits the initial balance (idempotent).
    pub async fn setup(&self) -> Result<(), String> {
        for i in 0..self.accounts {
            let create = api::CreateAccountRequest {
                request_id: format!("bank-open-{i}"),
                account_id: Self::account(i),
            };
            match self.client().create_account(self.request(create)?).await {
                Ok(_) => {}
                Err(s) if s.code() == Code::AlreadyExists => {}
                Err(s) => {
                    return Err(format!(
                        "opening {}: {:?}: {}",
                        Self::account(i),
                        s.code(),
                        s.message()
                    ));
                }
            }
            let fund = api::DepositRequest {
                request_id: format!("bank-fund-{i}"),
                account_id: Self::account(i),
                amount: self.initial,
            };
            self.patiently("funding", || async {
                self.client()
                    .deposit(
                        self.request(fund.clone())
                            .map_err(tonic::Status::internal)?,
                    )
                    .await
            })
            .await?;
        }
        Ok(())
    }

    /// Waits until no transfer is pending, then checks every invariant.
    pub async fn check(&self, settle: Duration) -> Verdict {
        let mut verdict = Verdict::default();
        let attempts = self.attempts.lock().map(|a| a.clone()).unwrap_or_default();
        for a in &attempts {
            let label = match &a.heard {
                Heard::Completed => "acknowledged COMPLETED".to_string(),
                Heard::Failed => "refused (overdraft) or acknowledged FAILED".to_string(),
                Heard::Pending => "answered PENDING".to_string(),
                Heard::Error(kind) => format!("no answer ({kind})"),
            };
            *verdict.summary.entry(label).or_default() += 1;
        }
        let finals = self.settle(&attempts, settle, &mut verdict).await;
        self.check_balances_and_histories(&attempts, &finals, &mut verdict)
            .await;
        verdict
    }

    /// The final status of every attempted transfer (None = it never began).
    async fn settle(
        &self,
        attempts: &[Attempt],
        settle: Duration,
        verdict: &mut Verdict,
    ) -> HashMap<String, Option<api::Transfer>> {
        let until = Instant::now() + settle;
        let mut finals = HashMap::new();
        let mut open: Vec<&Attempt> = attempts.iter().collect();
        while !open.is_empty() {
            let mut still = Vec::new();
            for a in open {
                match self.ended(&a.transfer_id).await {
                    Some(end) => {
                        finals.insert(a.transfer_id.clone(), end);
                    }
                    None => still.push(a),
                }
            }
            if still.is_empty() {
                break;
            }
            if Instant::now() > until {
                for a in &still {
                    verdict.violations.push(format!(
                        "transfer {} is still PENDING (or unreadable) after {settle:?}",
                        a.transfer_id
                    ));
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            open = still;
        }
        let ended = finals.values().flatten().count();
        *verdict
            .summary
            .entry("transfers that exist and ended".into())
            .or_default() += ended;
        finals
    }

    /// How transfer `id` ended: `Some(Some(t))` ended as `t`, `Some(None)`
    /// never existed; `None` while it is PENDING or cannot be read.
    async fn ended(&self, id: &str) -> Option<Option<api::Transfer>> {
        let get = api::GetTransferRequest {
            transfer_id: id.to_string(),
        };
        let answer = match self.request(get) {
            Ok(r) => self.client().get_transfer(r).await,
            Err(e) => Err(tonic::Status::internal(e)),
        };
        match answer {
            Ok(t) if t.get_ref().status() == api::TransferStatus::Pending => None,
            Ok(t) => Some(Some(t.into_inner())),
            Err(s) if s.code() == Code::NotFound => Some(None),
            Err(_) => None,
        }
    }

    /// Invariants 1, 2, 4 and 5, account by account, then across them.
    async fn check_balances_and_histories(
        &self,
        attempts: &[Attempt],
        finals: &HashMap<String, Option<api::Transfer>>,
        verdict: &mut Verdict,
    ) {
        let mut total = 0;
        let mut in_history: HashMap<usize, HashSet<String>> = HashMap::new();
        for i in 0..self.accounts {
            let Some((balance, transfers)) = self.check_account(i, verdict).await else {
                continue;
            };
            total += balance;
            if let Some(transfers) = transfers {
                in_history.insert(i, transfers);
            }
        }
        let expected = self.initial * self.accounts as i64;
        if total != expected {
            verdict.violations.push(format!(
                "the balances sum to {total}, but {expected} was deposited"
            ));
        }
        Self::check_completed_recorded(attempts, finals, &in_history, verdict);
    }

    /// One account: its balance (never negative) and, if its history could
    /// be read, the transfers in it (the history must replay to the balance).
    async fn check_account(
        &self,
        i: usize,
        verdict: &mut Verdict,
    ) -> Option<(i64, Option<HashSet<String>>)> {
        let name = Self::account(i);
        let account = match self.read_account(&name).await {
            Ok(a) => a,
            Err(e) => {
                verdict.violations.push(e);
                return None;
            }
        };
        if account.balance < 0 {
            verdict
                .violations
                .push(format!("{name} has a negative balance {}", account.balance));
        }
        let transfers = match self.history(&name).await {
            Ok(entries) => {
                check_replay(&name, &entries, account.balance, verdict);
                Some(
                    entries
                        .into_iter()
                        .map(|e| e.transfer_id)
                        .filter(|t| !t.is_empty())
                        .collect(),
                )
            }
            Err(e) => {
                verdict.violations.push(e);
                None
            }
        };
        Some((account.balance, transfers))
    }

    async fn read_account(&self, name: &str) -> Result<api::Account, String> {
        self.patiently("reading an account", || async {
            let r = self
                .request(api::GetAccountRequest {
                    account_id: name.to_string(),
                })
                .map_err(tonic::Status::internal)?;
            self.client().get_account(r).await
        })
        .await
        .map(|a| a.into_inner())
    }

    /// Every transfer acknowledged COMPLETED ended COMPLETED, and every
    /// COMPLETED one is in both accounts' histories.
    fn check_completed_recorded(
        attempts: &[Attempt],
        finals: &HashMap<String, Option<api::Transfer>>,
        in_history: &HashMap<usize, HashSet<String>>,
        verdict: &mut Verdict,
    ) {
        for a in attempts {
            let completed = matches!(finals.get(&a.transfer_id), Some(Some(t)) if t.status() == api::TransferStatus::Completed);
            if a.heard == Heard::Completed && !completed {
                verdict.violations.push(format!(
                    "{} was acknowledged COMPLETED but ended otherwise",
                    a.transfer_id
                ));
            }
            if !completed {
                continue;
            }
            for side in [a.from, a.to] {
                if !in_history
                    .get(&side)
                    .is_some_and(|h| h.contains(&a.transfer_id))
                {
                    verdict.violations.push(format!(
                        "COMPLETED {} is missing from {}'s history",
                        a.transfer_id,
                        Self::account(side)
                    ));
                }
            }
        }
    }

    /// Every entry of an account, newest first.
    async fn history(&self, account: &str) -> Result<Vec<api::Entry>, String> {
        let mut entries = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .patiently("reading a history", || async {
                    let r = self
                        .request(api::ListEntriesRequest {
                            account_id: account.to_string(),
                            page_size: 500,
                            page_token: token.clone(),
                        })
                        .map_err(tonic::Status::internal)?;
                    self.client().list_entries(r).await
                })
                .await?
                .into_inner();
            entries.extend(page.entries);
            if page.next_page_token.is_empty() {
                return Ok(entries);
            }
            token = page.next_page_token;
        }
    }
}

/// An account's entries (newest first) replay to its balance: each
/// entry's balance-after is the sum of the amounts up to it.
fn check_replay(name: &str, entries: &[api::Entry], balance: i64, verdict: &mut Verdict) {
    let mut running = 0;
    for e in entries.iter().rev() {
        running += e.amount;
        if e.balance_after != running {
            verdict.violations.push(format!(
                "{name}: entry {} says balance {} but the entries before it sum to {running}",
                e.sequence, e.balance_after
            ));
            break;
        }
    }
    if running != balance {
        verdict.violations.push(format!(
            "{name}: balance {balance} but its history sums to {running}"
        ));
    }
}

impl Target for Bank {
    async fn call(&self, n: u64) -> Result<(), String> {
        let (from, to, amount) = {
            let mut rng = rand::rng();
            let from = rng.random_range(0..self.accounts);
            let to = (from + rng.random_range(1..self.accounts)) % self.accounts;
            (from, to, rng.random_range(1..=self.max_amount))
        };
        let request_id = format!("{}-{n}", self.run_id);
        let transfer_id = format!("{}~{request_id}", Self::account(from));
        let message = api::TransferRequest {
            request_id,
            from_account_id: Self::account(from),
            to_account_id: Self::account(to),
            amount,
        };
        let answer = self.client().transfer(self.request(message)?).await;
        let heard = match &answer {
            Ok(t) => match t.get_ref().status() {
                api::TransferStatus::Completed => Heard::Completed,
                api::TransferStatus::Failed => Heard::Failed,
                _ => Heard::Pending,
            },
            // Refused outright (an overdraft): nothing began.
            Err(s) if s.code() == Code::FailedPrecondition => Heard::Failed,
            Err(s) => Heard::Error(kind(s)),
        };
        if let Ok(mut attempts) = self.attempts.lock() {
            attempts.push(Attempt {
                transfer_id,
                from,
                to,
                heard: heard.clone(),
            });
        }
        match (answer, heard) {
            (Ok(_), _) | (Err(_), Heard::Failed) => Ok(()),
            (Err(s), _) => Err(kind(&s)),
        }
    }
}
