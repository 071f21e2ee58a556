//! Verification rules (docs/protocol.md §3–§5) as pure functions: each returns `Ok` or
//! a typed [`Rejection`] with a stable reason code. Handlers fetch what the rules
//! need (slot owner, header block, epoch window, counters) and call these; the
//! rules never do I/O themselves.

use alloy_primitives::Address;

use crate::eip712::{Recovered, SignatureError, Verifier};
use crate::submission::{FieldError, SnapshotSubmission};

/// Default accepted submissions per (data market, slot, epoch), across projects.
pub const DEFAULT_MAX_PER_SLOT_EPOCH: u32 = 2;

/// Why a submission is rejected. Every rejection is counted by [`Rejection::reason`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("submission is for data market {got}, not this sequencer's {expected}")]
    WrongDataMarket { expected: Address, got: String },
    #[error("submission names ProtocolState {got}, not this sequencer's {expected}")]
    WrongProtocolState { expected: Address, got: String },
    #[error("slot {slot} has no snapshotter assigned")]
    UnknownSlot { slot: u64 },
    #[error("signer {signer} is not slot {slot}'s snapshotter {expected}")]
    NotSlotSnapshotter {
        slot: u64,
        expected: Address,
        signer: Address,
    },
    #[error("signer {signer} is flagged")]
    FlaggedSigner { signer: Address },
    #[error("header is not the hash of a known protocol-chain block")]
    UnknownHeader,
    #[error("epoch {epoch} has not been released")]
    EpochNotReleased { epoch: u64 },
    #[error("header block {block} is outside the window [{begin}, {end}]")]
    OutsideWindow { block: u64, begin: u64, end: u64 },
    #[error("slot already has {cap} accepted submissions in this epoch")]
    SlotEpochCap { cap: u32 },
    #[error("a submission for this project, slot and epoch was already accepted")]
    Duplicate,
}

impl Rejection {
    /// Stable label for metrics and rejection records.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Malformed(_) => "malformed",
            Rejection::Field(e) => e.reason(),
            Rejection::Signature(e) => e.reason(),
            Rejection::WrongDataMarket { .. } => "wrong_data_market",
            Rejection::WrongProtocolState { .. } => "wrong_protocol_state",
            Rejection::UnknownSlot { .. } => "unknown_slot",
            Rejection::NotSlotSnapshotter { .. } => "not_slot_snapshotter",
            Rejection::FlaggedSigner { .. } => "flagged_signer",
            Rejection::UnknownHeader => "unknown_header",
            Rejection::EpochNotReleased { .. } => "epoch_not_released",
            Rejection::OutsideWindow { .. } => "outside_window",
            Rejection::SlotEpochCap { .. } => "slot_epoch_cap",
            Rejection::Duplicate => "duplicate",
        }
    }
}

/// What an accepted submission is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Counts toward epoch `epoch` and may be batched.
    Epoch(u64),
    /// `epochId == 0`: liveness for the slot only, never batched.
    Simulation,
}

/// The submission window of a released epoch, in protocol-chain blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochWindow {
    /// Block holding `EpochReleased`.
    pub release_block: u64,
    /// `snapshotSubmissionWindow(dataMarket)`, in blocks.
    pub window_blocks: u64,
}

impl EpochWindow {
    /// Last block inside the window.
    pub fn end(&self) -> u64 {
        self.release_block.saturating_add(self.window_blocks)
    }

    pub fn contains(&self, block: u64) -> bool {
        (self.release_block..=self.end()).contains(&block)
    }

    /// The window has closed once the head is past its end.
    pub fn is_closed(&self, head: u64) -> bool {
        head > self.end()
    }
}

/// Form and signature, needing no state: fields valid, market is ours, signature
/// well formed; returns the digest and the recovered signer.
pub fn check_stateless(
    verifier: &Verifier,
    submission: &SnapshotSubmission,
    market: &Address,
) -> Result<Recovered, Rejection> {
    submission.validate_fields()?;
    check_market(submission, market)?;
    check_protocol_state(submission, &verifier.domain().verifying_contract)?;
    Ok(verifier.recover(submission)?)
}

/// `protocolState`, when a collector sends it, names the configured contract (case-insensitively).
pub fn check_protocol_state(
    submission: &SnapshotSubmission,
    protocol_state: &Address,
) -> Result<(), Rejection> {
    match &submission.protocol_state {
        None => Ok(()),
        Some(s) => match crate::submission::parse_address(s) {
            Some(a) if a == *protocol_state => Ok(()),
            _ => Err(Rejection::WrongProtocolState {
                expected: *protocol_state,
                got: s.clone(),
            }),
        },
    }
}

/// The submission names this sequencer's data market (case-insensitively).
pub fn check_market(submission: &SnapshotSubmission, market: &Address) -> Result<(), Rejection> {
    match crate::submission::parse_address(&submission.data_market) {
        Some(a) if a == *market => Ok(()),
        _ => Err(Rejection::WrongDataMarket {
            expected: *market,
            got: submission.data_market.clone(),
        }),
    }
}

/// The signer is the slot's snapshotter and is not flagged.
pub fn check_signer(
    slot: u64,
    signer: Address,
    slot_owner: Option<Address>,
    flagged: bool,
) -> Result<(), Rejection> {
    match slot_owner {
        None => Err(Rejection::UnknownSlot { slot }),
        Some(o) if o == Address::ZERO => Err(Rejection::UnknownSlot { slot }),
        Some(o) if o != signer => Err(Rejection::NotSlotSnapshotter {
            slot,
            expected: o,
            signer,
        }),
        Some(_) if flagged => Err(Rejection::FlaggedSigner { signer }),
        Some(_) => Ok(()),
    }
}

/// The header's block lies in the epoch's window. `header_block` is `None` when the
/// header could not be resolved even against the chain; `window` is `None` when
/// the epoch has not been released.
pub fn check_window(
    epoch: u64,
    header_block: Option<u64>,
    window: Option<EpochWindow>,
) -> Result<(), Rejection> {
    let window = window.ok_or(Rejection::EpochNotReleased { epoch })?;
    let block = header_block.ok_or(Rejection::UnknownHeader)?;
    if window.contains(block) {
        Ok(())
    } else {
        Err(Rejection::OutsideWindow {
            block,
            begin: window.release_block,
            end: window.end(),
        })
    }
}

/// `count_after` is the slot's accepted count in the epoch *including* this one,
/// as returned by an atomic increment. Full nodes are exempt.
pub fn check_slot_cap(count_after: u64, cap: u32, exempt: bool) -> Result<(), Rejection> {
    if exempt || count_after <= u64::from(cap) {
        Ok(())
    } else {
        Err(Rejection::SlotEpochCap { cap })
    }
}

/// First valid submission per (market, epoch, project, slot) wins.
pub fn check_first(already_accepted: bool) -> Result<(), Rejection> {
    if already_accepted {
        Err(Rejection::Duplicate)
    } else {
        Ok(())
    }
}

/// Whether the submission is a simulation or counts for an epoch.
pub fn kind(submission: &SnapshotSubmission) -> Kind {
    if submission.is_simulation() {
        Kind::Simulation
    } else {
        Kind::Epoch(submission.request.epoch_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eip712::{address_of, sign_request, Domain};
    use crate::submission::Request;

    fn setup() -> (Verifier, SnapshotSubmission, Address, Address) {
        let market = Address::repeat_byte(0x11);
        let domain = Domain {
            chain_id: 31337,
            verifying_contract: Address::repeat_byte(0x22),
        };
        let key = k256::ecdsa::SigningKey::from_slice(&[5u8; 32]).expect("key");
        let request = Request {
            slot_id: 3,
            deadline: 10,
            snapshot_cid: "bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy".into(),
            epoch_id: 4,
            project_id: "p".into(),
        };
        let signature = sign_request(&domain, &request, &key).expect("signs");
        let sub = SnapshotSubmission {
            request,
            signature,
            header: format!("0x{}", "ab".repeat(32)),
            data_market: format!("{market:#x}").to_uppercase().replace("0X", "0x"),
            node_version: None,
            protocol_state: None,
        };
        (Verifier::new(domain), sub, market, address_of(&key))
    }

    #[test]
    fn stateless_accepts_a_good_submission_and_names_the_signer() {
        let (v, sub, market, signer) = setup();
        assert_eq!(
            check_stateless(&v, &sub, &market).map(|r| r.signer),
            Ok(signer)
        );
    }

    #[test]
    fn wrong_market_and_bad_signature() {
        let (v, mut sub, market, _) = setup();
        let other = Address::repeat_byte(0x99);
        assert_eq!(
            check_stateless(&v, &sub, &other).map_err(|e| e.reason()),
            Err("wrong_data_market")
        );
        sub.signature.truncate(10);
        assert_eq!(
            check_stateless(&v, &sub, &market).map_err(|e| e.reason()),
            Err("bad_length")
        );
    }

    #[test]
    fn protocol_state_when_present_must_be_ours() {
        let (v, mut sub, market, signer) = setup();
        let ours = format!("{:#x}", v.domain().verifying_contract)
            .to_uppercase()
            .replace("0X", "0x");
        sub.protocol_state = Some(ours);
        assert_eq!(
            check_stateless(&v, &sub, &market).map(|r| r.signer),
            Ok(signer)
        );
        sub.protocol_state = Some(format!("{:#x}", Address::repeat_byte(0x77)));
        assert_eq!(
            check_stateless(&v, &sub, &market).map_err(|e| e.reason()),
            Err("wrong_protocol_state")
        );
        sub.protocol_state = Some("not an address".into());
        assert_eq!(
            check_stateless(&v, &sub, &market).map_err(|e| e.reason()),
            Err("wrong_protocol_state")
        );
    }

    #[test]
    fn signer_rules() {
        let a = Address::repeat_byte(1);
        let b = Address::repeat_byte(2);
        assert_eq!(check_signer(1, a, Some(a), false), Ok(()));
        assert_eq!(
            check_signer(1, a, None, false),
            Err(Rejection::UnknownSlot { slot: 1 })
        );
        assert_eq!(
            check_signer(1, a, Some(Address::ZERO), false),
            Err(Rejection::UnknownSlot { slot: 1 })
        );
        assert_eq!(
            check_signer(1, a, Some(b), false).map_err(|e| e.reason()),
            Err("not_slot_snapshotter")
        );
        assert_eq!(
            check_signer(1, a, Some(a), true),
            Err(Rejection::FlaggedSigner { signer: a })
        );
    }

    #[test]
    fn window_bounds_are_inclusive() {
        let w = EpochWindow {
            release_block: 100,
            window_blocks: 10,
        };
        assert_eq!(check_window(1, Some(100), Some(w)), Ok(()));
        assert_eq!(check_window(1, Some(110), Some(w)), Ok(()));
        assert_eq!(
            check_window(1, Some(111), Some(w)),
            Err(Rejection::OutsideWindow {
                block: 111,
                begin: 100,
                end: 110
            })
        );
        assert_eq!(
            check_window(1, Some(99), Some(w)).map_err(|e| e.reason()),
            Err("outside_window")
        );
        assert_eq!(
            check_window(1, None, Some(w)),
            Err(Rejection::UnknownHeader)
        );
        assert_eq!(
            check_window(7, Some(100), None),
            Err(Rejection::EpochNotReleased { epoch: 7 })
        );
        assert!(!w.is_closed(110));
        assert!(w.is_closed(111));
    }

    #[test]
    fn caps_duplicates_and_kinds() {
        assert_eq!(check_slot_cap(2, 2, false), Ok(()));
        assert_eq!(
            check_slot_cap(3, 2, false),
            Err(Rejection::SlotEpochCap { cap: 2 })
        );
        assert_eq!(check_slot_cap(3, 2, true), Ok(()));
        assert_eq!(check_first(true), Err(Rejection::Duplicate));
        assert_eq!(check_first(false), Ok(()));
        let (_, mut sub, _, _) = setup();
        assert_eq!(kind(&sub), Kind::Epoch(4));
        sub.request.epoch_id = 0;
        assert_eq!(kind(&sub), Kind::Simulation);
    }
}
