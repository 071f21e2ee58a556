//! Typed path segments and query parameters. The router and serde take the request apart
//! (axum's `Path` and `Query`, percent-decoded); each value then parses into its type here, and a
//! value that does not is refused with its own error code before any lookup.
//!
//! A [`Param`] holds the parse result instead of failing deserialization, so the handler reports
//! the code of the first bad value (in path order) rather than a generic extractor error; only a
//! request whose *shape* is wrong (unknown or repeated query parameters) fails in serde, and that
//! is `bad_query`.

use std::str::FromStr;

use axum::http::StatusCode;
use sequencer_handlers::query::MAX_LIMIT;
use serde::{Deserialize, Deserializer};

use crate::error::{clip, codes, ApiError};

/// A value parsed from a path segment or a query parameter, or why it did not parse.
#[derive(Debug, Clone)]
pub struct Param<T>(pub Result<T, ApiError>);

impl<T> Param<T> {
    /// The value, or the error to answer with.
    pub fn get(self) -> Result<T, ApiError> {
        self.0
    }
}

impl<'de, T: FromStr<Err = ApiError>> Deserialize<'de> for Param<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Ok(Param(text.parse()))
    }
}

/// A market address: `0x` and 40 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Market(pub sequencer_core::Address);

impl FromStr for Market {
    type Err = ApiError;
    fn from_str(s: &str) -> Result<Self, ApiError> {
        let bad = || {
            ApiError::bad_request(
                codes::BAD_MARKET_ADDRESS,
                format!("{:?} is not an address (0x and 40 hex digits)", clip(s)),
            )
        };
        let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"));
        match hex {
            Some(h) if h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                h.parse().map(Market).map_err(|_| bad())
            }
            _ => Err(bad()),
        }
    }
}

fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn bad_epoch(what: &str, s: &str) -> ApiError {
    ApiError::bad_request(
        codes::BAD_EPOCH,
        format!("{what} {:?} is not a positive epoch id", clip(s)),
    )
}

/// An epoch id: decimal digits, at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch(pub u64);

impl FromStr for Epoch {
    type Err = ApiError;
    fn from_str(s: &str) -> Result<Self, ApiError> {
        match digits(s) {
            Some(n) if n > 0 => Ok(Epoch(n)),
            _ => Err(bad_epoch("epoch", s)),
        }
    }
}

/// The `before` of the epoch list: an epoch id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Before(pub u64);

impl FromStr for Before {
    type Err = ApiError;
    fn from_str(s: &str) -> Result<Self, ApiError> {
        match digits(s) {
            Some(n) if n > 0 => Ok(Before(n)),
            _ => Err(bad_epoch("before", s)),
        }
    }
}

/// The epoch of a submission: an epoch id, or 0 for simulation submissions (their receipts are
/// kept under epoch 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubmissionEpoch(pub u64);

impl FromStr for SubmissionEpoch {
    type Err = ApiError;
    fn from_str(s: &str) -> Result<Self, ApiError> {
        digits(s)
            .map(SubmissionEpoch)
            .ok_or_else(|| bad_epoch("epoch (0 for simulation submissions)", s))
    }
}

/// A submission id: a hyphenated UUID (36 characters), normalised to lower case as the ingress
/// stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmissionId(pub String);

impl FromStr for SubmissionId {
    type Err = ApiError;
    fn from_str(s: &str) -> Result<Self, ApiError> {
        if s.len() == 36 {
            if let Ok(u) = uuid::Uuid::try_parse(s) {
                return Ok(SubmissionId(u.to_string()));
            }
        }
        Err(ApiError::bad_request(
            codes::BAD_SUBMISSION_ID,
            format!(
                "{:?} is not a submission id (a hyphenated UUID, 36 characters)",
                clip(s)
            ),
        ))
    }
}

/// The `limit` of the epoch list: 1..=[`MAX_LIMIT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(pub u64);

impl FromStr for Limit {
    type Err = ApiError;
    fn from_str(s: &str) -> Result<Self, ApiError> {
        match digits(s) {
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(Limit(n)),
            _ => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                codes::BAD_QUERY,
                format!("limit must be 1..={MAX_LIMIT}, got {:?}", clip(s)),
            )),
        }
    }
}

/// A batch's index in its epoch: decimal digits, 1..=2³²−1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchIndex(pub u32);

impl FromStr for BatchIndex {
    type Err = ApiError;
    fn from_str(s: &str) -> Result<Self, ApiError> {
        match digits(s).and_then(|n| u32::try_from(n).ok()) {
            Some(n) if n > 0 => Ok(BatchIndex(n)),
            _ => Err(ApiError::bad_request(
                codes::BAD_BATCH_INDEX,
                format!("batch index {:?} is not a positive batch number", clip(s)),
            )),
        }
    }
}

/// `/v1/markets/{market}/epochs` and `/v1/markets/{market}/status`.
#[derive(Debug, Deserialize)]
pub struct MarketPath {
    /// The market.
    pub market: Param<Market>,
}

/// `/v1/markets/{market}/epochs/{epoch}`.
#[derive(Debug, Deserialize)]
pub struct EpochPath {
    /// The market.
    pub market: Param<Market>,
    /// The epoch.
    pub epoch: Param<Epoch>,
}

/// `/v1/markets/{market}/epochs/{epoch}/submissions/{id}`.
#[derive(Debug, Deserialize)]
pub struct SubmissionPath {
    /// The market.
    pub market: Param<Market>,
    /// The epoch (0 for simulation submissions).
    pub epoch: Param<SubmissionEpoch>,
    /// The submission id.
    pub id: Param<SubmissionId>,
}

/// `/v1/markets/{market}/epochs/{epoch}/batches/{index}/document`.
#[derive(Debug, Deserialize)]
pub struct BatchPath {
    /// The market.
    pub market: Param<Market>,
    /// The epoch.
    pub epoch: Param<Epoch>,
    /// The batch index (from 1).
    pub index: Param<BatchIndex>,
}

/// The epoch list's query: `?before=&limit=`, nothing else, each at most once.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// List epochs before this one (default: from the newest).
    pub before: Option<Param<Before>>,
    /// Page size (default [`sequencer_handlers::query::DEFAULT_LIMIT`]).
    pub limit: Option<Param<Limit>>,
}

/// No query parameters at all.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoQuery {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_or_name_their_code() {
        let code = |r: Result<(), ApiError>| r.err().map(|e| e.code);
        assert_eq!(
            code("0x12".parse::<Market>().map(|_| ())),
            Some(codes::BAD_MARKET_ADDRESS)
        );
        assert!(format!("0x{}", "aB".repeat(20)).parse::<Market>().is_ok());
        for bad in ["abc", "-1", "+1", "0", "", "99999999999999999999999"] {
            assert_eq!(
                code(bad.parse::<Epoch>().map(|_| ())),
                Some(codes::BAD_EPOCH),
                "{bad}"
            );
        }
        assert_eq!("007".parse::<Epoch>().ok(), Some(Epoch(7)));
        assert_eq!(
            "0".parse::<SubmissionEpoch>().ok(),
            Some(SubmissionEpoch(0))
        );
        for bad in ["0", "101", "x", ""] {
            assert_eq!(
                code(bad.parse::<Limit>().map(|_| ())),
                Some(codes::BAD_QUERY),
                "{bad}"
            );
        }
        let id = "0C0F951B-0000-4000-8000-000000000000";
        assert_eq!(
            id.parse::<SubmissionId>().ok().map(|s| s.0),
            Some(id.to_lowercase())
        );
        assert_eq!(
            code(
                "0c0f951b000040008000000000000000"
                    .parse::<SubmissionId>()
                    .map(|_| ())
            ),
            Some(codes::BAD_SUBMISSION_ID)
        );
        for bad in ["0", "-1", "x", "", "4294967296"] {
            assert_eq!(
                code(bad.parse::<BatchIndex>().map(|_| ())),
                Some(codes::BAD_BATCH_INDEX),
                "{bad}"
            );
        }
        assert_eq!("02".parse::<BatchIndex>().ok(), Some(BatchIndex(2)));
        let long = "x".repeat(1000);
        let e = long.parse::<Market>().err().map(|e| e.message.len());
        assert!(e.is_some_and(|n| n < 200), "untrusted input is clipped");
    }
}
