//! Signed `/collect` messages from the simulated slot keys (`sequencer_core::devkeys`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sequencer_core::collect::CollectMessage;
use sequencer_core::devkeys;
use sequencer_core::eip712::{sign_request, Domain};
use sequencer_core::submission::{Request, SnapshotSubmission};
use sequencer_core::{Address, B256};

/// Signs a submission with simulated slot `slot`'s key (or `signer_slot`'s, to forge).
#[allow(clippy::too_many_arguments)]
pub fn signed_message(
    domain: &Domain,
    market: Address,
    id: &uuid::Uuid,
    slot: u64,
    signer_slot: u64,
    epoch: u64,
    project: &str,
    cid: &str,
    header: B256,
) -> (String, SnapshotSubmission) {
    let key = devkeys::sim_snapshotter_key(signer_slot).unwrap();
    let request = Request {
        slot_id: slot,
        deadline: epoch + 100,
        snapshot_cid: cid.to_string(),
        epoch_id: epoch,
        project_id: project.to_string(),
    };
    let signature = sign_request(domain, &request, &key).unwrap();
    let sub = SnapshotSubmission {
        request,
        signature,
        header: format!("{header:#x}"),
        data_market: format!("{market:#x}"),
        node_version: Some("test".into()),
        protocol_state: None,
    };
    let raw = CollectMessage::encode(id, &sub);
    (String::from_utf8(raw).unwrap(), sub)
}
