//! The environment variables every command reads, named once here and listed by `seqctl --help`
//! (the README has the same table). A flag on the command line wins over its variable. Values
//! from the environment are never shown in `--help` (`hide_env_values`): an RPC or IPFS URL may
//! carry an API key.

/// JSON-RPC endpoint of the protocol chain (`--rpc-url`).
pub const RPC_URL: &str = "RPC_URL";
/// JSON-RPC endpoint of a market's source chain (`--source-rpc-url`).
pub const SOURCE_RPC_URL: &str = "SOURCE_RPC_URL";
/// The ProtocolState contract (`--protocol-state`).
pub const PROTOCOL_STATE_ADDRESS: &str = "PROTOCOL_STATE_ADDRESS";
/// The data market (`--market`, or the MARKET argument).
pub const DATA_MARKET_ADDRESS: &str = "DATA_MARKET_ADDRESS";
/// IPFS node, Kubo RPC (`--ipfs`).
pub const IPFS_API_URL: &str = "IPFS_API_URL";
/// A sequencer's proof API (`proof get --url`).
pub const PROOF_API_URL: &str = "PROOF_API_URL";
/// EIP-712 chain id (`--chain-id`).
pub const CHAIN_ID: &str = "CHAIN_ID";

/// FIFO message group of the anchor queue (`epochs reanchor --anchor-group`).
pub const ANCHOR_GROUP_ID: &str = "ANCHOR_GROUP_ID";
/// Expiry of the records `epochs reanchor` writes (`--record-ttl-days`).
pub const RECORD_TTL_DAYS: &str = "RECORD_TTL_DAYS";

/// `seqctl --help`'s closing section.
pub const HELP: &str = "\
Environment (a flag on the command line wins; URL values are never shown: they may hold keys):
  RPC_URL                  --rpc-url of every command that reads the protocol chain
  SOURCE_RPC_URL           --source-rpc-url (chain release-epochs)
  PROTOCOL_STATE_ADDRESS   --protocol-state
  DATA_MARKET_ADDRESS      --market, or the MARKET argument when it is left out
  IPFS_API_URL             --ipfs (Kubo RPC, POST /api/v0/cat)
  PROOF_API_URL            --url of proof get (the proof function URL or the runner's address)
  CHAIN_ID                 --chain-id (submission verify, audit epoch)
  ANCHOR_GROUP_ID          --anchor-group (epochs): the deployment's anchor FIFO group
  RECORD_TTL_DAYS          --record-ttl-days (epochs): the deployment's record expiry
  SEQ_PREFIX, AWS_ENDPOINT_URL*, AWS_REGION
                           the deployment's tables and queues (epochs --aws)
  SEQCTL_PRIVATE_KEY, SEQCTL_PRIVATE_KEY_FILE, SIGNER_PRIVATE_KEY
                           signing key of chain deploy and chain release-epochs

Exit status: 0 the check held, 1 it did not (the reason is printed), 2 usage or input error.";
