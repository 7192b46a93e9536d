//! Transfers, and the saga that carries them across shards.
//!
//! Same shard: one atomic change debits the source, credits the
//! destination and records the transfer COMPLETED.
//!
//! Across shards there is no atomic change, so the transfer is a saga of
//! steps, each an atomic change on one shard, each safe to repeat:
//!
//! 1. **Begin** (source shard): debit the source (the money is now in
//!    flight, counted against its ceiling), write the transfer PENDING, a
//!    pending mark and the receipt.
//! 2. **Decide** (destination shard): credit the destination and write the
//!    inbound mark `Credited` — or, if the destination cannot take the
//!    money (gone, closed, at its ceiling), write the inbound mark `Rejected`. Both are
//!    written only where no inbound mark exists, so whichever executor gets
//!    there first decides, and a transfer is never both credited and
//!    refunded.
//! 3. **End** (source shard): on `Credited`, mark the transfer COMPLETED; on
//!    `Rejected`, refund the source (which always fits: see
//!    `domain::account`) and mark it FAILED. Either way the money is no
//!    longer in flight and the pending mark goes.
//!
//! The caller's Transfer runs the steps until the transfer ends or its
//! deadline runs out (then it answers PENDING). A recovery worker in every
//! business replica (`recovery.rs`) finds transfers still pending after a
//! while — their executor crashed, or gave up — and runs the same steps.
//! Several executors at once are safe: every step is conditional on the
//! versions it read, and on conflict re-reads and continues from there.
//!
//! What each step decides is a pure function in `saga.rs`; this file reads,
//! asks it, and commits.

use super::ledger::{Ledger, not_found};
use super::ports::{Clock, Commit, RecordKey, Store, TimeBudget, Versioned};
use super::saga::{self, Begin, key};
use super::typed_reads::{self, split};
use crate::domain::receipt::transfer_fingerprint;
use crate::domain::{
    Account, AccountId, AccountKey, Amount, DomainError, Inbound, Receipt, RequestId, TenantId,
    Transfer, TransferId,
};

/// A transfer request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferCmd {
    pub tenant: TenantId,
    pub request_id: RequestId,
    pub from: AccountId,
    pub to: AccountId,
    pub amount: Amount,
}

impl TransferCmd {
    /// The id of the transfer this request starts.
    pub fn transfer_id(&self) -> TransferId {
        TransferId {
            from: self.from.clone(),
            request_id: self.request_id.clone(),
        }
    }
}

/// Where driving a transfer got to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Driven {
    /// As last read.
    pub transfer: Transfer,
    /// Why storage stopped it, if it did.
    pub unavailable: Option<String>,
}

/// What a Transfer reads in the source account's partition.
struct SourceView {
    account: Option<Versioned<Account>>,
    receipt: Option<Versioned<Receipt>>,
    transfer: Option<Versioned<Transfer>>,
}

impl<S: Store, C: Clock> Ledger<S, C> {
    /// Moves money; returns the transfer COMPLETED, FAILED, or PENDING if
    /// the budget ran out first.
    pub async fn transfer(
        &self,
        cmd: TransferCmd,
        budget: TimeBudget,
    ) -> Result<Transfer, DomainError> {
        if cmd.from == cmd.to {
            return Err(DomainError::SelfTransfer);
        }
        let from = key(&cmd.tenant, &cmd.from);
        let to = key(&cmd.tenant, &cmd.to);
        let fingerprint = transfer_fingerprint(&from, &cmd.to, cmd.amount);
        for _ in 0..self.max_attempts {
            let seen = self.read_source(&cmd, budget).await?;
            saga::check_replay(seen.receipt.as_ref().map(|r| &r.value), &fingerprint)?;
            if let Some(existing) = seen.transfer {
                return self.drive(&cmd.tenant, existing.value, budget).await;
            }
            let source = seen.account.ok_or_else(|| not_found(&from))?;
            let destination = self.read_account(&to, budget).await?;
            let destination = destination.ok_or_else(|| not_found(&to))?;
            let begun = saga::begin(Begin {
                cmd: &cmd,
                fingerprint: &fingerprint,
                source: &source,
                destination: &destination,
                colocated: self.store.colocated(&from, &to),
                now: self.clock.now(),
            })?;
            match self.store.commit(begun.change, budget).await? {
                Commit::Conflict => continue,
                Commit::Done if begun.transfer.is_done() => return Ok(begun.transfer),
                Commit::Done => return self.drive(&cmd.tenant, begun.transfer, budget).await,
            }
        }
        Err(DomainError::Contention {
            account_id: cmd.from.to_string(),
            attempts: self.max_attempts,
        })
    }

    /// The source account, the request's receipt and the transfer, in one read.
    async fn read_source(
        &self,
        cmd: &TransferCmd,
        budget: TimeBudget,
    ) -> Result<SourceView, DomainError> {
        let from = key(&cmd.tenant, &cmd.from);
        let reads = vec![
            RecordKey::Account(from.clone()),
            RecordKey::Receipt(from, cmd.request_id.clone()),
            RecordKey::Transfer(cmd.tenant.clone(), cmd.transfer_id()),
        ];
        let [account, receipt, transfer] = split(self.store.read(reads, budget).await?)?;
        Ok(SourceView {
            account: typed_reads::account(account)?,
            receipt: typed_reads::receipt(receipt)?,
            transfer: typed_reads::transfer(transfer)?,
        })
    }

    /// An account and its version, if it exists.
    async fn read_account(
        &self,
        key: &AccountKey,
        budget: TimeBudget,
    ) -> Result<Option<Versioned<Account>>, DomainError> {
        let [slot] = split(
            self.store
                .read(vec![RecordKey::Account(key.clone())], budget)
                .await?,
        )?;
        typed_reads::account(slot)
    }

    /// Reads a transfer.
    pub async fn get_transfer(
        &self,
        tenant: TenantId,
        id: TransferId,
        budget: TimeBudget,
    ) -> Result<Transfer, DomainError> {
        let [slot] = split(
            self.store
                .read(vec![RecordKey::Transfer(tenant, id.clone())], budget)
                .await?,
        )?;
        typed_reads::transfer(slot)?
            .map(|v| v.value)
            .ok_or_else(|| DomainError::TransferNotFound {
                transfer_id: id.to_string(),
            })
    }

    /// Runs the saga's steps until the transfer ends or its budget is spent;
    /// storage trouble leaves it PENDING (the debit is durable and the
    /// recovery worker will finish it).
    pub async fn drive(
        &self,
        tenant: &TenantId,
        transfer: Transfer,
        budget: TimeBudget,
    ) -> Result<Transfer, DomainError> {
        Ok(self.run_steps(tenant, transfer, budget).await?.transfer)
    }

    /// Runs the saga's steps until the transfer ends, its budget is spent,
    /// or storage is unavailable (which the answer says).
    pub(super) async fn run_steps(
        &self,
        tenant: &TenantId,
        mut transfer: Transfer,
        budget: TimeBudget,
    ) -> Result<Driven, DomainError> {
        // Each step either ends the transfer or moves it on; conflicts with
        // other executors cost a re-read. Bounded, in case of a livelock.
        for _ in 0..self.max_attempts * 4 {
            if transfer.is_done() || budget.is_spent() {
                break;
            }
            if !self.step_pause.is_zero() {
                tokio::time::sleep(self.step_pause.min(budget.remaining())).await;
            }
            match self.step(tenant, &transfer, budget).await {
                Ok(()) => {}
                Err(DomainError::Unavailable(why)) => {
                    return Ok(Driven {
                        transfer,
                        unavailable: Some(why),
                    });
                }
                Err(e) => return Err(e),
            }
            transfer = self
                .get_transfer(tenant.clone(), transfer.id.clone(), budget)
                .await?;
        }
        Ok(Driven {
            transfer,
            unavailable: None,
        })
    }

    /// One step forward for a pending transfer: the destination decides
    /// (step 2), or the source ends it as the destination decided (step 3).
    async fn step(
        &self,
        tenant: &TenantId,
        transfer: &Transfer,
        budget: TimeBudget,
    ) -> Result<(), DomainError> {
        let to = key(tenant, &transfer.to);
        let reads = vec![
            RecordKey::Inbound(to.clone(), transfer.id.clone()),
            RecordKey::Account(to.clone()),
        ];
        let [inbound, destination] = split(self.store.read(reads, budget).await?)?;
        if let Some(decided) = typed_reads::inbound(inbound)? {
            return self.end(tenant, transfer, &decided.value, budget).await;
        }
        let destination = typed_reads::account(destination)?;
        let change = saga::decide(&to, transfer, destination.as_ref(), self.clock.now());
        self.store.commit(change, budget).await?;
        Ok(())
    }

    /// The saga's last step, on the source shard: COMPLETED, or refund and FAILED.
    async fn end(
        &self,
        tenant: &TenantId,
        transfer: &Transfer,
        decision: &Inbound,
        budget: TimeBudget,
    ) -> Result<(), DomainError> {
        let from = key(tenant, transfer.from());
        let reads = vec![
            RecordKey::Transfer(tenant.clone(), transfer.id.clone()),
            RecordKey::Account(from),
        ];
        let [current, source] = split(self.store.read(reads, budget).await?)?;
        let current = typed_reads::transfer(current)?
            .ok_or_else(|| DomainError::Internal(format!("transfer {} vanished", transfer.id)))?;
        let source = typed_reads::account(source)?;
        let now = self.clock.now();
        if let Some(change) = saga::end(tenant, &current, source.as_ref(), decision, now)? {
            self.store.commit(change, budget).await?;
        }
        Ok(())
    }
}
