//! Typed errors: contract reverts decoded from the ABI's custom errors, and client failures that
//! say whether a retry can help ([`ChainError::is_retryable`]).

use alloy::{
    contract::Error as ContractError,
    primitives::{Address, Bytes, TxHash, U256},
    transports::{RpcError, TransportError, TransportErrorKind},
};

use std::fmt;

use alloy::transports::HttpError;

use crate::{
    bindings::ProtocolState::ProtocolStateErrors as E,
    redact::{full_text, Redactor, Scrubbed},
};

/// A revert of the ProtocolState contract, decoded from its custom error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Revert {
    /// The caller is not the contract owner.
    #[error("caller {0} is not the owner")]
    NotOwner(Address),
    /// The caller does not hold the SEQUENCER role of the market.
    #[error("caller {0} is not a sequencer of the market")]
    NotSequencer(Address),
    /// The caller does not hold the EPOCH MANAGER role of the market.
    #[error("caller {0} is not an epoch manager of the market")]
    NotEpochManager(Address),
    /// A zero address where one is not allowed.
    #[error("zero address")]
    ZeroAddress,
    /// The data market is not registered.
    #[error("unknown data market {0}")]
    UnknownMarket(Address),
    /// The data market is registered already.
    #[error("data market {0} is already registered")]
    MarketAlreadyRegistered(Address),
    /// Epoch size 0.
    #[error("invalid epoch size {0}")]
    InvalidEpochSize(U256),
    /// The released range is not the next contiguous `epochSize` blocks.
    #[error("invalid epoch range [{begin}, {end}], expected begin {expected_begin}")]
    InvalidEpochRange {
        /// Requested first block.
        begin: U256,
        /// Requested last block.
        end: U256,
        /// The block the next epoch must begin at.
        expected_begin: U256,
    },
    /// The epoch has not been released.
    #[error("epoch {0} is not released")]
    EpochNotReleased(U256),
    /// The epoch's batch submissions are ended.
    #[error("epoch {0}: batch submissions already ended")]
    EpochEnded(U256),
    /// `projectIds` and `snapshotCids` differ in length.
    #[error("{project_ids} project ids but {snapshot_cids} snapshot cids")]
    LengthMismatch {
        /// Number of project ids.
        project_ids: U256,
        /// Number of snapshot CIDs.
        snapshot_cids: U256,
    },
    /// A batch without projects.
    #[error("empty batch")]
    EmptyBatch,
    /// An empty batch CID.
    #[error("empty batch cid")]
    EmptyBatchCid,
    /// This batch CID is anchored already (for this market).
    #[error("batch {0} is already submitted")]
    BatchAlreadySubmitted(String),
    /// A project of the batch is already anchored for this epoch.
    #[error("project {project_id} already submitted for epoch {epoch}")]
    ProjectAlreadySubmitted {
        /// The project.
        project_id: String,
        /// The epoch.
        epoch: U256,
    },
    /// `skipEpochs` to a begin that is not a whole number of epochs past the next expected begin
    /// (or before any release).
    #[error("invalid skip to begin {new_begin}, next epoch begins at {expected_begin}")]
    InvalidSkip {
        /// Requested next begin.
        new_begin: U256,
        /// The block the next epoch begins at now.
        expected_begin: U256,
    },
    /// `endBatchSubmissions` for an epoch with no batch anchored (in time or delayed).
    #[error("epoch {0}: no batch submitted, batch submissions cannot be ended")]
    NoBatchSubmitted(U256),
    /// `acceptOwnership` from an address that is not the pending owner.
    #[error("caller {0} is not the pending owner")]
    NotPendingOwner(Address),
    /// A window above `u64::MAX` blocks (`registerDataMarket`, `updateSubmissionWindows`).
    #[error("invalid windows: snapshot {snapshot_window}, batch {batch_window} (at most 2^64 - 1 blocks)")]
    InvalidWindow {
        /// Requested snapshot window.
        snapshot_window: U256,
        /// Requested batch window.
        batch_window: U256,
    },
    /// A source chain id of 0 (`registerDataMarket`, `updateMarketSettings`).
    #[error("invalid source chain id {0}")]
    InvalidSourceChain(U256),
    /// A source block time of 0 or above 2^64 - 1 (seconds × 10 000).
    #[error("invalid source block time {0} (seconds × 10 000)")]
    InvalidBlockTime(U256),
    /// A day shorter than one epoch (both seconds × 10 000).
    #[error("day size {day_size} is shorter than one epoch ({epoch_duration})")]
    InvalidDaySize {
        /// Requested day size.
        day_size: U256,
        /// Block time × epoch size.
        epoch_duration: U256,
    },
    /// A daily snapshot quota of 0.
    #[error("invalid daily snapshot quota {0}")]
    InvalidDailyQuota(U256),
    /// `updateRewards` for a day that has not ended (or day 0).
    #[error("day {day} has not ended (current day {current_day})")]
    DayNotEnded {
        /// Requested day.
        day: U256,
        /// The market's current day.
        current_day: U256,
    },
    /// `updateRewards` for a (slot, day) recorded already.
    #[error("rewards of slot {slot_id} for day {day} are recorded already")]
    RewardsAlreadyRecorded {
        /// The slot.
        slot_id: U256,
        /// The day.
        day: U256,
    },
    /// A revert this ABI does not know (a string reason, a panic code, or raw data).
    #[error("reverted: {0}")]
    Other(String),
}

impl From<E> for Revert {
    fn from(e: E) -> Self {
        match e {
            E::NotOwner(x) => Self::NotOwner(x.caller),
            E::NotSequencer(x) => Self::NotSequencer(x.caller),
            E::NotEpochManager(x) => Self::NotEpochManager(x.caller),
            E::ZeroAddress(_) => Self::ZeroAddress,
            E::UnknownMarket(x) => Self::UnknownMarket(x.dataMarket),
            E::MarketAlreadyRegistered(x) => Self::MarketAlreadyRegistered(x.dataMarket),
            E::InvalidEpochSize(x) => Self::InvalidEpochSize(x.epochSize),
            E::InvalidEpochRange(x) => Self::InvalidEpochRange {
                begin: x.begin,
                end: x.end,
                expected_begin: x.expectedBegin,
            },
            E::EpochNotReleased(x) => Self::EpochNotReleased(x.epochId),
            E::EpochEnded(x) => Self::EpochEnded(x.epochId),
            E::LengthMismatch(x) => Self::LengthMismatch {
                project_ids: x.projectIds,
                snapshot_cids: x.snapshotCids,
            },
            E::EmptyBatch(_) => Self::EmptyBatch,
            E::EmptyBatchCid(_) => Self::EmptyBatchCid,
            E::BatchAlreadySubmitted(x) => Self::BatchAlreadySubmitted(x.batchCid),
            E::ProjectAlreadySubmitted(x) => Self::ProjectAlreadySubmitted {
                project_id: x.projectId,
                epoch: x.epochId,
            },
            E::InvalidSkip(x) => Self::InvalidSkip {
                new_begin: x.newBegin,
                expected_begin: x.expectedBegin,
            },
            E::NoBatchSubmitted(x) => Self::NoBatchSubmitted(x.epochId),
            E::NotPendingOwner(x) => Self::NotPendingOwner(x.caller),
            E::InvalidWindow(x) => Self::InvalidWindow {
                snapshot_window: x.snapshotWindow,
                batch_window: x.batchWindow,
            },
            E::InvalidSourceChain(x) => Self::InvalidSourceChain(x.sourceChainId),
            E::InvalidBlockTime(x) => Self::InvalidBlockTime(x.sourceChainBlockTime),
            E::InvalidDaySize(x) => Self::InvalidDaySize {
                day_size: x.daySize,
                epoch_duration: x.epochDuration,
            },
            E::InvalidDailyQuota(x) => Self::InvalidDailyQuota(x.dailySnapshotQuota),
            E::DayNotEnded(x) => Self::DayNotEnded {
                day: x.day,
                current_day: x.currentDay,
            },
            E::RewardsAlreadyRecorded(x) => Self::RewardsAlreadyRecorded {
                slot_id: x.slotId,
                day: x.day,
            },
        }
    }
}

/// Everything the chain client can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// Bad or missing configuration.
    #[error("chain config: {0}")]
    Config(String),
    /// The contract reverted (found by `eth_estimateGas`/`eth_call`; nothing was sent).
    #[error("contract reverted: {0}")]
    Revert(#[from] Revert),
    /// A JSON-RPC failure (after retries when it was transient).
    #[error("rpc: {0}")]
    Rpc(#[source] TransportError),
    /// A transaction would need more gas than the configured ceiling; it was not sent.
    #[error("gas estimate {estimate} exceeds the ceiling {ceiling}")]
    GasAboveCeiling {
        /// `eth_estimateGas` result.
        estimate: u64,
        /// `GAS_LIMIT_CEILING`.
        ceiling: u64,
    },
    /// The transaction was mined but failed (status 0).
    #[error("transaction {0} was mined but reverted")]
    TxFailed(TxHash),
    /// No receipt within `RECEIPT_TIMEOUT_SECS`; the transaction may still land.
    #[error("no receipt for {0} yet")]
    ReceiptTimeout(TxHash),
    /// Transactions from our key stayed pending longer than `PENDING_TIMEOUT_SECS`.
    #[error("{from} still has pending transactions (latest nonce {latest}, pending {pending})")]
    PendingTimeout {
        /// Our address.
        from: Address,
        /// Mined nonce.
        latest: u64,
        /// Pending nonce.
        pending: u64,
    },
    /// The node refused our nonce (someone else writes with this key).
    #[error("nonce conflict for {from}: {message}")]
    NonceConflict {
        /// Our address.
        from: Address,
        /// The node's message.
        message: String,
    },
    /// A write was asked of a client without a signer.
    #[error("no signer configured (SIGNER_PRIVATE_KEY or KMS_KEY_ID)")]
    NoSigner,
    /// The signer could not be built or failed to sign.
    #[error("signer: {0}")]
    Signer(String),
    /// The node answered something we could not interpret.
    #[error("unexpected chain data: {0}")]
    Decode(String),
    /// The node refused the transaction's fees: the max fee is below the block's base fee, or a
    /// replacement did not raise the fees enough. Retryable: a later attempt estimates again
    /// (and a stuck transaction is replaced with bumped fees up to `MAX_FEE_PER_GAS_CEILING_WEI`).
    #[error("fees refused ({kind}): {message}")]
    FeeTooLow {
        /// Which rule the node applied.
        kind: FeeRejection,
        /// The node's message.
        message: String,
    },
    /// A receipt without the block it was mined in (a broken or lagging node): the transaction
    /// may be mined, so a retry (which finds the batch on chain and does not resend) can succeed.
    #[error("receipt of {tx_hash} has no {field}")]
    ReceiptIncomplete {
        /// The transaction.
        tx_hash: TxHash,
        /// The missing field.
        field: &'static str,
    },
    /// Mined, but not yet `CHAIN_CONFIRMATIONS` deep within `RECEIPT_TIMEOUT_SECS`; not reported
    /// as done. Retryable: the retry finds it on chain and waits again.
    #[error("{tx_hash} in block {block} is not {confirmations} blocks deep yet")]
    ConfirmationTimeout {
        /// The transaction.
        tx_hash: TxHash,
        /// Its block.
        block: u64,
        /// `CHAIN_CONFIRMATIONS`.
        confirmations: u64,
    },
    /// One call (its retries and backoffs included) ran out of `RPC_CALL_BUDGET_MS`; retryable:
    /// the caller's retry (a redelivery) tries again.
    #[error("{what}: no answer within the call budget of {budget_ms} ms")]
    CallBudget {
        /// The RPC method or view.
        what: &'static str,
        /// `RPC_CALL_BUDGET_MS`.
        budget_ms: u64,
    },
    /// Our transaction's block left the canonical chain again and again while we waited for
    /// confirmations; retryable (the retry checks the chain and sends again only if needed).
    #[error("transaction {0} was reorged out repeatedly")]
    Reorged(TxHash),
    /// Slots would be handed to the simulated snapshotter keys, which anyone can derive, on a
    /// chain that is not a local development chain ([`crate::deploy::is_local_chain`]).
    #[error("chain {chain_id} is not a local development chain (chain ids {ids:?}): refusing to assign slots to the publicly derivable simulator keys; deploy with 0 slots and assign real snapshotters", ids = crate::deploy::LOCAL_CHAIN_IDS)]
    SimulatedSlotsOnPublicChain {
        /// The node's chain id.
        chain_id: u64,
    },
    /// Market settings the contract would refuse; nothing was sent.
    #[error("market settings: {0}")]
    Settings(#[from] crate::market::SettingsError),
    /// A batch CID anchored under another epoch than the one asked for.
    #[error("batch {batch_cid} is anchored for epoch {anchored_epoch}, not {epoch}")]
    BatchInOtherEpoch {
        /// The batch CID.
        batch_cid: String,
        /// Epoch asked for.
        epoch: u64,
        /// Epoch it is anchored under.
        anchored_epoch: u64,
    },
}

impl ChainError {
    /// Whether retrying the same operation later can succeed (the message goes back on the
    /// queue) or not (record the failure and acknowledge).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Rpc(e) => is_transient(e),
            Self::ReceiptTimeout(_)
            | Self::PendingTimeout { .. }
            | Self::NonceConflict { .. }
            | Self::FeeTooLow { .. }
            | Self::ReceiptIncomplete { .. }
            | Self::ConfirmationTimeout { .. }
            | Self::CallBudget { .. }
            | Self::Reorged(_) => true,
            Self::Config(_)
            | Self::Revert(_)
            | Self::GasAboveCeiling { .. }
            | Self::TxFailed(_)
            | Self::NoSigner
            | Self::Signer(_)
            | Self::Decode(_)
            | Self::SimulatedSlotsOnPublicChain { .. }
            | Self::Settings(_)
            | Self::BatchInOtherEpoch { .. } => false,
        }
    }

    /// The decoded revert, if this is one.
    pub fn revert(&self) -> Option<&Revert> {
        match self {
            Self::Revert(r) => Some(r),
            _ => None,
        }
    }

    /// Maps an RPC error, decoding contract reverts into [`Revert`].
    pub(crate) fn from_rpc(e: TransportError) -> Self {
        if let RpcError::ErrorResp(payload) = &e {
            if let Some(kind) = FeeRejection::of_message(&payload.message) {
                return Self::FeeTooLow {
                    kind,
                    message: payload.message.to_string(),
                };
            }
            if let Some(decoded) = payload.as_decoded_interface_error::<E>() {
                return Self::Revert(decoded.into());
            }
            if let Some(data) = payload.as_revert_data() {
                return Self::Revert(Revert::Other(describe_revert(&data, &payload.message)));
            }
            if is_revert_message(&payload.message) {
                return Self::Revert(Revert::Other(payload.message.to_string()));
            }
        }
        Self::Rpc(e)
    }

    pub(crate) fn from_contract(e: ContractError) -> Self {
        match e {
            ContractError::TransportError(t) => Self::from_rpc(t),
            other => Self::Decode(other.to_string()),
        }
    }

    /// This error with the RPC URL and its secret parts scrubbed from every message it carries;
    /// transport errors are rebuilt from their scrubbed text (their source chain could hold it).
    pub(crate) fn redacted(self, r: &Redactor) -> Self {
        match self {
            Self::Rpc(e) => Self::Rpc(scrub_transport(e, r)),
            Self::Config(m) => Self::Config(r.scrub(&m)),
            Self::Signer(m) => Self::Signer(r.scrub(&m)),
            Self::Decode(m) => Self::Decode(r.scrub(&m)),
            Self::NonceConflict { from, message } => Self::NonceConflict {
                from,
                message: r.scrub(&message),
            },
            Self::FeeTooLow { kind, message } => Self::FeeTooLow {
                kind,
                message: r.scrub(&message),
            },
            Self::Revert(Revert::Other(m)) => Self::Revert(Revert::Other(r.scrub(&m))),
            other => other,
        }
    }
}

/// Which fee rule a node refused a transaction under (anvil's and geth's wordings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeeRejection {
    /// `max fee per gas less than block base fee` (geth, anvil; older geth: `fee cap less than
    /// block base fee`).
    BelowBaseFee,
    /// `replacement transaction underpriced` (geth, anvil), or `transaction underpriced` (below
    /// the pool's minimum).
    Underpriced,
}

impl fmt::Display for FeeRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BelowBaseFee => "max fee below base fee",
            Self::Underpriced => "underpriced",
        })
    }
}

impl FeeRejection {
    /// Classifies a node's error message.
    pub fn of_message(message: &str) -> Option<Self> {
        let m = message.to_ascii_lowercase();
        if (m.contains("max fee per gas less than") || m.contains("fee cap less than"))
            && m.contains("base fee")
        {
            Some(Self::BelowBaseFee)
        } else if m.contains("underpriced") {
            Some(Self::Underpriced)
        } else {
            None
        }
    }
}

fn scrub_transport(e: TransportError, r: &Redactor) -> TransportError {
    let scrub_box =
        |b: &(dyn std::error::Error + 'static)| -> Box<dyn std::error::Error + Send + Sync> {
            Box::new(Scrubbed(r.scrub(&full_text(b))))
        };
    match e {
        RpcError::Transport(kind) => RpcError::Transport(match kind {
            TransportErrorKind::Custom(b) => TransportErrorKind::Custom(scrub_box(&*b)),
            TransportErrorKind::NonRetryable(b) => TransportErrorKind::NonRetryable(scrub_box(&*b)),
            TransportErrorKind::HttpError(h) => TransportErrorKind::HttpError(HttpError {
                status: h.status,
                body: r.scrub(&h.body),
            }),
            TransportErrorKind::HttpErrorWithRetryAfter { error, retry_after } => {
                TransportErrorKind::HttpErrorWithRetryAfter {
                    error: HttpError {
                        status: error.status,
                        body: r.scrub(&error.body),
                    },
                    retry_after,
                }
            }
            other => other,
        }),
        RpcError::ErrorResp(mut p) => {
            p.message = r.scrub(&p.message).into();
            RpcError::ErrorResp(p)
        }
        RpcError::LocalUsageError(b) => RpcError::LocalUsageError(scrub_box(&*b)),
        RpcError::DeserError { err, text } => RpcError::DeserError {
            err,
            text: r.scrub(&text),
        },
        other => other,
    }
}

fn is_revert_message(m: &str) -> bool {
    let m = m.to_ascii_lowercase();
    m.contains("execution reverted") || m.starts_with("revert")
}

fn describe_revert(data: &Bytes, message: &str) -> String {
    use alloy::sol_types::{GenericContractError, SolInterface};
    match GenericContractError::abi_decode(data) {
        Ok(GenericContractError::Revert(r)) => r.reason,
        Ok(GenericContractError::Panic(p)) => format!("panic {}", p.code),
        _ if data.is_empty() => message.to_string(),
        _ => format!("{message} (data {data})"),
    }
}

/// Transient = worth retrying with backoff: the node was unreachable or overloaded, never a
/// revert or a malformed request.
pub(crate) fn is_transient(e: &TransportError) -> bool {
    match e {
        RpcError::Transport(kind) => match kind {
            TransportErrorKind::HttpError(h) => {
                h.status == 408 || h.status == 429 || h.status >= 500
            }
            TransportErrorKind::HttpErrorWithRetryAfter { .. }
            | TransportErrorKind::BackendGone
            | TransportErrorKind::MissingBatchResponse(_) => true,
            // reqwest failures land here: connection refused or reset, timeouts, DNS.
            TransportErrorKind::Custom(_) => true,
            _ => false,
        },
        RpcError::ErrorResp(p) => p.is_retry_err(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use alloy::{
        rpc::json_rpc::ErrorPayload,
        sol_types::SolError,
        transports::{HttpError, TransportErrorKind},
    };

    use super::*;
    use crate::bindings::ProtocolState;

    fn revert_payload(data: &[u8]) -> TransportError {
        let raw = serde_json::value::to_raw_value(&alloy::hex::encode_prefixed(data)).expect("raw");
        RpcError::ErrorResp(ErrorPayload {
            code: 3,
            message: "execution reverted".into(),
            data: Some(raw),
        })
    }

    #[test]
    fn custom_errors_decode_to_typed_reverts() {
        let data = ProtocolState::ProjectAlreadySubmitted {
            projectId: "p".into(),
            epochId: U256::from(4),
        }
        .abi_encode();
        let e = ChainError::from_rpc(revert_payload(&data));
        assert_eq!(
            e.revert(),
            Some(&Revert::ProjectAlreadySubmitted {
                project_id: "p".into(),
                epoch: U256::from(4)
            })
        );
        assert!(!e.is_retryable());
        let e = ChainError::from_rpc(revert_payload(&[0xde, 0xad, 0xbe, 0xef]));
        assert!(matches!(e, ChainError::Revert(Revert::Other(_))), "{e:?}");
    }

    #[test]
    fn transient_errors_are_retryable_and_others_not() {
        let http = |status| {
            RpcError::Transport(TransportErrorKind::HttpError(HttpError {
                status,
                body: String::new(),
            }))
        };
        for status in [408, 429, 500, 502, 503] {
            assert!(
                ChainError::from_rpc(http(status)).is_retryable(),
                "{status}"
            );
        }
        for status in [400, 401, 404] {
            assert!(
                !ChainError::from_rpc(http(status)).is_retryable(),
                "{status}"
            );
        }
        assert!(
            ChainError::from_rpc(TransportErrorKind::custom_str("connection refused"))
                .is_retryable()
        );
        assert!(ChainError::from_rpc(TransportErrorKind::backend_gone()).is_retryable());
        assert!(!ChainError::from_rpc(TransportErrorKind::non_retryable_str("bad")).is_retryable());
        let rate = RpcError::ErrorResp(ErrorPayload {
            code: 429,
            message: "slow down".into(),
            data: None,
        });
        assert!(ChainError::from_rpc(rate).is_retryable());
        let invalid = RpcError::ErrorResp(ErrorPayload {
            code: -32602,
            message: "invalid params".into(),
            data: None,
        });
        assert!(!ChainError::from_rpc(invalid).is_retryable());
    }

    fn node_error(message: &str) -> TransportError {
        RpcError::ErrorResp(ErrorPayload {
            code: -32003,
            message: message.to_string().into(),
            data: None,
        })
    }

    #[test]
    fn fee_refusals_are_typed_and_retryable() {
        // Wordings measured on anvil 1.7.1, and geth's (core/txpool errors, with its suffix).
        for (message, kind) in [
            ("max fee per gas less than block base fee", FeeRejection::BelowBaseFee),
            (
                "max fee per gas less than block base fee: address 0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266, maxFeePerGas: 1000 baseFee: 7000",
                FeeRejection::BelowBaseFee,
            ),
            ("fee cap less than block base fee", FeeRejection::BelowBaseFee),
            ("replacement transaction underpriced", FeeRejection::Underpriced),
            ("transaction underpriced", FeeRejection::Underpriced),
        ] {
            let e = ChainError::from_rpc(node_error(message));
            match &e {
                ChainError::FeeTooLow { kind: k, message: m } => {
                    assert_eq!(*k, kind, "{message}");
                    assert_eq!(m, message);
                }
                other => panic!("{message}: expected FeeTooLow, got {other:?}"),
            }
            assert!(e.is_retryable(), "{message}");
        }
        // Neighbours that are not fee refusals stay what they were.
        let e = ChainError::from_rpc(node_error("nonce too low"));
        assert!(matches!(e, ChainError::Rpc(_)), "{e:?}");
        assert!(!e.is_retryable());
        let e = ChainError::from_rpc(node_error("insufficient funds for gas * price + value"));
        assert!(!e.is_retryable(), "{e:?}");
    }

    #[test]
    fn new_writer_errors_are_retryable() {
        for e in [
            ChainError::ReceiptIncomplete {
                tx_hash: TxHash::ZERO,
                field: "block number",
            },
            ChainError::ConfirmationTimeout {
                tx_hash: TxHash::ZERO,
                block: 1,
                confirmations: 3,
            },
            ChainError::Reorged(TxHash::ZERO),
        ] {
            assert!(e.is_retryable(), "{e:?}");
        }
    }

    #[test]
    fn scrubbing_keeps_the_kind_and_drops_the_key() {
        let url = "https://node.example/v3/PATHKEY?apikey=QUERYKEY";
        let r = Redactor::new(url);
        let custom = TransportErrorKind::custom_str(&format!(
            "error sending request for url ({url}): connection refused"
        ));
        let e = ChainError::from_rpc(custom).redacted(&r);
        assert!(e.is_retryable(), "still transient: {e:?}");
        let http = RpcError::Transport(TransportErrorKind::HttpError(HttpError {
            status: 503,
            body: format!("upstream {url} down"),
        }));
        let h = ChainError::from_rpc(http).redacted(&r);
        assert!(h.is_retryable());
        for e in [e, h] {
            let shown = format!("{e} {e:?} {}", full_text(&e));
            assert!(
                !shown.contains("PATHKEY") && !shown.contains("QUERYKEY"),
                "{shown}"
            );
            assert!(shown.contains("https://node.example"), "{shown}");
        }
    }
}
