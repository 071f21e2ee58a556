//! Deploying and configuring a ProtocolState on a local chain, with simulated slots.
//!
//! Simulated snapshotter keys and the default local market address are the
//! reproducible ones of `sequencer_core::devkeys` (the key of slot `n` is
//! `keccak256("powerloom-sequencer/sim-snapshotter/" ‖ decimal(n))`), so the snapshotter
//! simulator signs with exactly the keys deployed here.
//!
//! Those keys are public (anyone can derive them), so [`deploy_local`] assigns them only on a
//! local development chain, told by its chain id alone ([`is_local_chain`]: 31337 for anvil and
//! hardhat, 1337 for geth `--dev` and ganache). The RPC host is not trusted for this: a loopback
//! URL may be a tunnel to a public node or a fork of a public chain (which keeps its chain id and
//! is refused too). There is no override; on any other chain deploy with `slots: 0`.

use alloy::{primitives::Address, signers::local::PrivateKeySigner};
use serde::{Deserialize, Serialize};

use crate::{
    market::{MarketSettings, POWERLOOM_DAILY_QUOTA, POWERLOOM_DAY_SIZE, TIME_SCALE},
    ChainClient, ChainError, Result, Windows,
};

/// The first funded account of anvil/hardhat's standard test mnemonic (public knowledge; only
/// ever used when the chain id is 31337).
pub const ANVIL_FIRST_KEY: &str =
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

/// Chain id of anvil and hardhat local nodes.
pub const LOCAL_CHAIN_ID: u64 = 31337;

/// Chain ids of local development chains: anvil/hardhat (31337), geth `--dev`/ganache (1337).
pub const LOCAL_CHAIN_IDS: [u64; 2] = [LOCAL_CHAIN_ID, 1337];

/// Whether `chain_id` is a local development chain ([`LOCAL_CHAIN_IDS`]), where publicly known
/// keys (anvil's funded accounts, the simulated snapshotters) may be used.
pub fn is_local_chain(chain_id: u64) -> bool {
    LOCAL_CHAIN_IDS.contains(&chain_id)
}

/// Slots assigned per bulk transaction.
const SLOTS_PER_TX: usize = 200;

/// The private key of simulated slot `slot`.
pub fn sim_snapshotter_key(slot: u64) -> Result<PrivateKeySigner> {
    let seed = sequencer_core::devkeys::sim_snapshotter_secret(slot);
    PrivateKeySigner::from_bytes(&seed.into())
        .map_err(|e| ChainError::Signer(format!("simulated key of slot {slot}: {e}")))
}

/// The address of a hex private key (the key itself is never echoed in errors).
pub fn address_of_key(key: &str) -> Result<Address> {
    let s: PrivateKeySigner = key
        .trim()
        .parse()
        .map_err(|_| ChainError::Signer("not a valid secp256k1 private key".into()))?;
    Ok(s.address())
}

/// The default data market address of local deployments.
pub fn local_market_address() -> Address {
    sequencer_core::devkeys::local_market_address()
}

/// What [`deploy_local`] sets up.
#[derive(Debug, Clone)]
pub struct DeployPlan {
    /// Data market address to register.
    pub market: Address,
    /// Epoch size in blocks.
    pub epoch_size: u64,
    /// Windows in blocks.
    pub windows: Windows,
    /// SEQUENCER role holder (default: the deployer).
    pub sequencer: Option<Address>,
    /// EPOCH MANAGER role holder (default: the deployer).
    pub epoch_manager: Option<Address>,
    /// Number of simulated slots, assigned to slots `1..=slots`.
    pub slots: u64,
    /// `SOURCE_CHAIN_ID`; `None`: the protocol chain's own id (the epoch manager's default
    /// source chain).
    pub source_chain_id: Option<u64>,
    /// `SOURCE_CHAIN_BLOCK_TIME`, seconds × 10 000.
    pub source_block_time: u64,
    /// `DAY_SIZE`, seconds × 10 000.
    pub day_size: u64,
    /// `dailySnapshotQuota`.
    pub daily_snapshot_quota: u64,
}

impl DeployPlan {
    /// The market settings this plan registers on chain `chain_id`.
    pub fn settings(&self, chain_id: u64) -> MarketSettings {
        MarketSettings {
            epoch_size: self.epoch_size,
            source_chain_id: self.source_chain_id.unwrap_or(chain_id),
            source_block_time: self.source_block_time,
            day_size: self.day_size,
            daily_snapshot_quota: self.daily_snapshot_quota,
        }
    }
}

impl Default for DeployPlan {
    fn default() -> Self {
        Self {
            market: local_market_address(),
            epoch_size: 10,
            windows: Windows {
                snapshot_blocks: 20,
                batch_blocks: 60,
            },
            sequencer: None,
            epoch_manager: None,
            slots: 10,
            source_chain_id: None,
            source_block_time: TIME_SCALE,
            day_size: POWERLOOM_DAY_SIZE,
            daily_snapshot_quota: POWERLOOM_DAILY_QUOTA,
        }
    }
}

/// Addresses of a local deployment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deployment {
    /// Chain id.
    pub chain_id: u64,
    /// The ProtocolState contract.
    #[serde(serialize_with = "crate::types::checksummed")]
    pub protocol_state: Address,
    /// Block it was deployed in.
    pub deploy_block: u64,
    /// Owner (the deployer).
    #[serde(serialize_with = "crate::types::checksummed")]
    pub owner: Address,
    /// The registered data market.
    #[serde(serialize_with = "crate::types::checksummed")]
    pub data_market: Address,
    /// SEQUENCER role.
    #[serde(serialize_with = "crate::types::checksummed")]
    pub sequencer: Address,
    /// EPOCH MANAGER role.
    #[serde(serialize_with = "crate::types::checksummed")]
    pub epoch_manager: Address,
    /// Epoch size in blocks.
    pub epoch_size: u64,
    /// Windows in blocks.
    pub windows: Windows,
    /// Simulated slots: (slot id, snapshotter address).
    #[serde(serialize_with = "crate::types::checksummed_slots")]
    pub slots: Vec<(u64, Address)>,
    /// Market settings registered (absent in deployments recorded before they existed).
    #[serde(default)]
    pub settings: MarketSettings,
}

/// Deploys ProtocolState with `client`'s key as owner, registers the market, grants the roles and
/// assigns the simulated slots. Returns a client bound to the new contract and the addresses.
///
/// With `plan.slots > 0` on a chain that is not local ([`is_local_chain`]) it fails with
/// [`ChainError::SimulatedSlotsOnPublicChain`] before sending anything.
pub async fn deploy_local(
    client: &ChainClient,
    plan: &DeployPlan,
) -> Result<(ChainClient, Deployment)> {
    let owner = client.signer_address().ok_or(ChainError::NoSigner)?;
    if plan.slots > 0 && !is_local_chain(client.chain_id()) {
        return Err(ChainError::SimulatedSlotsOnPublicChain {
            chain_id: client.chain_id(),
        });
    }
    let settings = plan.settings(client.chain_id());
    settings.validate()?;
    let deployed = client.deploy_protocol_state().await?;
    let address = deployed
        .contract_address
        .ok_or_else(|| ChainError::Decode("no contract address".into()))?;
    let c = client.with_contract(address);
    c.register_market_with(plan.market, &settings, plan.windows)
        .await?;
    let sequencer = plan.sequencer.unwrap_or(owner);
    let epoch_manager = plan.epoch_manager.unwrap_or(owner);
    c.set_sequencer(plan.market, sequencer, true).await?;
    c.set_epoch_manager(plan.market, epoch_manager, true)
        .await?;
    let mut slots = Vec::with_capacity(usize::try_from(plan.slots).unwrap_or(0));
    for slot in 1..=plan.slots {
        slots.push((slot, sim_snapshotter_key(slot)?.address()));
    }
    for chunk in slots.chunks(SLOTS_PER_TX) {
        c.assign_slots(chunk).await?;
    }
    let deployment = Deployment {
        chain_id: c.chain_id(),
        protocol_state: address,
        deploy_block: deployed.block,
        owner,
        data_market: plan.market,
        sequencer,
        epoch_manager,
        epoch_size: plan.epoch_size,
        windows: plan.windows,
        slots,
        settings,
    };
    Ok((c, deployment))
}
