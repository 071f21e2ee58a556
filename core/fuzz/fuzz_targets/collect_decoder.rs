//! Feeds arbitrary bytes, cut at arbitrary points, to the `/collect` decoder: it
//! must never panic, never buffer more than the message cap plus one chunk, and
//! every message it returns must re-parse on its own to the same submission.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sequencer_core::collect::{CollectDecoder, CollectMessage, MAX_MESSAGE_BYTES};

fuzz_target!(|data: &[u8]| {
    // First byte picks the chunk size, the rest is the stream.
    let Some((&size, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(size).max(1);
    let mut d = CollectDecoder::new();
    for piece in stream.chunks(chunk) {
        d.push(piece);
        while let Some(r) = d.next_message() {
            if let Ok(m) = r {
                let again = CollectMessage::parse(&m.raw).expect("a returned message re-parses");
                assert_eq!(again.submission, m.submission);
            }
        }
        assert!(d.buffered() <= MAX_MESSAGE_BYTES + piece.len());
    }
    let _ = d.finish();
});
