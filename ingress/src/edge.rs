//! Stateless checks at the edge: only plausible submissions cost an SQS message (and a verify
//! invocation). A pure function over the decoded [`CollectMessage`] and the configured
//! [`EdgePolicy`]; the reader calls it after the message was charged to the peer's rate budget,
//! so a peer sending only malformed messages is throttled and cut off like any flooder.
//!
//! Checked, in order: every field present and well formed (core's
//! [`SnapshotSubmission::validate_fields`]: CID parses, project id, header, data market, node
//! version), the market on the allow-list, the signature of the right shape (65 bytes, `v` 27/28,
//! low `s`; core's [`RawSignature::parse`]), `protocolState` an address when sent, no control or
//! non-character in any attribute value, and the body made only of characters SQS accepts (XML
//! 1.0: `#x9 #xA #xD #x20–#xD7FF #xE000–#xFFFD #x10000–#x10FFFF`). Reasons are core's where
//! core has one. Nothing is ever rewritten: a message passes byte-exact or not at all.
//!
//! Not checked here: the signer (needs the slot owner), the epoch window and caps (need state).
//! Those stay with the verifier.

use std::collections::BTreeSet;

use sequencer_core::collect::CollectMessage;
use sequencer_core::eip712::{RawSignature, SignatureError};
use sequencer_core::submission::{parse_address, FieldError};
use sequencer_core::Address;

/// Which submissions the edge lets through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgePolicy {
    /// Data markets served. `None`: any market (library default and `--any-market`); the binary
    /// refuses to start with neither a list nor `--any-market`.
    pub markets: Option<BTreeSet<Address>>,
}

impl EdgePolicy {
    /// A policy serving exactly `markets`.
    pub fn markets(markets: impl IntoIterator<Item = Address>) -> Self {
        Self {
            markets: Some(markets.into_iter().collect()),
        }
    }
}

/// Why the edge refused a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EdgeReject {
    /// A field is missing or malformed (core's reason).
    #[error(transparent)]
    Field(#[from] FieldError),
    /// The signature is not a well-formed secp256k1 signature (core's reason).
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// The data market is not one this sequencer serves.
    #[error("data market {0} is not served here")]
    Market(String),
    /// `protocolState` is sent but is not an address.
    #[error("protocolState is not an address")]
    ProtocolState,
    /// An attribute value holds a control character or a non-character.
    #[error("attribute {0} holds a control or non-character")]
    AttributeChar(&'static str),
    /// The body holds a character SQS does not accept in a message body.
    #[error("body holds U+{0:04X}, not allowed in an SQS message body")]
    BodyChar(u32),
}

impl EdgeReject {
    /// Stable label for `ingress_rejects_total{reason}`.
    pub fn as_str(&self) -> &'static str {
        match self {
            EdgeReject::Field(e) => e.reason(),
            EdgeReject::Signature(e) => e.reason(),
            // Core's reason for the same rule in the verifier.
            EdgeReject::Market(_) => "wrong_data_market",
            EdgeReject::ProtocolState => "bad_protocol_state",
            EdgeReject::AttributeChar(_) => "attribute_bad_char",
            EdgeReject::BodyChar(_) => "body_bad_char",
        }
    }
}

/// A character allowed in SQS message bodies and string attribute values (XML 1.0 `Char`).
pub fn is_sqs_char(c: char) -> bool {
    matches!(c as u32, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
}

/// A Unicode non-character (U+FDD0–U+FDEF and the last two code points of every plane).
pub fn is_noncharacter(c: char) -> bool {
    let v = c as u32;
    (0xFDD0..=0xFDEF).contains(&v) || v & 0xFFFE == 0xFFFE
}

/// Checks one decoded message; `attributes` are the values that become SQS attributes
/// (`Envelope::attributes`). Returns the first reason found.
pub fn check(
    policy: &EdgePolicy,
    msg: &CollectMessage,
    attributes: &[(&'static str, String)],
) -> Result<(), EdgeReject> {
    let s = &msg.submission;
    s.validate_fields()?;
    if let Some(allowed) = &policy.markets {
        // validate_fields has just parsed it; a failure here would be a core bug, still refused.
        match parse_address(&s.data_market) {
            Some(a) if allowed.contains(&a) => {}
            _ => return Err(EdgeReject::Market(s.data_market.clone())),
        }
    }
    RawSignature::parse(&s.signature)?;
    if s.protocol_state
        .as_deref()
        .is_some_and(|p| parse_address(p).is_none())
    {
        return Err(EdgeReject::ProtocolState);
    }
    for (name, value) in attributes {
        if value
            .chars()
            .any(|c| c.is_control() || is_noncharacter(c) || !is_sqs_char(c))
        {
            return Err(EdgeReject::AttributeChar(name));
        }
    }
    // The decoder only yields UTF-8 JSON; a body that is not UTF-8 is refused here too.
    let body = std::str::from_utf8(&msg.raw).map_err(|_| EdgeReject::BodyChar(0xFFFD))?;
    if let Some(c) = body.chars().find(|c| !is_sqs_char(*c)) {
        return Err(EdgeReject::BodyChar(c as u32));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn character_classes() {
        for c in [
            '\t',
            '\n',
            '\r',
            ' ',
            'a',
            '\u{D7FF}',
            '\u{E000}',
            '\u{FFFD}',
            '\u{10000}',
        ] {
            assert!(is_sqs_char(c), "{c:?}");
        }
        for c in ['\0', '\u{1}', '\u{1F}', '\u{FFFE}', '\u{FFFF}'] {
            assert!(!is_sqs_char(c), "{c:?}");
        }
        for c in [
            '\u{FDD0}',
            '\u{FDEF}',
            '\u{FFFE}',
            '\u{FFFF}',
            '\u{1FFFF}',
            '\u{10FFFF}',
        ] {
            assert!(is_noncharacter(c), "{c:?}");
        }
        for c in ['\u{FDCF}', '\u{FDF0}', '\u{FFFD}', 'a'] {
            assert!(!is_noncharacter(c), "{c:?}");
        }
    }
}
