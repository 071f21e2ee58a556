//! `seqctl submission verify`: a submission's EIP-712 digest and recovered signer.

use std::path::Path;

use anyhow::{bail, Context, Result};
use sequencer_core::collect::CollectMessage;
use sequencer_core::eip712::{Domain, Verifier};
use sequencer_core::submission::{parse_address, SnapshotSubmission};
use serde_json::json;

use crate::{read_input, CheckFailed};

pub(crate) fn submission_verify(
    chain_id: u64,
    protocol_state: &str,
    file: &Path,
    json: bool,
) -> Result<()> {
    let verifying_contract = parse_address(protocol_state)
        .with_context(|| format!("--protocol-state {protocol_state:?} is not an address"))?;
    let bytes = read_input(file)?;
    let trimmed = bytes.trim_ascii();
    let submission: SnapshotSubmission = if trimmed.first() == Some(&b'{') {
        serde_json::from_slice(trimmed).context("not a submission")?
    } else {
        CollectMessage::parse(trimmed)
            .context("not a /collect message")?
            .submission
    };
    let verifier = Verifier::new(Domain {
        chain_id,
        verifying_contract,
    });
    let digest = verifier.digest(&submission.request);
    match verifier.recover(&submission) {
        Ok(r) => {
            if json {
                println!(
                    "{}",
                    json!({"ok": true, "digest": digest.to_string(), "signer": r.signer.to_checksum(None)})
                );
            } else {
                println!("digest {digest}");
                println!("signer {}", r.signer.to_checksum(None));
            }
            Ok(())
        }
        Err(e) => {
            if !json {
                println!("digest {digest}");
            }
            bail!(CheckFailed(format!(
                "invalid signature ({}): {e}",
                e.reason()
            )))
        }
    }
}
