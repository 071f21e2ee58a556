//! Seals: the batch set finalization made of an epoch's accepted set, written once.
//!
//! Finalize reads the accepted set, cuts and uploads the batches, and writes their list as one
//! document to the content store (`finalize::SealDocument`); the seal is the one record that
//! names that document, written with a conditional put. The first finalizer to write it wins;
//! every re-run and every concurrent finalizer reads it and records exactly those batches, so an
//! epoch has one batch set, byte for byte, whatever was accepted late or read differently.
//!
//! Kept in the epochs table under `market#seal` / epoch (`keys::seal_key`), with the epoch's
//! expiry; the item's state is `SEALED`.

use serde::{Deserialize, Serialize};

use sequencer_ports::{Item, Table};

use super::keys;
use super::{Expiry, Records};
use crate::pipeline::{json, parse, PipelineError};

/// The stored state of a seal.
const SEALED: &str = "SEALED";

/// What a seal records: the document listing the epoch's batches, and a summary of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealRecord {
    /// CID of the seal document in the content store.
    pub cid: String,
    /// Batches it lists.
    pub batches: u32,
    /// Submissions those batches list.
    pub submissions: u64,
    /// Accepted submissions the sealing run read (listed, duplicates and simulations).
    pub read: u64,
    /// When it was written (ms since the Unix epoch).
    pub sealed_at_ms: i64,
}

/// What [`Records::write_seal`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealWrite {
    /// This seal is the epoch's.
    Written,
    /// Another run sealed the epoch first: its seal, which is the epoch's.
    Exists(SealRecord),
}

impl Records<'_> {
    /// The epoch's seal, if it was sealed.
    pub async fn seal(&self, epoch: u64) -> Result<Option<SealRecord>, PipelineError> {
        match self
            .store
            .get(Table::Epochs, &keys::seal_key(&self.market, epoch))
            .await?
        {
            Some(item) if item.state.as_deref() == Some(SEALED) => {
                Ok(Some(parse("seal", &item.data)?))
            }
            Some(item) => Err(PipelineError::Corrupt(format!(
                "seal of epoch {epoch} in state {:?}",
                item.state
            ))),
            None => Ok(None),
        }
    }

    /// Writes the epoch's seal once, expiring with the epoch. When another run wrote one first,
    /// nothing changes and that one is returned.
    pub async fn write_seal(
        &self,
        epoch: u64,
        seal: &SealRecord,
        expiry: Expiry,
    ) -> Result<SealWrite, PipelineError> {
        let key = keys::seal_key(&self.market, epoch);
        let item = Item::with_state(SEALED, json(seal)?).ttl(Some(expiry.0));
        if self.store.put_if_absent(Table::Epochs, &key, &item).await? {
            return Ok(SealWrite::Written);
        }
        match self.seal(epoch).await? {
            Some(theirs) => Ok(SealWrite::Exists(theirs)),
            // Present a moment ago, gone now: only an expiry sweep does that.
            None => Err(PipelineError::NotReady(format!(
                "the seal of epoch {epoch} was there and is gone"
            ))),
        }
    }
}
