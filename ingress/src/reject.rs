//! Why the ingress refused or dropped something: the `reason` label of
//! `ingress_rejects_total{reason}`. The strings are a stable interface (dashboards, alerts, the
//! README's list), like core's `Rejection`; add variants, never rename one.

use sequencer_core::collect::DecodeError;

/// One reason for a refusal or drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    /// New connection while shutting down.
    ConnDraining,
    /// Global cap on connections in the handshake.
    ConnPendingLimit,
    /// Cap on connections in the handshake from one address.
    ConnPendingPerAddrLimit,
    /// Global connection cap.
    ConnTotalLimit,
    /// Connections per address.
    ConnPerIpLimit,
    /// The peer or its address is banned.
    ConnBanned,
    /// Connections per peer id.
    ConnPerPeerLimit,
    /// Negotiated stream dropped: the accept queue was full.
    StreamQueueFull,
    /// Stream while shutting down.
    StreamDraining,
    /// Stream of a banned peer or address.
    StreamBanned,
    /// Global stream cap.
    StreamsTotal,
    /// Streams per peer id.
    StreamsPerPeer,
    /// Streams per address.
    StreamsPerAddr,
    /// Message over the size cap (stream reset).
    Oversize,
    /// Message not starting with a UUID (stream reset).
    BadUuid,
    /// No JSON object after the UUID (stream reset).
    Garbage,
    /// Complete JSON object that is not a submission (skipped).
    BadJson,
    /// Stream ended inside a message.
    Truncated,
    /// A started message did not complete in time.
    PartialMessageTimeout,
    /// No progress on a message for the idle timeout.
    StreamIdleTimeout,
    /// A peer or address was cut off for flooding.
    PeerBannedFlood,
    /// A message of a banned peer or address was dropped.
    PeerBannedMessage,
    /// A decoded message was not accepted because shutdown began.
    ShutdownBeforeAccept,
    /// The queue refused a message as malformed (counted by the dispatcher).
    QueueRejected,
    /// Writing the spill file failed (counted by the dispatcher).
    SpillFailed,
    /// Appending accepted messages to the write-ahead log failed (counted by the dispatcher).
    WalFailed,
    /// A stateless edge check refused the message before it reached the queue; the label is
    /// [`crate::edge::EdgeReject::as_str`] (core's reason where core has the rule).
    Edge(&'static str),
    /// A gossip message refused by the validator or before it (reasons: the README's
    /// "Gossipsub"): `gossip_*` labels of its own, core's decode reasons, or the edge reasons.
    Gossip(&'static str),
}

impl Reject {
    /// Every reason, in the README's order.
    /// (`Edge` and `Gossip` labels are listed by their own tests.)
    pub const ALL: [Reject; 26] = [
        Reject::ConnDraining,
        Reject::ConnPendingLimit,
        Reject::ConnPendingPerAddrLimit,
        Reject::ConnTotalLimit,
        Reject::ConnPerIpLimit,
        Reject::ConnBanned,
        Reject::ConnPerPeerLimit,
        Reject::StreamQueueFull,
        Reject::StreamDraining,
        Reject::StreamBanned,
        Reject::StreamsTotal,
        Reject::StreamsPerPeer,
        Reject::StreamsPerAddr,
        Reject::Oversize,
        Reject::BadUuid,
        Reject::Garbage,
        Reject::BadJson,
        Reject::Truncated,
        Reject::PartialMessageTimeout,
        Reject::StreamIdleTimeout,
        Reject::PeerBannedFlood,
        Reject::PeerBannedMessage,
        Reject::ShutdownBeforeAccept,
        Reject::QueueRejected,
        Reject::SpillFailed,
        Reject::WalFailed,
    ];

    /// The stable metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::ConnDraining => "conn_draining",
            Reject::ConnPendingLimit => "conn_pending_limit",
            Reject::ConnPendingPerAddrLimit => "conn_pending_per_addr_limit",
            Reject::ConnTotalLimit => "conn_total_limit",
            Reject::ConnPerIpLimit => "conn_per_ip_limit",
            Reject::ConnBanned => "conn_banned",
            Reject::ConnPerPeerLimit => "conn_per_peer_limit",
            Reject::StreamQueueFull => "stream_queue_full",
            Reject::StreamDraining => "stream_draining",
            Reject::StreamBanned => "stream_banned",
            Reject::StreamsTotal => "streams_total",
            Reject::StreamsPerPeer => "streams_per_peer",
            Reject::StreamsPerAddr => "streams_per_addr",
            Reject::Oversize => "oversize",
            Reject::BadUuid => "bad_uuid",
            Reject::Garbage => "garbage",
            Reject::BadJson => "bad_json",
            Reject::Truncated => "truncated",
            Reject::PartialMessageTimeout => "partial_message_timeout",
            Reject::StreamIdleTimeout => "stream_idle_timeout",
            Reject::PeerBannedFlood => "peer_banned_flood",
            Reject::PeerBannedMessage => "peer_banned_message",
            Reject::ShutdownBeforeAccept => "shutdown_before_accept",
            Reject::QueueRejected => "queue_rejected",
            Reject::SpillFailed => "spill_failed",
            Reject::WalFailed => "wal_failed",
            Reject::Edge(label) | Reject::Gossip(label) => label,
        }
    }
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&DecodeError> for Reject {
    fn from(e: &DecodeError) -> Self {
        match e {
            DecodeError::Oversize => Reject::Oversize,
            DecodeError::BadUuid => Reject::BadUuid,
            DecodeError::Garbage => Reject::Garbage,
            DecodeError::BadJson(_) => Reject::BadJson,
            DecodeError::Truncated => Reject::Truncated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique_and_match_core_decoder_labels() {
        let labels: std::collections::HashSet<_> = Reject::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), Reject::ALL.len());
        for e in [
            DecodeError::Oversize,
            DecodeError::BadUuid,
            DecodeError::Garbage,
            DecodeError::BadJson(String::new()),
            DecodeError::Truncated,
        ] {
            assert_eq!(Reject::from(&e).as_str(), e.reason());
        }
    }

    #[test]
    fn readme_lists_every_reason() {
        let readme = include_str!("../README.md");
        for r in Reject::ALL {
            assert!(
                readme.contains(&format!("`{}`", r.as_str())),
                "ingress/README.md does not list `{r}`"
            );
        }
    }
}
