//! The `/collect` byte stream (docs/protocol.md §2): each message is the 36 ASCII bytes
//! of a UUID immediately followed by one JSON object, back to back, with no length
//! prefix. [`CollectDecoder`] takes the stream in whatever pieces the transport
//! delivers (split or coalesced arbitrarily) and gives back whole messages.
//!
//! Framing is found by scanning the JSON object's braces (string- and escape-aware),
//! so one pass over each byte suffices no matter how the stream is cut.

use uuid::Uuid;

use crate::submission::SnapshotSubmission;

/// The libp2p protocol id deployed local collectors open their streams with (docs/protocol.md §2).
pub const PROTOCOL: &str = "/collect";

/// Cap on one message (UUID + JSON), in bytes. Real submissions are under 1 KiB;
/// 16 KiB leaves room for long project ids while bounding what one stream can make
/// the decoder buffer.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;
/// Length of a textual UUID (`8-4-4-4-12`).
pub const UUID_LEN: usize = 36;

/// One decoded `/collect` message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollectMessage {
    /// Chosen by the client, not signed: an identifier, never a key that may
    /// overwrite another submission.
    pub submission_id: Uuid,
    pub submission: SnapshotSubmission,
    /// The exact bytes received: UUID followed by the JSON object.
    pub raw: Vec<u8>,
}

/// Why a piece of the stream is not a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message exceeds {MAX_MESSAGE_BYTES} bytes")]
    Oversize,
    #[error("message does not start with a UUID")]
    BadUuid,
    #[error("expected a JSON object after the UUID")]
    Garbage,
    #[error("JSON object is not a submission: {0}")]
    BadJson(String),
    #[error("stream ended inside a message")]
    Truncated,
}

impl DecodeError {
    /// Stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Oversize => "oversize",
            DecodeError::BadUuid => "bad_uuid",
            DecodeError::Garbage => "garbage",
            DecodeError::BadJson(_) => "bad_json",
            DecodeError::Truncated => "truncated",
        }
    }

    /// True when the stream can no longer be framed and must be reset. A
    /// [`DecodeError::BadJson`] message was complete and skipped: decoding goes on.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, DecodeError::BadJson(_))
    }
}

impl CollectMessage {
    /// Decodes exactly one message, e.g. a queue message body.
    pub fn parse(raw: &[u8]) -> Result<Self, DecodeError> {
        let mut d = CollectDecoder::new();
        d.push(raw);
        let msg = d.next_message().ok_or(DecodeError::Truncated)??;
        if d.buffered_nonspace() {
            return Err(DecodeError::Garbage);
        }
        Ok(msg)
    }

    /// Writes the form deployed collectors write: UUID then the Go-style JSON.
    pub fn encode(submission_id: &Uuid, submission: &SnapshotSubmission) -> Vec<u8> {
        let json = submission.to_canonical_json();
        let mut out = Vec::with_capacity(UUID_LEN + json.len());
        out.extend_from_slice(submission_id.hyphenated().to_string().as_bytes());
        out.extend_from_slice(json.as_bytes());
        out
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scan {
    /// Looking for the start of a message (whitespace between messages is skipped).
    Start,
    /// Inside the JSON object at `depth`, `in_string`, after a backslash.
    Json {
        depth: u32,
        in_string: bool,
        escaped: bool,
    },
}

/// Incremental `/collect` decoder. Call [`push`](Self::push) with each chunk read,
/// then [`next_message`](Self::next_message) until it returns `None`. Buffered data
/// stays under [`MAX_MESSAGE_BYTES`] plus one chunk. After a fatal error the decoder
/// yields nothing more: the caller resets the stream.
#[derive(Debug)]
pub struct CollectDecoder {
    buf: Vec<u8>,
    /// Start of the current message in `buf`.
    start: usize,
    /// Next byte to scan.
    pos: usize,
    scan: Scan,
    failed: bool,
}

impl Default for CollectDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl CollectDecoder {
    pub fn new() -> Self {
        CollectDecoder {
            buf: Vec::new(),
            start: 0,
            pos: 0,
            scan: Scan::Start,
            failed: false,
        }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed {
            return;
        }
        // Drop consumed bytes before growing, so the buffer holds at most one
        // partial message plus the new chunk.
        if self.start > 0 {
            self.buf.drain(..self.start);
            // `pos` only matters inside a JSON object; between messages `start`
            // may have moved past it over whitespace.
            self.pos = self.pos.saturating_sub(self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held that are not yet part of a returned message.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// True once a fatal error was returned.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Call at end of stream: an error if a message was cut off.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if !self.failed && self.buffered_nonspace() {
            Err(DecodeError::Truncated)
        } else {
            Ok(())
        }
    }

    fn buffered_nonspace(&self) -> bool {
        self.buf[self.start..]
            .iter()
            .any(|b| !b.is_ascii_whitespace())
    }

    fn fail(&mut self, e: DecodeError) -> Option<Result<CollectMessage, DecodeError>> {
        self.failed = true;
        self.buf = Vec::new();
        self.start = 0;
        self.pos = 0;
        Some(Err(e))
    }

    /// The next complete message, an error, or `None` when more bytes are needed.
    pub fn next_message(&mut self) -> Option<Result<CollectMessage, DecodeError>> {
        if self.failed {
            return None;
        }
        if self.scan == Scan::Start {
            while self.start < self.buf.len() && self.buf[self.start].is_ascii_whitespace() {
                self.start += 1;
            }
            let avail = &self.buf[self.start..];
            // Reject a bad UUID as soon as its first wrong byte arrives.
            let seen = avail.len().min(UUID_LEN);
            if !uuid_prefix_ok(&avail[..seen]) {
                return self.fail(DecodeError::BadUuid);
            }
            if avail.len() <= UUID_LEN {
                return None;
            }
            let mut p = self.start + UUID_LEN;
            while p < self.buf.len() && self.buf[p].is_ascii_whitespace() {
                p += 1;
            }
            if p - self.start >= MAX_MESSAGE_BYTES {
                return self.fail(DecodeError::Oversize);
            }
            if p == self.buf.len() {
                return None;
            }
            if self.buf[p] != b'{' {
                return self.fail(DecodeError::Garbage);
            }
            self.scan = Scan::Json {
                depth: 1,
                in_string: false,
                escaped: false,
            };
            self.pos = p + 1;
        }
        let Scan::Json {
            mut depth,
            mut in_string,
            mut escaped,
        } = self.scan
        else {
            return None;
        };
        let limit = (self.start + MAX_MESSAGE_BYTES).min(self.buf.len());
        let mut end = None;
        let mut p = self.pos;
        while p < limit {
            let b = self.buf[p];
            p += 1;
            if in_string {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                }
            } else {
                match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(p);
                            break;
                        }
                    }
                    _ => {}
                }
            }
        }
        let Some(end) = end else {
            if p - self.start >= MAX_MESSAGE_BYTES {
                return self.fail(DecodeError::Oversize);
            }
            self.pos = p;
            self.scan = Scan::Json {
                depth,
                in_string,
                escaped,
            };
            return None;
        };
        let raw = &self.buf[self.start..end];
        self.start = end;
        self.pos = end;
        self.scan = Scan::Start;
        Some(decode_message(raw))
    }
}

fn decode_message(raw: &[u8]) -> Result<CollectMessage, DecodeError> {
    let id_text = std::str::from_utf8(&raw[..UUID_LEN]).map_err(|_| DecodeError::BadUuid)?;
    let submission_id = Uuid::parse_str(id_text).map_err(|_| DecodeError::BadUuid)?;
    let submission: SnapshotSubmission = serde_json::from_slice(&raw[UUID_LEN..])
        .map_err(|e| DecodeError::BadJson(e.to_string()))?;
    Ok(CollectMessage {
        submission_id,
        submission,
        raw: raw.to_vec(),
    })
}

/// Whether `bytes` can begin a hyphenated UUID (`8-4-4-4-12` hex digits).
fn uuid_prefix_ok(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().all(|(i, b)| match i {
        8 | 13 | 18 | 23 => *b == b'-',
        _ => b.is_ascii_hexdigit(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::submission::Request;
    use proptest::prelude::*;

    fn submission(i: u64) -> SnapshotSubmission {
        SnapshotSubmission {
            request: Request {
                slot_id: i,
                deadline: 100 + i,
                snapshot_cid: "bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy".into(),
                epoch_id: 7,
                project_id: format!("project {{\"}}\\ {i}"),
            },
            signature: "ab".repeat(65),
            header: format!("0x{}", "cd".repeat(32)),
            data_market: format!("0x{}", "11".repeat(20)),
            node_version: i.is_multiple_of(2).then(|| "v1.0".to_string()),
            protocol_state: None,
        }
    }

    fn id(i: u64) -> Uuid {
        Uuid::from_u64_pair(i, i.wrapping_mul(31))
    }

    fn drain(d: &mut CollectDecoder) -> Vec<Result<CollectMessage, DecodeError>> {
        std::iter::from_fn(|| d.next_message()).collect()
    }

    #[test]
    fn one_message_round_trip() {
        let raw = CollectMessage::encode(&id(1), &submission(1));
        let msg = CollectMessage::parse(&raw).expect("decodes");
        assert_eq!(msg.submission_id, id(1));
        assert_eq!(msg.submission, submission(1));
        assert_eq!(msg.raw, raw);
    }

    #[test]
    fn coalesced_and_byte_by_byte() {
        let stream: Vec<u8> = (0..5)
            .flat_map(|i| CollectMessage::encode(&id(i), &submission(i)))
            .collect();
        let mut d = CollectDecoder::new();
        d.push(&stream);
        let all = drain(&mut d);
        assert_eq!(all.len(), 5);
        let mut d = CollectDecoder::new();
        let mut got = Vec::new();
        for b in &stream {
            d.push(std::slice::from_ref(b));
            got.extend(drain(&mut d));
        }
        assert_eq!(got, all);
        assert_eq!(d.finish(), Ok(()));
    }

    #[test]
    fn bad_uuid_is_caught_at_first_wrong_byte() {
        let mut d = CollectDecoder::new();
        d.push(b"0c0f951b-c8");
        assert!(d.next_message().is_none());
        d.push(b"Z");
        assert_eq!(d.next_message(), Some(Err(DecodeError::BadUuid)));
        assert!(d.is_failed());
        d.push(b"more");
        assert_eq!(d.next_message(), None);
    }

    #[test]
    fn garbage_after_uuid() {
        let mut d = CollectDecoder::new();
        d.push(b"0c0f951b-c892-4dde-8426-e87d922cf8fa[1,2]");
        assert_eq!(d.next_message(), Some(Err(DecodeError::Garbage)));
    }

    #[test]
    fn bad_json_is_skipped_and_decoding_continues() {
        let mut stream =
            b"0c0f951b-c892-4dde-8426-e87d922cf8fa{\"request\":{\"slotId\":\"x\"}}".to_vec();
        stream.extend(CollectMessage::encode(&id(2), &submission(2)));
        let mut d = CollectDecoder::new();
        d.push(&stream);
        let got = drain(&mut d);
        assert!(matches!(got[0], Err(DecodeError::BadJson(_))));
        assert!(!got[0].as_ref().expect_err("bad json").is_fatal());
        assert_eq!(got[1].as_ref().map(|m| m.submission_id), Ok(id(2)));
    }

    #[test]
    fn oversize_is_fatal_without_buffering_more() {
        let mut d = CollectDecoder::new();
        d.push(b"0c0f951b-c892-4dde-8426-e87d922cf8fa{\"request\":\"");
        let chunk = vec![b'a'; 4096];
        let mut err = None;
        for _ in 0..8 {
            d.push(&chunk);
            if let Some(r) = d.next_message() {
                err = Some(r);
                break;
            }
            assert!(d.buffered() <= MAX_MESSAGE_BYTES + chunk.len());
        }
        assert_eq!(err, Some(Err(DecodeError::Oversize)));
    }

    #[test]
    fn message_of_exactly_the_cap_passes() {
        let mut s = submission(3);
        s.node_version = Some(String::new());
        let base = CollectMessage::encode(&id(3), &s).len();
        s.node_version = Some(format!(
            "{}{}",
            s.node_version.clone().unwrap_or_default(),
            "x".repeat(MAX_MESSAGE_BYTES - base)
        ));
        let raw = CollectMessage::encode(&id(3), &s);
        assert_eq!(raw.len(), MAX_MESSAGE_BYTES);
        assert!(CollectMessage::parse(&raw).is_ok());
        s.node_version = Some(format!("{}y", s.node_version.unwrap_or_default()));
        let raw = CollectMessage::encode(&id(3), &s);
        assert_eq!(CollectMessage::parse(&raw), Err(DecodeError::Oversize));
    }

    #[test]
    fn truncated_stream() {
        let raw = CollectMessage::encode(&id(4), &submission(4));
        let mut d = CollectDecoder::new();
        d.push(&raw[..raw.len() - 1]);
        assert!(d.next_message().is_none());
        assert_eq!(d.finish(), Err(DecodeError::Truncated));
        assert_eq!(
            CollectMessage::parse(&raw[..raw.len() - 1]),
            Err(DecodeError::Truncated)
        );
    }

    #[test]
    fn whitespace_then_more_bytes() {
        // Found by the fuzzer: skipping leading whitespace moved `start` past `pos`.
        let mut d = CollectDecoder::new();
        d.push(b"  ");
        assert!(d.next_message().is_none());
        d.push(b"x");
        assert_eq!(d.next_message(), Some(Err(DecodeError::BadUuid)));
    }

    #[test]
    fn whitespace_between_messages_is_tolerated() {
        let mut stream = CollectMessage::encode(&id(5), &submission(5));
        stream.extend_from_slice(b"\n\r\n ");
        stream.extend(CollectMessage::encode(&id(6), &submission(6)));
        stream.push(b'\n');
        let mut d = CollectDecoder::new();
        d.push(&stream);
        assert_eq!(drain(&mut d).iter().filter(|r| r.is_ok()).count(), 2);
        assert_eq!(d.finish(), Ok(()));
    }

    proptest! {
        /// Any split of a valid stream gives back exactly the messages that went in.
        #[test]
        fn random_splits_give_back_every_message(
            n in 1usize..12,
            cuts in proptest::collection::vec(0usize..4000, 0..40),
        ) {
            let msgs: Vec<Vec<u8>> = (0..n as u64)
                .map(|i| CollectMessage::encode(&id(i), &submission(i)))
                .collect();
            let stream: Vec<u8> = msgs.concat();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
            cuts.push(0);
            cuts.push(stream.len());
            cuts.sort_unstable();
            let mut d = CollectDecoder::new();
            let mut got = Vec::new();
            for w in cuts.windows(2) {
                d.push(&stream[w[0]..w[1]]);
                while let Some(r) = d.next_message() {
                    got.push(r.map_err(|e| TestCaseError::fail(e.to_string()))?.raw);
                }
            }
            prop_assert_eq!(got, msgs);
            prop_assert_eq!(d.finish(), Ok(()));
        }

        /// Arbitrary bytes never panic and never make the decoder hold more than
        /// the cap plus the chunk just pushed.
        #[test]
        fn arbitrary_bytes_never_panic(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 0..12)) {
            let mut d = CollectDecoder::new();
            for c in &chunks {
                d.push(c);
                while d.next_message().is_some() {}
                prop_assert!(d.buffered() <= MAX_MESSAGE_BYTES + c.len());
            }
        }
    }
}
