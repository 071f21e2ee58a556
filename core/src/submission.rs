//! Submission types (docs/protocol.md §1): the JSON form spoken on `/collect` and the
//! protobuf form of `core/proto/submission.proto`, plus field validation.

use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize};

use crate::cids;

/// Longest project id accepted, in bytes.
pub const MAX_PROJECT_ID_BYTES: usize = 256;
/// Longest `nodeVersion` accepted, in bytes.
pub const MAX_NODE_VERSION_BYTES: usize = 64;

/// The signed part of a submission (`EIPRequest` in EIP-712 terms).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Request {
    #[serde(deserialize_with = "u64_lenient", skip_serializing_if = "is_zero")]
    pub slot_id: u64,
    #[serde(deserialize_with = "u64_lenient", skip_serializing_if = "is_zero")]
    pub deadline: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub snapshot_cid: String,
    #[serde(deserialize_with = "u64_lenient", skip_serializing_if = "is_zero")]
    pub epoch_id: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub project_id: String,
}

/// One snapshot submission as a snapshotter sends it.
///
/// Serializes the way Go's `encoding/json` writes the generated struct: these keys
/// in this order, empty and zero fields omitted, integers as numbers. Deserializing
/// also accepts integers as numeric strings (the protojson form seen in real batches)
/// and ignores unknown keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SnapshotSubmission {
    #[serde(deserialize_with = "request_or_null")]
    pub request: Request,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub signature: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub header: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub data_market: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_version: Option<String>,
    /// The ProtocolState address the signer used as `verifyingContract` (field 6, sent by newer
    /// collectors); when present it must be the configured one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol_state: Option<String>,
}

/// A field that does not meet docs/protocol.md §1.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("snapshotCid is not a CID: {0}")]
    SnapshotCid(String),
    #[error("projectId is empty")]
    ProjectIdEmpty,
    #[error("projectId is longer than {MAX_PROJECT_ID_BYTES} bytes")]
    ProjectIdTooLong,
    #[error("projectId contains a control character")]
    ProjectIdControl,
    #[error("header is not a 0x-prefixed 32-byte hex hash")]
    Header,
    #[error("dataMarket is not a 20-byte hex address")]
    DataMarket,
    #[error("nodeVersion is longer than {MAX_NODE_VERSION_BYTES} bytes")]
    NodeVersionTooLong,
}

impl FieldError {
    /// Stable label for metrics and rejection records.
    pub fn reason(&self) -> &'static str {
        match self {
            FieldError::SnapshotCid(_) => "bad_snapshot_cid",
            FieldError::ProjectIdEmpty => "empty_project_id",
            FieldError::ProjectIdTooLong => "project_id_too_long",
            FieldError::ProjectIdControl => "project_id_control_char",
            FieldError::Header => "bad_header",
            FieldError::DataMarket => "bad_data_market",
            FieldError::NodeVersionTooLong => "node_version_too_long",
        }
    }
}

impl SnapshotSubmission {
    /// `epochId == 0` marks a simulation submission: checked and counted as
    /// liveness for the slot, never batched.
    pub fn is_simulation(&self) -> bool {
        self.request.epoch_id == 0
    }

    /// Checks every field's form (not the signature, which `eip712` checks).
    pub fn validate_fields(&self) -> Result<(), FieldError> {
        let r = &self.request;
        cids::parse_cid(&r.snapshot_cid).map_err(|e| FieldError::SnapshotCid(e.to_string()))?;
        if r.project_id.is_empty() {
            return Err(FieldError::ProjectIdEmpty);
        }
        if r.project_id.len() > MAX_PROJECT_ID_BYTES {
            return Err(FieldError::ProjectIdTooLong);
        }
        if r.project_id.chars().any(char::is_control) {
            return Err(FieldError::ProjectIdControl);
        }
        parse_block_hash(&self.header).ok_or(FieldError::Header)?;
        parse_address(&self.data_market).ok_or(FieldError::DataMarket)?;
        if self
            .node_version
            .as_ref()
            .is_some_and(|v| v.len() > MAX_NODE_VERSION_BYTES)
        {
            return Err(FieldError::NodeVersionTooLong);
        }
        Ok(())
    }

    /// The header as a block hash, if well formed.
    pub fn header_hash(&self) -> Option<[u8; 32]> {
        parse_block_hash(&self.header)
    }

    /// Canonical JSON text: the Go `encoding/json` form, compact. Used for the
    /// `submissions` entries of batch documents, so it must never change for a
    /// given submission.
    pub fn to_canonical_json(&self) -> String {
        // Serializing plain strings and integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Protobuf encoding (`submission.SnapshotSubmission`).
    pub fn to_protobuf(&self) -> Vec<u8> {
        use prost::Message;
        proto::SnapshotSubmission::from(self).encode_to_vec()
    }

    /// Decodes the protobuf encoding.
    pub fn from_protobuf(bytes: &[u8]) -> Result<Self, prost::DecodeError> {
        use prost::Message;
        proto::SnapshotSubmission::decode(bytes).map(Self::from)
    }
}

/// Parses `0x` + 64 hex digits.
pub fn parse_block_hash(s: &str) -> Option<[u8; 32]> {
    let hex_part = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out).ok()?;
    Some(out)
}

/// Parses a 20-byte hex address, `0x` optional, any case.
pub fn parse_address(s: &str) -> Option<alloy_primitives::Address> {
    let hex_part = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    let mut out = [0u8; 20];
    hex::decode_to_slice(hex_part, &mut out).ok()?;
    Some(alloy_primitives::Address::from(out))
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn request_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<Request, D::Error> {
    Ok(Option::<Request>::deserialize(d)?.unwrap_or_default())
}

/// Accepts a JSON number or a string of decimal digits (protojson writes uint64 as strings).
fn u64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct V;
    impl de::Visitor<'_> for V {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an unsigned 64-bit integer or a string of decimal digits")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom("negative integer"))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<u64, E> {
            Err(E::custom("not an integer"))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(E::custom("not a decimal integer string"));
            }
            v.parse().map_err(E::custom)
        }
        fn visit_unit<E: de::Error>(self) -> Result<u64, E> {
            Ok(0)
        }
    }
    d.deserialize_any(V)
}

/// prost types matching `core/proto/submission.proto`.
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {
        #[prost(uint64, tag = "1")]
        pub slot_id: u64,
        #[prost(uint64, tag = "2")]
        pub deadline: u64,
        #[prost(string, tag = "3")]
        pub snapshot_cid: String,
        #[prost(uint64, tag = "4")]
        pub epoch_id: u64,
        #[prost(string, tag = "5")]
        pub project_id: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SnapshotSubmission {
        #[prost(message, optional, tag = "1")]
        pub request: Option<Request>,
        #[prost(string, tag = "2")]
        pub signature: String,
        #[prost(string, tag = "3")]
        pub header: String,
        #[prost(string, tag = "4")]
        pub data_market: String,
        #[prost(string, optional, tag = "5")]
        pub node_version: Option<String>,
        #[prost(string, optional, tag = "6")]
        pub protocol_state: Option<String>,
    }
}

impl From<&SnapshotSubmission> for proto::SnapshotSubmission {
    fn from(s: &SnapshotSubmission) -> Self {
        let r = &s.request;
        proto::SnapshotSubmission {
            request: Some(proto::Request {
                slot_id: r.slot_id,
                deadline: r.deadline,
                snapshot_cid: r.snapshot_cid.clone(),
                epoch_id: r.epoch_id,
                project_id: r.project_id.clone(),
            }),
            signature: s.signature.clone(),
            header: s.header.clone(),
            data_market: s.data_market.clone(),
            node_version: s.node_version.clone(),
            protocol_state: s.protocol_state.clone(),
        }
    }
}

impl From<proto::SnapshotSubmission> for SnapshotSubmission {
    fn from(p: proto::SnapshotSubmission) -> Self {
        let r = p.request.unwrap_or_default();
        SnapshotSubmission {
            request: Request {
                slot_id: r.slot_id,
                deadline: r.deadline,
                snapshot_cid: r.snapshot_cid,
                epoch_id: r.epoch_id,
                project_id: r.project_id,
            },
            signature: p.signature,
            header: p.header,
            data_market: p.data_market,
            node_version: p.node_version,
            protocol_state: p.protocol_state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> SnapshotSubmission {
        SnapshotSubmission {
            request: Request {
                slot_id: 4036,
                deadline: 6624038,
                snapshot_cid: "bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy".into(),
                epoch_id: 11267,
                project_id: "aggregate_pairContract_24h_trade_volume:0x8ef79d6c328c25da633559c20c75f638a4863462:UNISWAPV2".into(),
            },
            signature: "eec085a6726db340ae7ee3bbb8185cf8733d48d2e27276d5017fd0cb56f83a095bb8bde86757e1719f2d6e60a5e6a84644e39cfcebb5e345fb1f6684c7fbcb2c1b".into(),
            header: "0xbfcdbbe00299b89c983a93729da99049ed33adb808fb03c0448f6455af5c4bb0".into(),
            data_market: "0x0c2e22fe7526fAeF28E7A58c84f8723dEFcE200c".into(),
            node_version: None,
            protocol_state: None,
        }
    }

    #[test]
    fn go_json_form_has_numbers_and_omits_empty() {
        let mut s = sample();
        s.request.deadline = 0;
        let json = s.to_canonical_json();
        assert!(json.starts_with(r#"{"request":{"slotId":4036,"snapshotCid":"#));
        assert!(!json.contains("deadline"));
        assert!(!json.contains("nodeVersion"));
        let back: SnapshotSubmission = serde_json::from_str(&json).expect("round trip");
        assert_eq!(back, s);
    }

    #[test]
    fn accepts_numeric_strings_and_unknown_keys() {
        let json = r#"{"request":{"slotId":"4036","deadline":"6624038","snapshotCid":"bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy","epochId":"11267","projectId":"p"},"signature":"ab","header":"0x00","extra":true}"#;
        let s: SnapshotSubmission = serde_json::from_str(json).expect("parses");
        assert_eq!(s.request.slot_id, 4036);
        assert_eq!(s.request.epoch_id, 11267);
        assert!(
            serde_json::from_str::<SnapshotSubmission>(r#"{"request":{"slotId":"-1"}}"#).is_err()
        );
        assert!(
            serde_json::from_str::<SnapshotSubmission>(r#"{"request":{"slotId":1.5}}"#).is_err()
        );
        assert!(serde_json::from_str::<SnapshotSubmission>(
            r#"{"request":{"slotId":"18446744073709551616"}}"#
        )
        .is_err());
    }

    #[test]
    fn protobuf_round_trip() {
        let s = sample();
        let bytes = s.to_protobuf();
        assert_eq!(
            SnapshotSubmission::from_protobuf(&bytes).expect("decodes"),
            s
        );
        assert!(SnapshotSubmission::from_protobuf(&[0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn field_validation() {
        let ok = sample();
        assert_eq!(ok.validate_fields(), Ok(()));
        let mut s = ok.clone();
        s.request.snapshot_cid = "not-a-cid".into();
        assert!(matches!(
            s.validate_fields(),
            Err(FieldError::SnapshotCid(_))
        ));
        let mut s = ok.clone();
        s.request.project_id = String::new();
        assert_eq!(s.validate_fields(), Err(FieldError::ProjectIdEmpty));
        let mut s = ok.clone();
        s.request.project_id = "x".repeat(257);
        assert_eq!(s.validate_fields(), Err(FieldError::ProjectIdTooLong));
        let mut s = ok.clone();
        s.request.project_id = "a\nb".into();
        assert_eq!(s.validate_fields(), Err(FieldError::ProjectIdControl));
        let mut s = ok.clone();
        s.header = "bfcdbbe0".into();
        assert_eq!(s.validate_fields(), Err(FieldError::Header));
        let mut s = ok.clone();
        s.data_market = "0x1234".into();
        assert_eq!(s.validate_fields(), Err(FieldError::DataMarket));
        let mut s = ok;
        s.node_version = Some("v".repeat(65));
        assert_eq!(s.validate_fields(), Err(FieldError::NodeVersionTooLong));
    }
}
