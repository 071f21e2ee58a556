//! Gossipsub submissions (docs/protocol.md §10, docs/gossipsub.md): the topics, the collectors'
//! message forms, and the deterministic submission id a gossiped submission gets.
//!
//! The newest collectors publish each submission on `<prefix>/all` (simulations on `<prefix>/0`)
//! as a JSON envelope `{"epoch_id":N,"submissions":[<SnapshotSubmission>],"snapshotter_id":
//! "<peer id>","signature":…}`, and every 10 s a heartbeat on both topics. A bare
//! `SnapshotSubmission` object is accepted too. [`parse`] tells these apart without rewriting a
//! byte: each submission comes back as the exact text it had inside the message.
//!
//! Gossipsub carries no submission id, so [`content_id`] derives one from the submission's content
//! (the rule is in docs/gossipsub.md): the same submission gets the same id on every path and
//! every replica, and [`queue_body`] makes the same queue body for every copy of the same text.

use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::collect::{CollectMessage, DecodeError, MAX_MESSAGE_BYTES, UUID_LEN};
use crate::submission::SnapshotSubmission;

/// Topic prefix the collectors use unless configured otherwise.
pub const DEFAULT_TOPIC_PREFIX: &str = "/powerloom/snapshot-submissions";

/// Rendezvous string the collectors advertise and search in the DHT (their `RENDEZVOUS_POINT`
/// default).
pub const DEFAULT_RENDEZVOUS: &str = "powerloom-snapshot-sequencer-network";

/// Project id of the collectors' mesh-formation heartbeat on `<prefix>/all`.
pub const MESH_FORMATION_PROJECT: &str = "test:mesh-formation:local-collector";

/// Largest gossip message taken apart. A collector's envelope of one submission is ~1 KiB; this is
/// room for two maximal (16 KiB) submissions or several real ones, far below gossipsub's 1 MiB
/// transport cap, so one message can never make the validator (or a peer's forward queue) hold
/// more than this.
pub const MAX_GOSSIP_MESSAGE_BYTES: usize = 32 * 1024;

/// Most submissions one envelope may carry. Deployed collectors send one; the envelope's type
/// allows a list, so a few are accepted rather than punishing a future batching collector.
pub const MAX_SUBMISSIONS_PER_MESSAGE: usize = 8;

/// Domain separation of the content-id hash (never change it: ids are stored and proven).
pub const CONTENT_ID_DOMAIN: &[u8] = b"powerloom-submission-content-id/v1";

/// The two topics of a prefix: discovery and heartbeats (`/0`), submissions (`/all`).
pub fn topics(prefix: &str) -> (String, String) {
    let p = prefix.trim_end_matches('/');
    (format!("{p}/0"), format!("{p}/all"))
}

/// The DHT key the collectors advertise a namespace under (go-libp2p's `RoutingDiscovery`): the
/// multihash `sha2-256(namespace)` (`0x12 0x20` + digest), i.e. the key of
/// `CIDv1(raw, sha2-256(namespace))` in a provider record.
pub fn rendezvous_key(namespace: &str) -> Vec<u8> {
    let mut key = vec![0x12, 0x20];
    key.extend_from_slice(&Sha256::digest(namespace.as_bytes()));
    key
}

/// What one gossip message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GossipPayload<'a> {
    /// An envelope without submissions (`null`, missing or empty): the collectors' heartbeat.
    Heartbeat,
    /// Submissions, each the exact text it had in the message; mesh-formation heartbeats among
    /// them are counted in `mesh_formation` and left out.
    Submissions {
        /// Exact JSON text of each real submission, in message order.
        texts: Vec<&'a str>,
        /// Mesh-formation entries skipped (`epochId` 0 and an empty `snapshotCid`).
        mesh_formation: usize,
    },
}

/// Why a gossip message is not one the collectors send. Stable labels: [`GossipError::reason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GossipError {
    /// Over [`MAX_GOSSIP_MESSAGE_BYTES`].
    #[error("gossip message of {0} bytes exceeds {MAX_GOSSIP_MESSAGE_BYTES}")]
    Oversize(usize),
    /// Not a JSON object, or neither an envelope nor a submission.
    #[error("not a submission envelope: {0}")]
    NotEnvelope(String),
    /// More than [`MAX_SUBMISSIONS_PER_MESSAGE`] submissions.
    #[error("envelope carries {0} submissions, more than {MAX_SUBMISSIONS_PER_MESSAGE}")]
    TooManySubmissions(usize),
    /// One entry of `submissions` is not a submission object.
    #[error("submission {index} is not a submission: {detail}")]
    BadSubmission {
        /// Position in the envelope.
        index: usize,
        /// Cause.
        detail: String,
    },
    /// One submission's text is longer than a `/collect` message may be.
    #[error("submission {0} exceeds the {MAX_MESSAGE_BYTES}-byte message cap")]
    SubmissionOversize(usize),
}

impl GossipError {
    /// Stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            GossipError::Oversize(_) => "gossip_oversize",
            GossipError::NotEnvelope(_) => "gossip_not_envelope",
            GossipError::TooManySubmissions(_) => "gossip_too_many_submissions",
            GossipError::BadSubmission { .. } => "bad_json",
            GossipError::SubmissionOversize(_) => "oversize",
        }
    }
}

/// The keys that tell an envelope from a bare submission; everything else is ignored.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow, default)]
    submissions: Option<Option<Vec<&'a RawValue>>>,
    #[serde(borrow, default)]
    epoch_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    snapshotter_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    request: Option<&'a RawValue>,
}

/// The parts of a submission that make it a mesh-formation heartbeat.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct HeartbeatProbe {
    request: Option<HeartbeatRequest>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct HeartbeatRequest {
    epoch_id: Option<serde_json::Value>,
    snapshot_cid: Option<serde_json::Value>,
}

/// `epochId` 0 (absent, `null`, `0` or `"0"`) and an empty `snapshotCid` (absent, `null` or
/// `""`): how the collectors' mesh-formation heartbeat looks, and how DSV nodes recognise it.
fn is_mesh_formation(text: &str) -> bool {
    use serde_json::Value;
    let Ok(p) = serde_json::from_str::<HeartbeatProbe>(text) else {
        return false;
    };
    let r = p.request.unwrap_or_default();
    let epoch_zero = match r.epoch_id {
        None | Some(Value::Null) => true,
        Some(Value::Number(n)) => n.as_u64() == Some(0),
        Some(Value::String(s)) => s == "0",
        Some(_) => false,
    };
    let cid_empty = match r.snapshot_cid {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    };
    epoch_zero && cid_empty
}

/// Takes one gossip message apart (docs/protocol.md §10). Pure; never rewrites a byte.
pub fn parse(data: &[u8]) -> Result<GossipPayload<'_>, GossipError> {
    if data.len() > MAX_GOSSIP_MESSAGE_BYTES {
        return Err(GossipError::Oversize(data.len()));
    }
    let text =
        std::str::from_utf8(data).map_err(|_| GossipError::NotEnvelope("not UTF-8".into()))?;
    let trimmed = text.trim();
    if !trimmed.starts_with('{') {
        return Err(GossipError::NotEnvelope("not a JSON object".into()));
    }
    let probe: Probe<'_> =
        serde_json::from_str(trimmed).map_err(|e| GossipError::NotEnvelope(e.to_string()))?;
    let is_envelope =
        probe.submissions.is_some() || probe.epoch_id.is_some() || probe.snapshotter_id.is_some();
    let entries: Vec<&str> = if is_envelope {
        probe
            .submissions
            .flatten()
            .unwrap_or_default()
            .into_iter()
            .map(RawValue::get)
            .collect()
    } else if probe.request.is_some() {
        vec![trimmed]
    } else {
        return Err(GossipError::NotEnvelope(
            "neither an envelope nor a submission".into(),
        ));
    };
    if entries.is_empty() {
        return Ok(GossipPayload::Heartbeat);
    }
    if entries.len() > MAX_SUBMISSIONS_PER_MESSAGE {
        return Err(GossipError::TooManySubmissions(entries.len()));
    }
    let mut texts = Vec::with_capacity(entries.len());
    let mut mesh_formation = 0;
    for (index, t) in entries.into_iter().enumerate() {
        if !t.starts_with('{') {
            return Err(GossipError::BadSubmission {
                index,
                detail: "not a JSON object".into(),
            });
        }
        if UUID_LEN + t.len() > MAX_MESSAGE_BYTES {
            return Err(GossipError::SubmissionOversize(index));
        }
        if is_mesh_formation(t) {
            mesh_formation += 1;
        } else {
            texts.push(t);
        }
    }
    Ok(GossipPayload::Submissions {
        texts,
        mesh_formation,
    })
}

/// Appends `field` as `u32be(len) ‖ bytes`.
fn put(h: &mut Sha256, bytes: &[u8]) {
    h.update(u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    h.update(bytes);
}

/// Appends a hex-encoded field as its value: tag 1 and the decoded bytes when it is hex (`0x`
/// optional, any case), else tag 2 and the text as sent; tag 0 when absent.
fn put_hex(h: &mut Sha256, text: Option<&str>) {
    match text {
        None => h.update([0u8]),
        Some(t) => {
            let digits = t
                .strip_prefix("0x")
                .or_else(|| t.strip_prefix("0X"))
                .unwrap_or(t);
            match hex::decode(digits) {
                Ok(bytes) if !digits.is_empty() => {
                    h.update([1u8]);
                    put(h, &bytes);
                }
                _ => {
                    h.update([2u8]);
                    put(h, t.as_bytes());
                }
            }
        }
    }
}

/// The deterministic submission id of a submission's content (docs/gossipsub.md, "Content id"):
/// a UUID version 8 made of the first 16 bytes of
///
/// ```text
/// SHA-256( "powerloom-submission-content-id/v1" ‖ 0x00 ‖
///          u64be(slotId) ‖ u64be(deadline) ‖ u64be(epochId) ‖
///          field(snapshotCid) ‖ field(projectId) ‖
///          hexfield(signature) ‖ hexfield(header) ‖ hexfield(dataMarket) ‖ hexfield(protocolState) )
/// field(s)    = u32be(len) ‖ UTF-8 bytes
/// hexfield(s) = 0x01 ‖ field(hex-decoded bytes)   when s is hex (0x optional, any case)
///             | 0x02 ‖ field(s)                   otherwise
///             | 0x00                              when absent (protocolState only)
/// ```
///
/// It covers the signed request, the signature, and every other field the verifier judges
/// (header, data market, protocol state), by value: a copy re-spelled (numbers as strings, hex in
/// another case, `0x` added) keeps its id, a copy with any judged value changed gets another one,
/// so a tampered copy can never take an honest submission's id. `nodeVersion` and unknown keys are
/// left out (free text, not judged).
pub fn content_id(s: &SnapshotSubmission) -> Uuid {
    let r = &s.request;
    let mut h = Sha256::new();
    h.update(CONTENT_ID_DOMAIN);
    h.update([0u8]);
    h.update(r.slot_id.to_be_bytes());
    h.update(r.deadline.to_be_bytes());
    h.update(r.epoch_id.to_be_bytes());
    put(&mut h, r.snapshot_cid.as_bytes());
    put(&mut h, r.project_id.as_bytes());
    put_hex(&mut h, Some(&s.signature));
    put_hex(&mut h, Some(&s.header));
    put_hex(&mut h, Some(&s.data_market));
    put_hex(&mut h, s.protocol_state.as_deref());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The queue body of a gossiped submission: its content id and its exact text, parsed back the
/// way the verifier will parse it. Every copy of the same text gives the same bytes.
pub fn queue_body(text: &str) -> Result<CollectMessage, DecodeError> {
    let submission: SnapshotSubmission =
        serde_json::from_str(text).map_err(|e| DecodeError::BadJson(e.to_string()))?;
    let id = content_id(&submission);
    let mut raw = Vec::with_capacity(UUID_LEN + text.len());
    raw.extend_from_slice(id.hyphenated().to_string().as_bytes());
    raw.extend_from_slice(text.as_bytes());
    CollectMessage::parse(&raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = r#"{"request":{"slotId":7,"deadline":120,"snapshotCid":"bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4","epochId":20,"projectId":"p:0xabc:UNISWAPV2"},"signature":"aa","header":"0x01","dataMarket":"0x00000000000000000000000000000000000000aa","nodeVersion":"v1"}"#;

    #[test]
    fn topics_from_a_prefix() {
        assert_eq!(
            topics(DEFAULT_TOPIC_PREFIX),
            (
                "/powerloom/snapshot-submissions/0".to_string(),
                "/powerloom/snapshot-submissions/all".to_string()
            )
        );
        assert_eq!(topics("/x/"), ("/x/0".to_string(), "/x/all".to_string()));
    }

    #[test]
    fn envelope_bare_and_heartbeats() {
        let env = format!(
            r#"{{"epoch_id":20,"submissions":[{SUB}],"snapshotter_id":"12D3KooW","signature":null}}"#
        );
        assert_eq!(
            parse(env.as_bytes()),
            Ok(GossipPayload::Submissions {
                texts: vec![SUB],
                mesh_formation: 0
            })
        );
        assert_eq!(
            parse(SUB.as_bytes()),
            Ok(GossipPayload::Submissions {
                texts: vec![SUB],
                mesh_formation: 0
            })
        );
        // The discovery heartbeat (Go marshals the []byte signature as base64).
        let hb = br#"{"epoch_id":0,"submissions":null,"snapshotter_id":"12D3KooW","signature":"aGVhcnRiZWF0LWRpc2NvdmVyeS0x"}"#;
        assert_eq!(parse(hb), Ok(GossipPayload::Heartbeat));
        assert_eq!(parse(br#"{"epoch_id":0}"#), Ok(GossipPayload::Heartbeat));
        assert_eq!(
            parse(br#"{"epoch_id":0,"submissions":[]}"#),
            Ok(GossipPayload::Heartbeat)
        );
        // The mesh-formation heartbeat on /all, as Go writes it (zero fields omitted).
        let mf = br#"{"epoch_id":0,"submissions":[{"request":{"projectId":"test:mesh-formation:local-collector"}}],"snapshotter_id":"12D3KooW","signature":"aGVhcnQ="}"#;
        assert_eq!(
            parse(mf),
            Ok(GossipPayload::Submissions {
                texts: vec![],
                mesh_formation: 1
            })
        );
    }

    #[test]
    fn malformed_messages_have_reasons() {
        assert_eq!(
            parse(b"[1]").map_err(|e| e.reason()),
            Err("gossip_not_envelope")
        );
        assert_eq!(
            parse(b"{").map_err(|e| e.reason()),
            Err("gossip_not_envelope")
        );
        assert_eq!(
            parse(b"{\"a\":1}").map_err(|e| e.reason()),
            Err("gossip_not_envelope")
        );
        assert_eq!(
            parse(br#"{"submissions":[1]}"#).map_err(|e| e.reason()),
            Err("bad_json")
        );
        assert_eq!(
            parse(&vec![b' '; MAX_GOSSIP_MESSAGE_BYTES + 1]).map_err(|e| e.reason()),
            Err("gossip_oversize")
        );
        let many = format!(
            r#"{{"submissions":[{}]}}"#,
            [SUB; MAX_SUBMISSIONS_PER_MESSAGE + 1].join(",")
        );
        assert_eq!(
            parse(many.as_bytes()).map_err(|e| e.reason()),
            Err("gossip_too_many_submissions")
        );
        let big = SUB.replace("v1", &"x".repeat(MAX_MESSAGE_BYTES));
        assert_eq!(
            parse(format!(r#"{{"submissions":[{big}]}}"#).as_bytes()).map_err(|e| e.reason()),
            Err("oversize")
        );
    }

    #[test]
    fn content_id_is_by_value_and_covers_every_judged_field() {
        let s: SnapshotSubmission = serde_json::from_str(SUB).expect("json");
        let id = content_id(&s);
        assert_eq!(id.get_version_num(), 8);
        // Re-spelled but equal: numbers as strings, hex upper case or without 0x, other nodeVersion.
        let respelled = SUB
            .replace("\"slotId\":7", "\"slotId\":\"7\"")
            .replace("\"signature\":\"aa\"", "\"signature\":\"0xAA\"")
            .replace(
                "0x00000000000000000000000000000000000000aa",
                "00000000000000000000000000000000000000AA",
            )
            .replace("\"v1\"", "\"v2\"");
        let r: SnapshotSubmission = serde_json::from_str(&respelled).expect("json");
        assert_eq!(content_id(&r), id);
        // Any judged value changed: another id.
        for (from, to) in [
            ("\"slotId\":7", "\"slotId\":8"),
            ("\"deadline\":120", "\"deadline\":121"),
            ("\"epochId\":20", "\"epochId\":21"),
            ("UNISWAPV2", "UNISWAPV3"),
            ("bafkrei", "bafkreh"),
            ("\"signature\":\"aa\"", "\"signature\":\"ab\""),
            ("\"header\":\"0x01\"", "\"header\":\"0x02\""),
            ("00aa\"", "00ab\""),
            (
                "\"nodeVersion\"",
                "\"protocolState\":\"0x01\",\"nodeVersion\"",
            ),
        ] {
            let t: SnapshotSubmission =
                serde_json::from_str(&SUB.replacen(from, to, 1)).expect("json");
            assert_ne!(content_id(&t), id, "{from} -> {to}");
        }
        // Hex and non-hex spellings of a field never collide.
        let mut a = s.clone();
        a.header = "zz".into();
        let mut b = s.clone();
        b.header = "0x7a7a".into();
        assert_ne!(content_id(&a), content_id(&b));
    }

    #[test]
    fn queue_body_is_the_content_id_and_the_exact_text() {
        let m = queue_body(SUB).expect("body");
        let s: SnapshotSubmission = serde_json::from_str(SUB).expect("json");
        assert_eq!(m.submission_id, content_id(&s));
        assert_eq!(&m.raw[UUID_LEN..], SUB.as_bytes());
        assert_eq!(queue_body(SUB).expect("again").raw, m.raw);
        assert!(queue_body("{\"request\":5}").is_err());
    }

    #[test]
    fn rendezvous_key_is_the_sha256_multihash() {
        let k = rendezvous_key("");
        assert_eq!(&k[..2], &[0x12, 0x20]);
        assert_eq!(
            hex::encode(&k[2..]),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
