//! Verify's batched state work: one batched read of everything a batch of messages needs
//! (receipts, epochs, claims, slot counters, block hashes: `BatchGetItem`, one SQLite read
//! transaction), and one all-or-nothing transaction of conditional writes across the tables
//! (`TransactWriteItems`, one SQLite transaction) that reports which condition failed and why.
//!
//! Acceptance is one transaction: the epoch is still `OPEN` (a condition check on the epoch
//! item, the same item the tick moves to `CLOSING`), the (project, slot) claim is absent, the
//! submission id's receipt is absent (so two bodies with one id can never both be accepted, and
//! a receipt never lands on a claim it did not make), and the slot's set of accepted ids stays
//! within its cap. Either all of it is stored or none of it.

use std::collections::BTreeMap;

use sequencer_core::B256;
use sequencer_ports::{Condition, Item, Key, OpStatus, Table, TxOp, TxOutcome};

use super::epochs::{entry, EpochEntry, EpochState};
use super::keys;
use super::receipts::{stored_receipt, Receipt};
use super::submissions::{SubmissionRecord, SubmissionState};
use super::{Expiry, Records};
use crate::pipeline::{json, parse, PipelineError};

/// Something verify reads for a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// The receipt of a submission id.
    Receipt {
        /// Epoch.
        epoch: u64,
        /// Submission id.
        id: String,
    },
    /// An epoch as the tick recorded it.
    Epoch(u64),
    /// The claim of (project, slot) in an epoch.
    Claim {
        /// Epoch.
        epoch: u64,
        /// Project id.
        project: String,
        /// Slot id.
        slot: u64,
    },
    /// The ids counted toward a slot's cap in an epoch.
    Counter {
        /// Epoch.
        epoch: u64,
        /// Slot id.
        slot: u64,
    },
    /// A block hash's number.
    Block(B256),
}

/// What a [`Want`] found (`None`: nothing stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A receipt.
    Receipt(Option<Receipt>),
    /// An epoch.
    Epoch(Option<EpochEntry>),
    /// A claim: its state and record.
    Claim(Option<(SubmissionState, SubmissionRecord)>),
    /// The counted ids (sorted; empty when none).
    Counter(Vec<String>),
    /// A block number.
    Block(Option<u64>),
}

/// One write of an intake transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// The epoch must still be `OPEN` (writes nothing).
    EpochOpen(u64),
    /// The (project, slot) claim, accepted: only if nobody holds it (or, `over_pending`, only
    /// if it is the `PENDING` claim an earlier version of verify left).
    Claim {
        /// Epoch.
        epoch: u64,
        /// Project id.
        project: String,
        /// Slot id.
        slot: u64,
        /// The accepted submission.
        rec: SubmissionRecord,
        /// Replace a `PENDING` claim instead of requiring none.
        over_pending: bool,
    },
    /// A submission id's receipt, only if it has none.
    Receipt {
        /// Epoch.
        epoch: u64,
        /// Submission id.
        id: String,
        /// The receipt.
        receipt: Receipt,
    },
    /// Adds ids to a slot's counted set if it has at most `max_before` ids first.
    Count {
        /// Epoch.
        epoch: u64,
        /// Slot id.
        slot: u64,
        /// Ids to add.
        ids: Vec<String>,
        /// Largest set before the add that is allowed.
        max_before: u64,
    },
}

/// What became of one [`Write`] of a cancelled transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteStatus {
    /// Its condition held.
    Held,
    /// Its condition failed: what is stored there now.
    Failed(Box<Found>),
    /// Another writer held the item: try again.
    Conflict,
}

fn decode(want_table: Table, item: Option<Item>) -> Result<Found, PipelineError> {
    Ok(match want_table {
        Table::Receipts => Found::Receipt(item.map(|i| stored_receipt(&i.data)).transpose()?),
        Table::Epochs => Found::Epoch(item.map(entry).transpose()?),
        Table::Submissions => Found::Claim(
            item.map(|i| {
                Ok::<_, PipelineError>((
                    SubmissionState::parse(i.state.as_deref())?,
                    parse("submission", &i.data)?,
                ))
            })
            .transpose()?,
        ),
        Table::Counters => Found::Counter(item.map(|i| i.members).unwrap_or_default()),
        Table::Blocks => Found::Block(item.and_then(|i| i.data.parse().ok())),
        Table::Batches => {
            return Err(PipelineError::Invariant(
                "intake reads no batches".to_string(),
            ))
        }
    })
}

impl Records<'_> {
    fn want_key(&self, w: &Want) -> (Table, Key) {
        let m = &self.market;
        match w {
            Want::Receipt { epoch, id } => (Table::Receipts, keys::receipt_key(m, *epoch, id)),
            Want::Epoch(e) => (Table::Epochs, keys::epoch_key(m, *e)),
            Want::Claim {
                epoch,
                project,
                slot,
            } => (
                Table::Submissions,
                keys::submission_key(m, *epoch, project, *slot),
            ),
            Want::Counter { epoch, slot } => {
                (Table::Counters, keys::slot_counter_key(m, *epoch, *slot))
            }
            Want::Block(h) => (Table::Blocks, keys::block_key(&format!("{h:#x}"))),
        }
    }

    fn write_op(&self, w: &Write, expiries: &BTreeMap<u64, Expiry>) -> Result<TxOp, PipelineError> {
        let m = &self.market;
        // Every record of an epoch expires with it; a receipt of an epoch not recorded, the
        // retention from now.
        let expiry = |e: &u64| expiries.get(e).copied();
        let ttl = |e: &u64| expiry(e).map(|x| x.0).or_else(|| self.expiry());
        Ok(match w {
            Write::EpochOpen(e) => TxOp::Check {
                table: Table::Epochs,
                key: keys::epoch_key(m, *e),
                condition: Condition::State(EpochState::Open.as_str().to_string()),
            },
            Write::Claim {
                epoch,
                project,
                slot,
                rec,
                over_pending,
            } => TxOp::Put {
                table: Table::Submissions,
                key: keys::submission_key(m, *epoch, project, *slot),
                item: Item::with_state(SubmissionState::Accepted.as_str(), json(rec)?)
                    .ttl(ttl(epoch)),
                condition: Some(if *over_pending {
                    Condition::State(SubmissionState::Pending.as_str().to_string())
                } else {
                    Condition::Absent
                }),
            },
            Write::Receipt { epoch, id, receipt } => TxOp::Put {
                table: Table::Receipts,
                key: keys::receipt_key(m, *epoch, id),
                item: self.receipt_item(receipt, expiry(epoch))?,
                condition: Some(Condition::Absent),
            },
            Write::Count {
                epoch,
                slot,
                ids,
                max_before,
            } => TxOp::AddMembers {
                table: Table::Counters,
                key: keys::slot_counter_key(m, *epoch, *slot),
                members: ids.clone(),
                max_before: Some(*max_before),
                ttl: ttl(epoch),
            },
        })
    }

    /// Reads everything `wants` names in one batched read, in order. An item that does not
    /// decode fails only its own entry.
    pub async fn read_intake(
        &self,
        wants: &[Want],
    ) -> Result<Vec<Result<Found, PipelineError>>, PipelineError> {
        let keys: Vec<(Table, Key)> = wants.iter().map(|w| self.want_key(w)).collect();
        // Tables read: Table::Receipts, Table::Epochs, Table::Submissions, Table::Counters,
        // Table::Blocks (named here for the IAM check).
        let items = self.store.batch_get(&keys).await?;
        Ok(keys
            .iter()
            .zip(items)
            .map(|((t, _), item)| decode(*t, item))
            .collect())
    }

    /// Applies every write or none (at most [`sequencer_ports::MAX_TX_OPS`], no item twice):
    /// `None` when committed, else one status per write. Each record expires with its epoch,
    /// `expiries` ([`Records::expiry_of`] the epochs read); one of an epoch not there, the
    /// retention from now.
    pub async fn write_intake(
        &self,
        writes: &[Write],
        expiries: &BTreeMap<u64, Expiry>,
    ) -> Result<Option<Vec<WriteStatus>>, PipelineError> {
        let ops = self.intake_ops(writes, expiries)?;
        let outcome = self.store.transact(&ops).await?;
        statuses(&ops, outcome)
    }

    /// [`write_intake`](Self::write_intake) of each group of `txs`, in order, each all or
    /// nothing on its own (the store may make them durable in one commit); one result per group.
    pub async fn write_intake_each(
        &self,
        txs: &[Vec<Write>],
        expiries: &BTreeMap<u64, Expiry>,
    ) -> Vec<Result<Option<Vec<WriteStatus>>, PipelineError>> {
        let mut built: Vec<Result<Vec<TxOp>, PipelineError>> =
            txs.iter().map(|w| self.intake_ops(w, expiries)).collect();
        let ready: Vec<Vec<TxOp>> = built
            .iter_mut()
            .filter_map(|b| b.as_mut().ok().map(std::mem::take))
            .collect();
        let mut outcomes = self.store.transact_each(&ready).await.into_iter();
        let mut ready = ready.into_iter();
        built
            .into_iter()
            .map(|b| {
                b?;
                let (Some(ops), Some(outcome)) = (ready.next(), outcomes.next()) else {
                    return Err(PipelineError::Invariant(
                        "the store answered fewer transactions than it was given".into(),
                    ));
                };
                statuses(&ops, outcome?)
            })
            .collect()
    }

    fn intake_ops(
        &self,
        writes: &[Write],
        expiries: &BTreeMap<u64, Expiry>,
    ) -> Result<Vec<TxOp>, PipelineError> {
        // Built by `write_op`; for the IAM check (infra/terraform/check/drift.py):
        // TxOp::Check { table: Table::Epochs }
        // TxOp::Put { table: Table::Submissions }
        // TxOp::Put { table: Table::Receipts }
        // TxOp::AddMembers { table: Table::Counters }
        writes
            .iter()
            .map(|w| self.write_op(w, expiries))
            .collect::<Result<Vec<_>, _>>()
    }

    /// Records block hashes and numbers verify had to ask the chain for, in one batched write.
    pub async fn record_blocks(&self, blocks: &[(B256, u64)]) -> Result<(), PipelineError> {
        let items: Vec<(Table, Key, Item)> = blocks
            .iter()
            .map(|(h, n)| {
                (
                    Table::Blocks,
                    keys::block_key(&format!("{h:#x}")),
                    Item::data(n.to_string()).ttl(self.expiry()),
                )
            })
            .collect();
        Ok(self.store.batch_put(&items).await?)
    }
}

/// What a transaction's outcome says of each write: `None` when committed.
fn statuses(ops: &[TxOp], outcome: TxOutcome) -> Result<Option<Vec<WriteStatus>>, PipelineError> {
    match outcome {
        TxOutcome::Committed => Ok(None),
        TxOutcome::Cancelled(statuses) => Ok(Some(
            ops.iter()
                .zip(statuses)
                .map(|(op, s)| match s {
                    OpStatus::Ok => Ok(WriteStatus::Held),
                    OpStatus::Conflict => Ok(WriteStatus::Conflict),
                    OpStatus::ConditionFailed(item) => {
                        decode(op.target().0, item).map(|f| WriteStatus::Failed(Box::new(f)))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?,
        )),
    }
}
