//! Transfers, and the saga that carries them across shards.
//!
//! Same shard: one atomic change debits the source, credits the
//! destination and records the transfer COMPLETED.
//!
//! Across shards there is no atomic change, so the transfer is a saga of
//! steps, each an atomic change on one shard, each safe to repeat:
//!
//! 1. **Begin** (source shard): debit the source, write the transfer
//!    PENDING, a pending mark and the receipt.
//! 2. **Decide** (destination shard): credit the destination and write the
//!    inbound mark `Credited` — or, if the destination can never take the
//!    money (gone, closed), write the inbound mark `Rejected`. Both are
//!    written only where no inbound mark exists, so whichever executor gets
//!    there first decides, and a transfer is never both credited and
//!    refunded.
//! 3. **End** (source shard): on `Credited`, mark the transfer COMPLETED; on
//!    `Rejected`, refund the source and mark it FAILED. Either way the
//!    pending mark goes.
//!
//! The caller's Transfer runs the steps until the transfer ends or its
//! deadline runs out (then it answers PENDING). A recovery worker in every
//! business replica (`recover_pending`) finds transfers still pending after
//! a while — their executor crashed, or gave up — and runs the same steps.
//! Several executors at once are safe: every step is conditional on the
//! versions it read, and on conflict re-reads and continues from there.

use std::time::{Duration, SystemTime};

use super::ledger::{Ledger, not_found};
use super::ports::{Change, Clock, Commit, Deadline, Record, RecordKey, Store};
use super::records::{self, split};
use crate::domain::receipt::transfer_fingerprint;
use crate::domain::{
    Account, AccountId, AccountKey, Amount, Cause, DomainError, Inbound, Outcome, PendingMark,
    Receipt, RequestId, TenantId, Transfer, TransferId, TransferStatus,
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

/// What a recovery pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Pending transfers old enough to take over.
    pub found: usize,
    /// Of those, the ones that ended.
    pub ended: usize,
    /// Shards that could not be scanned.
    pub missing_shards: usize,
}

fn key(tenant: &TenantId, account: &AccountId) -> AccountKey {
    AccountKey {
        tenant: tenant.clone(),
        account: account.clone(),
    }
}

impl<S: Store, C: Clock> Ledger<S, C> {
    /// Moves money; returns the transfer COMPLETED, FAILED, or PENDING if
    /// the deadline ran out first.
    pub async fn transfer(
        &self,
        cmd: TransferCmd,
        deadline: Deadline,
    ) -> Result<Transfer, DomainError> {
        if cmd.from == cmd.to {
            return Err(DomainError::SelfTransfer);
        }
        let id = TransferId {
            from: cmd.from.clone(),
            request_id: cmd.request_id.clone(),
        };
        let from = key(&cmd.tenant, &cmd.from);
        let to = key(&cmd.tenant, &cmd.to);
        let fp = transfer_fingerprint(&from, &cmd.to, cmd.amount);
        for _ in 0..self.max_attempts {
            let reads = vec![
                RecordKey::Account(from.clone()),
                RecordKey::Receipt(from.clone(), cmd.request_id.clone()),
                RecordKey::Transfer(cmd.tenant.clone(), id.clone()),
            ];
            let [account, receipt, existing] = split(self.store.read(reads, deadline).await?)?;
            if let Some(receipt) = records::receipt(receipt)?
                && receipt.value.fingerprint != fp
            {
                return Err(DomainError::RequestIdReused {
                    request_id: cmd.request_id.to_string(),
                    previous: receipt.value.fingerprint,
                });
            }
            if let Some(existing) = records::transfer(existing)? {
                return self.drive(&cmd.tenant, existing.value, deadline).await;
            }
            let source = records::account(account)?.ok_or_else(|| not_found(&from))?;
            let [destination] = split(
                self.store
                    .read(vec![RecordKey::Account(to.clone())], deadline)
                    .await?,
            )?;
            let destination = records::account(destination)?.ok_or_else(|| not_found(&to))?;
            destination.value.ensure_open()?;
            let now = self.clock.now();
            let (debited, debit) = source
                .value
                .withdraw(cmd.amount, Cause::transfer(&id), now)?;
            let transfer = Transfer {
                id: id.clone(),
                to: cmd.to.clone(),
                amount: cmd.amount,
                status: TransferStatus::Pending,
                created_at: now,
                updated_at: now,
            };
            let receipt = Receipt {
                request_id: cmd.request_id.clone(),
                fingerprint: fp.clone(),
                outcome: Outcome::Transfer(id.clone()),
            };
            let begin = Change::default()
                .expect(RecordKey::Account(from.clone()), source.version)
                .expect(RecordKey::Receipt(from.clone(), cmd.request_id.clone()), 0)
                .expect(RecordKey::Transfer(cmd.tenant.clone(), id.clone()), 0)
                .put(RecordKey::Account(from.clone()), Record::Account(debited))
                .put(
                    RecordKey::Entry(from.clone(), debit.sequence),
                    Record::Entry(debit),
                )
                .put(
                    RecordKey::Receipt(from.clone(), cmd.request_id.clone()),
                    Record::Receipt(receipt),
                );
            if self.store.colocated(&from, &to) {
                let done = transfer.with_status(TransferStatus::Completed, now);
                let commit = self.credit(
                    begin,
                    &to,
                    &destination.value,
                    destination.version,
                    &done,
                    now,
                )?;
                let commit = commit.put(
                    RecordKey::Transfer(cmd.tenant.clone(), id.clone()),
                    Record::Transfer(done.clone()),
                );
                match self.store.commit(commit, deadline).await? {
                    Commit::Done => return Ok(done),
                    Commit::Conflict => continue,
                }
            }
            let begin = begin
                .put(
                    RecordKey::Transfer(cmd.tenant.clone(), id.clone()),
                    Record::Transfer(transfer.clone()),
                )
                .put(
                    RecordKey::Pending(cmd.tenant.clone(), id.clone()),
                    Record::Pending(PendingMark { since: now }),
                );
            match self.store.commit(begin, deadline).await? {
                Commit::Done => return self.drive(&cmd.tenant, transfer, deadline).await,
                Commit::Conflict => continue,
            }
        }
        Err(DomainError::Contention {
            account_id: cmd.from.to_string(),
            attempts: self.max_attempts,
        })
    }

    /// Adds to `change` the credit of `to` and its inbound mark.
    fn credit(
        &self,
        change: Change,
        to: &AccountKey,
        destination: &Account,
        version: u64,
        transfer: &Transfer,
        now: SystemTime,
    ) -> Result<Change, DomainError> {
        let (credited, entry) =
            destination.deposit(transfer.amount, Cause::transfer(&transfer.id), now)?;
        Ok(change
            .expect(RecordKey::Account(to.clone()), version)
            .expect(RecordKey::Inbound(to.clone(), transfer.id.clone()), 0)
            .put(RecordKey::Account(to.clone()), Record::Account(credited))
            .put(
                RecordKey::Entry(to.clone(), entry.sequence),
                Record::Entry(entry),
            )
            .put(
                RecordKey::Inbound(to.clone(), transfer.id.clone()),
                Record::Inbound(Inbound::Credited),
            ))
    }

    /// Reads a transfer.
    pub async fn get_transfer(
        &self,
        tenant: TenantId,
        id: TransferId,
        deadline: Deadline,
    ) -> Result<Transfer, DomainError> {
        let [slot] = split(
            self.store
                .read(vec![RecordKey::Transfer(tenant, id.clone())], deadline)
                .await?,
        )?;
        records::transfer(slot)?
            .map(|v| v.value)
            .ok_or_else(|| DomainError::TransferNotFound {
                transfer_id: id.to_string(),
            })
    }

    /// Runs the saga's steps until the transfer ends or the deadline passes.
    pub async fn drive(
        &self,
        tenant: &TenantId,
        mut transfer: Transfer,
        deadline: Deadline,
    ) -> Result<Transfer, DomainError> {
        // Each step either ends the transfer or moves it on; conflicts with
        // other executors cost a re-read. Bounded, in case of a livelock.
        for _ in 0..self.max_attempts * 4 {
            if transfer.is_done() || deadline.passed() {
                return Ok(transfer);
            }
            if !self.step_pause.is_zero() {
                tokio::time::sleep(self.step_pause.min(deadline.remaining())).await;
            }
            match self.step(tenant, &transfer, deadline).await {
                Ok(()) => {}
                // The debit is durable and the worker will finish: report PENDING.
                Err(DomainError::Unavailable(_)) => return Ok(transfer),
                Err(e) => return Err(e),
            }
            transfer = self
                .get_transfer(tenant.clone(), transfer.id.clone(), deadline)
                .await?;
        }
        Ok(transfer)
    }

    /// One step forward for a pending transfer.
    async fn step(
        &self,
        tenant: &TenantId,
        transfer: &Transfer,
        deadline: Deadline,
    ) -> Result<(), DomainError> {
        let to = key(tenant, &transfer.to);
        let reads = vec![
            RecordKey::Inbound(to.clone(), transfer.id.clone()),
            RecordKey::Account(to.clone()),
        ];
        let [inbound, destination] = split(self.store.read(reads, deadline).await?)?;
        let now = self.clock.now();
        match records::inbound(inbound)?.map(|v| v.value) {
            None => {
                let destination = records::account(destination)?;
                let decision = match &destination {
                    Some(d) => d.value.ensure_open().and_then(|()| {
                        self.credit(Change::default(), &to, &d.value, d.version, transfer, now)
                    }),
                    None => Err(not_found(&to)),
                };
                let change = decision.unwrap_or_else(|reason| {
                    Change::default()
                        .expect(RecordKey::Inbound(to.clone(), transfer.id.clone()), 0)
                        .put(
                            RecordKey::Inbound(to.clone(), transfer.id.clone()),
                            Record::Inbound(Inbound::Rejected {
                                reason: reason.to_string(),
                            }),
                        )
                });
                self.store.commit(change, deadline).await?;
            }
            Some(Inbound::Credited) => {
                self.end(tenant, transfer, TransferStatus::Completed, deadline)
                    .await?;
            }
            Some(Inbound::Rejected { reason }) => {
                self.end(
                    tenant,
                    transfer,
                    TransferStatus::Failed { reason },
                    deadline,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// The saga's last step, on the source shard: COMPLETED, or refund and FAILED.
    async fn end(
        &self,
        tenant: &TenantId,
        transfer: &Transfer,
        status: TransferStatus,
        deadline: Deadline,
    ) -> Result<(), DomainError> {
        let from = key(tenant, transfer.from());
        let transfer_key = RecordKey::Transfer(tenant.clone(), transfer.id.clone());
        let reads = vec![transfer_key.clone(), RecordKey::Account(from.clone())];
        let [current, source] = split(self.store.read(reads, deadline).await?)?;
        let Some(current) = records::transfer(current)? else {
            return Err(DomainError::Internal(format!(
                "transfer {} vanished",
                transfer.id
            )));
        };
        if current.value.is_done() {
            return Ok(());
        }
        let now = self.clock.now();
        let refund = matches!(status, TransferStatus::Failed { .. });
        let mut change = Change::default()
            .expect(transfer_key.clone(), current.version)
            .put(
                transfer_key,
                Record::Transfer(current.value.with_status(status, now)),
            )
            .delete(RecordKey::Pending(tenant.clone(), transfer.id.clone()));
        if refund {
            let source = records::account(source)?.ok_or_else(|| not_found(&from))?;
            let (refunded, entry) =
                source
                    .value
                    .booked(transfer.amount.get(), Cause::transfer(&transfer.id), now)?;
            change = change
                .expect(RecordKey::Account(from.clone()), source.version)
                .put(RecordKey::Account(from.clone()), Record::Account(refunded))
                .put(RecordKey::Entry(from, entry.sequence), Record::Entry(entry));
        }
        self.store.commit(change, deadline).await?;
        Ok(())
    }

    /// One recovery pass: drives every transfer pending for longer than
    /// `older_than` to its end (within `deadline`).
    pub async fn recover_pending(
        &self,
        older_than: Duration,
        deadline: Deadline,
    ) -> Result<Recovered, DomainError> {
        let pending = self.store.list_pending(1000, deadline).await?;
        let cutoff = self
            .clock
            .now()
            .checked_sub(older_than)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut report = Recovered {
            missing_shards: pending.missing_shards.len(),
            ..Recovered::default()
        };
        for (tenant, id, mark) in pending.transfers {
            if mark.since > cutoff || deadline.passed() {
                continue;
            }
            report.found += 1;
            let transfer = match self.get_transfer(tenant.clone(), id, deadline).await {
                Ok(t) => t,
                Err(DomainError::TransferNotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            if self.drive(&tenant, transfer, deadline).await?.is_done() {
                report.ended += 1;
            }
        }
        Ok(report)
    }
}
