//! Protocol-chain block hashes → numbers: the tick records recent blocks so verify can place a
//! submission's header without a chain call; verify records what it had to ask the chain.

use sequencer_core::B256;
use sequencer_ports::{Item, Table};

use super::keys;
use super::Records;
use crate::pipeline::PipelineError;

impl Records<'_> {
    /// The number of the block with this hash, if recorded.
    pub async fn recorded_block(&self, hash: B256) -> Result<Option<u64>, PipelineError> {
        Ok(self
            .store
            .get(Table::Blocks, &keys::block_key(&format!("{hash:#x}")))
            .await?
            .and_then(|item| item.data.parse().ok()))
    }

    /// Records that block `number` has this hash.
    pub async fn record_block(&self, hash: B256, number: u64) -> Result<(), PipelineError> {
        Ok(self
            .store
            .put(
                Table::Blocks,
                &keys::block_key(&format!("{hash:#x}")),
                &Item::data(number.to_string()).ttl(self.expiry()),
            )
            .await?)
    }
}
