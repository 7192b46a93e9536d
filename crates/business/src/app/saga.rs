//! The transfer saga's decisions, as pure functions: given what a step read
//! and the time, the change that step commits. No I/O here —
//! `transfers.rs` reads, asks these, and commits — so every decision is
//! unit-tested below without a store.

use std::time::SystemTime;

use super::ports::{Change, Record, RecordKey, Versioned};
use crate::domain::{
    Account, AccountKey, Cause, DomainError, Inbound, Outcome, PendingMark, Receipt, TenantId,
    Transfer, TransferId, TransferStatus,
};

use super::transfers::TransferCmd;

/// What a Transfer found in the source's partition and the destination's
/// account, and what it asks for.
#[derive(Debug, Clone, Copy)]
pub struct Begin<'a> {
    pub cmd: &'a TransferCmd,
    /// The request's fingerprint (its receipt keeps it).
    pub fingerprint: &'a str,
    pub source: &'a Versioned<Account>,
    pub destination: &'a Versioned<Account>,
    /// Both accounts' records live on one shard: one change does it all.
    pub colocated: bool,
    pub now: SystemTime,
}

/// The first change of a transfer, and the transfer as it records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begun {
    pub change: Change,
    /// COMPLETED when the change did it all (one shard), else PENDING.
    pub transfer: Transfer,
}

/// The account key of `account` in `tenant`.
pub fn key(tenant: &TenantId, account: &crate::domain::AccountId) -> AccountKey {
    AccountKey {
        tenant: tenant.clone(),
        account: account.clone(),
    }
}

/// A replay must ask for what the request asked the first time.
pub fn check_replay(receipt: Option<&Receipt>, fingerprint: &str) -> Result<(), DomainError> {
    match receipt {
        Some(r) if r.fingerprint != fingerprint => Err(DomainError::RequestIdReused {
            request_id: r.request_id.to_string(),
            previous: r.fingerprint.clone(),
        }),
        _ => Ok(()),
    }
}

/// Step 1 (and on one shard, the whole transfer): debit the source, record
/// the transfer and the request's receipt; on one shard also credit the
/// destination and record the transfer COMPLETED, across shards record it
/// PENDING with a pending mark.
pub fn begin(b: Begin<'_>) -> Result<Begun, DomainError> {
    let Begin {
        cmd,
        fingerprint,
        source,
        destination,
        colocated,
        now,
    } = b;
    destination.value.ensure_open()?;
    let id = cmd.transfer_id();
    let from = key(&cmd.tenant, &cmd.from);
    // Across shards the money stays in flight (counted against the
    // source's ceiling) until the transfer ends; on one shard it arrives in
    // the same change.
    let (debited, debit) = if colocated {
        source
            .value
            .withdraw(cmd.amount, Cause::transfer(&id), now)?
    } else {
        source.value.send(cmd.amount, Cause::transfer(&id), now)?
    };
    let pending = Transfer {
        id: id.clone(),
        to: cmd.to.clone(),
        amount: cmd.amount,
        status: TransferStatus::Pending,
        created_at: now,
        updated_at: now,
    };
    let receipt = Receipt {
        request_id: cmd.request_id.clone(),
        fingerprint: fingerprint.to_string(),
        outcome: Outcome::Transfer(id.clone()),
    };
    let transfer_key = RecordKey::Transfer(cmd.tenant.clone(), id.clone());
    let receipt_key = RecordKey::Receipt(from.clone(), cmd.request_id.clone());
    let change = Change::default()
        .if_version(RecordKey::Account(from.clone()), source.version)
        .if_version(receipt_key.clone(), 0)
        .if_version(transfer_key.clone(), 0)
        .put(RecordKey::Account(from.clone()), Record::Account(debited))
        .put(RecordKey::Entry(from, debit.sequence), Record::Entry(debit))
        .put(receipt_key, Record::Receipt(receipt));
    if colocated {
        let done = pending.with_status(TransferStatus::Completed, now);
        let to = key(&cmd.tenant, &cmd.to);
        let change = credit(change, &to, destination, &done, now)?
            .put(transfer_key, Record::Transfer(done.clone()));
        return Ok(Begun {
            change,
            transfer: done,
        });
    }
    let change = change
        .put(transfer_key, Record::Transfer(pending.clone()))
        .put(
            RecordKey::Pending(cmd.tenant.clone(), id),
            Record::Pending(PendingMark::new(now)),
        );
    Ok(Begun {
        change,
        transfer: pending,
    })
}

/// Adds to `change` the credit of `to` and its inbound mark Credited.
pub fn credit(
    change: Change,
    to: &AccountKey,
    destination: &Versioned<Account>,
    transfer: &Transfer,
    now: SystemTime,
) -> Result<Change, DomainError> {
    let (credited, entry) =
        destination
            .value
            .deposit(transfer.amount, Cause::transfer(&transfer.id), now)?;
    Ok(change
        .if_version(RecordKey::Account(to.clone()), destination.version)
        .if_version(RecordKey::Inbound(to.clone(), transfer.id.clone()), 0)
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

/// Step 2, on the destination's shard, where no inbound mark exists yet:
/// credit the destination, or — if it cannot take the money (gone, closed)
/// — mark the transfer Rejected there, saying why.
pub fn decide(
    to: &AccountKey,
    transfer: &Transfer,
    destination: Option<&Versioned<Account>>,
    now: SystemTime,
) -> Change {
    let credited = match destination {
        Some(d) => d
            .value
            .ensure_open()
            .and_then(|()| credit(Change::default(), to, d, transfer, now)),
        None => Err(DomainError::AccountNotFound {
            account_id: to.account.to_string(),
        }),
    };
    credited.unwrap_or_else(|reason| reject(to, &transfer.id, &reason))
}

fn reject(to: &AccountKey, id: &TransferId, reason: &DomainError) -> Change {
    let inbound = RecordKey::Inbound(to.clone(), id.clone());
    Change::default().if_version(inbound.clone(), 0).put(
        inbound,
        Record::Inbound(Inbound::Rejected {
            reason: reason.to_string(),
        }),
    )
}

/// Step 3, on the source's shard, once the destination decided: mark the
/// transfer COMPLETED (Credited), or refund the source and mark it FAILED
/// (Rejected); either way the money is no longer in flight and the pending
/// mark goes. None when the transfer has ended already.
pub fn end(
    tenant: &TenantId,
    current: &Versioned<Transfer>,
    source: Option<&Versioned<Account>>,
    decision: &Inbound,
    now: SystemTime,
) -> Result<Option<Change>, DomainError> {
    if current.value.is_done() {
        return Ok(None);
    }
    let transfer = &current.value;
    let id = &transfer.id;
    let from = key(tenant, transfer.from());
    let source = source.ok_or_else(|| DomainError::AccountNotFound {
        account_id: from.account.to_string(),
    })?;
    let (status, settled, refund) = match decision {
        Inbound::Credited => (
            TransferStatus::Completed,
            source.value.delivered(transfer.amount, now),
            None,
        ),
        Inbound::Rejected { reason } => {
            let (refunded, entry) =
                source
                    .value
                    .refund(transfer.amount, Cause::transfer(id), now)?;
            let status = TransferStatus::Failed {
                reason: reason.clone(),
            };
            (status, refunded, Some(entry))
        }
    };
    let transfer_key = RecordKey::Transfer(tenant.clone(), id.clone());
    let mut change = Change::default()
        .if_version(transfer_key.clone(), current.version)
        .if_version(RecordKey::Account(from.clone()), source.version)
        .put(
            transfer_key,
            Record::Transfer(transfer.with_status(status, now)),
        )
        .put(RecordKey::Account(from.clone()), Record::Account(settled))
        .delete(RecordKey::Pending(tenant.clone(), id.clone()));
    if let Some(entry) = refund {
        change = change.put(RecordKey::Entry(from, entry.sequence), Record::Entry(entry));
    }
    Ok(Some(change))
}

#[cfg(test)]
mod tests {
    use super::super::ports::Write;
    use super::*;
    use crate::domain::{AccountId, Amount, RequestId};

    const NOW: SystemTime = SystemTime::UNIX_EPOCH;

    fn tenant() -> TenantId {
        TenantId::parse("acme").expect("tenant")
    }

    fn account(id: &str, balance: i64, version: u64) -> Versioned<Account> {
        let mut value = Account::open(AccountId::parse(id).expect("id"), NOW);
        value.balance = balance;
        Versioned { value, version }
    }

    fn cmd(amount: i64) -> TransferCmd {
        TransferCmd {
            tenant: tenant(),
            request_id: RequestId::parse("t1").expect("rid"),
            from: AccountId::parse("alice").expect("id"),
            to: AccountId::parse("zoe").expect("id"),
            amount: Amount::parse(amount).expect("amount"),
        }
    }

    fn begun(amount: i64, colocated: bool) -> Result<Begun, DomainError> {
        let c = cmd(amount);
        begin(Begin {
            cmd: &c,
            fingerprint: "fp",
            source: &account("alice", 100, 7),
            destination: &account("zoe", 0, 3),
            colocated,
            now: NOW,
        })
    }

    fn put_account(change: &Change, id: &str) -> Option<Account> {
        change.writes.iter().find_map(|w| match w {
            Write::Put(RecordKey::Account(k), Record::Account(a)) if k.account.as_str() == id => {
                Some(a.clone())
            }
            _ => None,
        })
    }

    fn puts_pending(change: &Change) -> bool {
        change
            .writes
            .iter()
            .any(|w| matches!(w, Write::Put(RecordKey::Pending(..), _)))
    }

    #[test]
    fn across_shards_begin_debits_and_leaves_the_transfer_pending() {
        let b = begun(40, false).expect("begin");
        assert_eq!(b.transfer.status, TransferStatus::Pending);
        let alice = put_account(&b.change, "alice").expect("debited");
        assert_eq!(
            (alice.balance, alice.in_flight_out),
            (60, 40),
            "40 in flight"
        );
        assert_eq!(put_account(&b.change, "zoe"), None, "no credit yet");
        assert!(puts_pending(&b.change), "the recovery worker's to-do mark");
        assert!(
            b.change
                .conditions
                .contains(&(RecordKey::Account(key(&tenant(), &cmd(1).from)), 7)),
            "conditional on the source read"
        );
    }

    #[test]
    fn on_one_shard_begin_does_it_all() {
        let b = begun(40, true).expect("begin");
        assert_eq!(b.transfer.status, TransferStatus::Completed);
        assert_eq!(put_account(&b.change, "zoe").map(|a| a.balance), Some(40));
        assert_eq!(
            put_account(&b.change, "alice").map(|a| a.in_flight_out),
            Some(0),
            "nothing in flight on one shard"
        );
        assert!(!puts_pending(&b.change));
    }

    #[test]
    fn begin_refuses_an_overdraft_and_a_closed_destination() {
        assert!(matches!(
            begun(101, false),
            Err(DomainError::InsufficientFunds { .. })
        ));
        let c = cmd(1);
        let mut closed = account("zoe", 0, 3);
        closed.value = closed.value.close(NOW).expect("close");
        let refused = begin(Begin {
            cmd: &c,
            fingerprint: "fp",
            source: &account("alice", 100, 7),
            destination: &closed,
            colocated: false,
            now: NOW,
        });
        assert!(matches!(refused, Err(DomainError::AccountClosed { .. })));
    }

    #[test]
    fn a_replay_must_ask_the_same() {
        let receipt = Receipt {
            request_id: RequestId::parse("t1").expect("rid"),
            fingerprint: "fp".into(),
            outcome: Outcome::Transfer(cmd(1).transfer_id()),
        };
        assert!(check_replay(None, "fp").is_ok());
        assert!(check_replay(Some(&receipt), "fp").is_ok());
        assert!(matches!(
            check_replay(Some(&receipt), "other"),
            Err(DomainError::RequestIdReused { .. })
        ));
    }

    fn inbound_of(change: &Change) -> Option<Inbound> {
        change.writes.iter().find_map(|w| match w {
            Write::Put(RecordKey::Inbound(..), Record::Inbound(i)) => Some(i.clone()),
            _ => None,
        })
    }

    #[test]
    fn the_destination_decides_credit_or_rejection() {
        let t = begun(40, false).expect("begin").transfer;
        let to = key(&tenant(), &t.to);
        let open = account("zoe", 5, 3);
        let credit = decide(&to, &t, Some(&open), NOW);
        assert_eq!(inbound_of(&credit), Some(Inbound::Credited));
        assert_eq!(put_account(&credit, "zoe").map(|a| a.balance), Some(45));
        let gone = decide(&to, &t, None, NOW);
        assert!(
            matches!(inbound_of(&gone), Some(Inbound::Rejected { reason }) if reason.contains("not found"))
        );
        assert_eq!(
            put_account(&gone, "zoe"),
            None,
            "a rejection credits nothing"
        );
        for change in [&credit, &gone] {
            assert!(
                change
                    .conditions
                    .contains(&(RecordKey::Inbound(to.clone(), t.id.clone()), 0)),
                "only where no decision exists yet"
            );
        }
    }

    #[test]
    fn the_end_completes_or_refunds_and_removes_the_mark() {
        let t = begun(40, false).expect("begin").transfer;
        let current = Versioned {
            value: t.clone(),
            version: 9,
        };
        let mut source = account("alice", 60, 8);
        source.value.in_flight_out = 40;
        let done = end(&tenant(), &current, Some(&source), &Inbound::Credited, NOW)
            .expect("end")
            .expect("a change");
        let delivered = put_account(&done, "alice").expect("no longer in flight");
        assert_eq!((delivered.balance, delivered.in_flight_out), (60, 0));
        let rejected = Inbound::Rejected {
            reason: "closed".into(),
        };
        let failed = end(&tenant(), &current, Some(&source), &rejected, NOW)
            .expect("end")
            .expect("a change");
        let refunded = put_account(&failed, "alice").expect("refunded");
        assert_eq!((refunded.balance, refunded.in_flight_out), (100, 0));
        for change in [&done, &failed] {
            assert!(
                change
                    .writes
                    .iter()
                    .any(|w| matches!(w, Write::Delete(RecordKey::Pending(..))))
            );
        }
        let ended = Versioned {
            value: t.with_status(TransferStatus::Completed, NOW),
            version: 10,
        };
        assert_eq!(
            end(&tenant(), &ended, Some(&source), &rejected, NOW),
            Ok(None),
            "nothing to do once it ended"
        );
    }

    #[test]
    fn a_refund_fits_even_when_the_source_was_filled_up_meanwhile() {
        let t = begun(40, false).expect("begin").transfer;
        let current = Versioned {
            value: t,
            version: 9,
        };
        // The most a deposit could bring it to while 40 were in flight.
        let mut full = account("alice", i64::MAX - 40, 8);
        full.value.in_flight_out = 40;
        let rejected = Inbound::Rejected {
            reason: "the destination is full".into(),
        };
        let failed = end(&tenant(), &current, Some(&full), &rejected, NOW)
            .expect("a refund cannot fail")
            .expect("a change");
        let refunded = put_account(&failed, "alice").expect("refunded");
        assert_eq!((refunded.balance, refunded.in_flight_out), (i64::MAX, 0));
    }
}
