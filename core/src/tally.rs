//! Ingress tallies: what the tick's watermark close counts (docs/protocol.md §4, "The close
//! watermark").
//!
//! Each ingress process (a *boot*: one random id per process start) counts, per market and
//! epoch, the submissions it took in (accepted at its edge and handed to its dispatcher, on
//! either path). It sends its counts through the verify queue as a tally message, cumulative
//! since its start and numbered (`seq`), once a second while they change and every few seconds
//! regardless (a heartbeat that says the process is alive). Verify keeps the newest tally of each
//! boot; the tick closes an epoch once every live boot has reported after the window passed and
//! verify has decided as many of the epoch's submissions as the boots took in.
//!
//! A tally body is a JSON object `{"tally": {...}}`; a `/collect` body starts with a 36-byte
//! UUID, so the two never mix up. Only the ingress writes to the queue, so tallies cannot come
//! from a client.

use serde::{Deserialize, Serialize};

/// Most epochs one tally carries (the newest ones the boot took submissions for).
pub const MAX_TALLY_EPOCHS: usize = 64;
/// Longest boot id.
pub const MAX_BOOT_ID: usize = 64;

/// One ingress boot's counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tally {
    /// Data market contract address, lowercase `0x` hex.
    pub market: String,
    /// The boot: a random id per ingress process start.
    pub boot: String,
    /// Increases with every tally the boot sends; a lower one is older.
    pub seq: u64,
    /// When the boot made the tally (Unix ms, the ingress's clock).
    pub at_ms: i64,
    /// `(epoch, submissions taken in since the boot started)`, at most [`MAX_TALLY_EPOCHS`].
    pub epochs: Vec<(u64, u64)>,
    /// The boot's last tally (sent after its drain at shutdown): nothing more will come, so the
    /// tick does not wait for a later one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub last: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    tally: Tally,
}

/// Why a body is not a tally.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TallyError {
    /// Not the tally JSON.
    #[error("not a tally: {0}")]
    Shape(String),
    /// A field out of its bounds.
    #[error("tally out of bounds: {0}")]
    Bounds(&'static str),
}

impl Tally {
    /// Whether `body` is meant as a tally (a JSON object; a `/collect` body starts with a UUID).
    pub fn looks_like(body: &[u8]) -> bool {
        body.iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'{')
    }

    /// Parses and bounds-checks a tally body.
    pub fn parse(body: &[u8]) -> Result<Self, TallyError> {
        let w: Wire = serde_json::from_slice(body).map_err(|e| TallyError::Shape(e.to_string()))?;
        let t = w.tally;
        if t.boot.is_empty() || t.boot.len() > MAX_BOOT_ID {
            return Err(TallyError::Bounds("boot id length"));
        }
        if t.epochs.len() > MAX_TALLY_EPOCHS {
            return Err(TallyError::Bounds("too many epochs"));
        }
        if t.at_ms <= 0 {
            return Err(TallyError::Bounds("at_ms"));
        }
        Ok(t)
    }

    /// The body verify reads back with [`Tally::parse`].
    pub fn to_body(&self) -> String {
        serde_json::to_string(&Wire {
            tally: self.clone(),
        })
        .unwrap_or_default()
    }

    /// Whether this tally can still say how many submissions of `epoch` the boot took in. A
    /// boot keeps only its newest [`MAX_TALLY_EPOCHS`] epochs, and any sender can name any
    /// epoch (the ingress cannot tell a far-future one), so a full list of epochs all newer than
    /// `epoch` may have pushed its count out: its [`count`](Self::count) of 0 means "unknown",
    /// not "none".
    pub fn knows(&self, epoch: u64) -> bool {
        self.epochs.len() < MAX_TALLY_EPOCHS || self.epochs.iter().any(|(e, _)| *e <= epoch)
    }

    /// Submissions of `epoch` this boot took in.
    pub fn count(&self, epoch: u64) -> u64 {
        self.epochs
            .iter()
            .filter(|(e, _)| *e == epoch)
            .map(|(_, n)| *n)
            .sum()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn t() -> Tally {
        Tally {
            market: "0x00000000000000000000000000000000000000aa".into(),
            boot: "b1".into(),
            seq: 3,
            at_ms: 1_700_000_000_000,
            epochs: vec![(7, 10), (8, 2)],
            last: false,
        }
    }

    #[test]
    fn round_trips_and_counts() {
        let b = t().to_body();
        assert!(Tally::looks_like(b.as_bytes()));
        assert_eq!(Tally::parse(b.as_bytes()).unwrap(), t());
        assert_eq!(t().count(7), 10);
        assert_eq!(t().count(9), 0);
    }

    #[test]
    fn a_full_list_of_newer_epochs_no_longer_knows_an_older_one() {
        let mut x = t();
        assert!(
            x.knows(7) && x.knows(1) && x.knows(100),
            "room left: nothing was pushed out"
        );
        // The boot's newest 64 epochs, 10..=73: 9 and below may have been pushed out.
        x.epochs = (10..10 + MAX_TALLY_EPOCHS as u64).map(|e| (e, 1)).collect();
        assert!(x.knows(10) && x.knows(50) && x.knows(1_000));
        assert!(!x.knows(9) && !x.knows(1));
    }

    #[test]
    fn a_collect_body_is_no_tally() {
        let body = b"123e4567-e89b-12d3-a456-426614174000{\"x\":1}";
        assert!(!Tally::looks_like(body));
    }

    #[test]
    fn bounds_are_checked() {
        let mut x = t();
        x.epochs = (0..65).map(|e| (e, 1)).collect();
        assert_eq!(
            Tally::parse(x.to_body().as_bytes()),
            Err(TallyError::Bounds("too many epochs"))
        );
        let mut x = t();
        x.boot = "b".repeat(65);
        assert!(Tally::parse(x.to_body().as_bytes()).is_err());
        assert!(Tally::parse(br#"{"tally":{"market":"x"}}"#).is_err());
        assert!(Tally::parse(
            br#"{"tally":{"market":"x","boot":"b","seq":1,"at_ms":1,"epochs":[],"extra":1}}"#
        )
        .is_err());
    }
}
