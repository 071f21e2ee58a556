//! The node-facing side: `submission.Submission` as snapshotter-lite-v2 calls it (a unary
//! `SubmitSnapshot` per signed submission over plaintext HTTP/2). Each submission becomes one
//! `/collect` message (a fresh UUID v4 and the Go-style JSON) in the buffer; the answer
//! `"Success"` means "taken for forwarding", the stock collector's word. Refusals carry a gRPC
//! status (the node logs it and retries with backoff) and are counted by reason.

use std::sync::Arc;

use sequencer_core::collect::{CollectMessage, MAX_MESSAGE_BYTES};
use sequencer_core::submission::{parse_address, proto, SnapshotSubmission};
use sequencer_core::Address;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::buffer::{Buffer, Refused};
use crate::metrics::Stats;

/// Generated from `core/proto/submission.proto` (messages are core's own types).
pub mod pb {
    #![allow(missing_docs, clippy::all, clippy::unwrap_used)]
    tonic::include_proto!("submission");
}

/// Largest gRPC message decoded: a submission is under 1 KiB, the `/collect` cap 16 KiB.
pub const MAX_GRPC_MESSAGE_BYTES: usize = 64 * 1024;

/// The service.
pub struct Service {
    buffer: Arc<Buffer>,
    stats: Arc<Stats>,
    market: Option<Address>,
}

impl Service {
    /// Over `buffer`; with `market`, submissions for another data market are refused.
    pub fn new(buffer: Arc<Buffer>, stats: Arc<Stats>, market: Option<Address>) -> Self {
        Self {
            buffer,
            stats,
            market,
        }
    }

    fn take(&self, p: proto::SnapshotSubmission) -> Result<(), Status> {
        if p.request.is_none() {
            self.stats.rejected("no_request");
            return Err(Status::invalid_argument("submission without a request"));
        }
        let sub = SnapshotSubmission::from(p);
        if let Some(want) = self.market {
            if parse_address(&sub.data_market) != Some(want) {
                self.stats.rejected("wrong_market");
                return Err(Status::invalid_argument(format!(
                    "dataMarket {:?} is not this collector's market {}",
                    sub.data_market,
                    want.to_checksum(None)
                )));
            }
        }
        let bytes = CollectMessage::encode(&Uuid::new_v4(), &sub);
        if bytes.len() > MAX_MESSAGE_BYTES {
            // The ingress would reset the stream (and every message behind it on it).
            self.stats.rejected("oversize");
            return Err(Status::invalid_argument(format!(
                "submission is {} bytes as a /collect message; the limit is {MAX_MESSAGE_BYTES}",
                bytes.len()
            )));
        }
        match self.buffer.push(bytes) {
            Ok(()) => Ok(()),
            Err(Refused::Full) => {
                self.stats.rejected("buffer_full");
                Err(Status::resource_exhausted(format!(
                    "buffer full ({} submissions waiting for the sequencer)",
                    self.buffer.capacity()
                )))
            }
            Err(Refused::Closed) => {
                self.stats.rejected("shutting_down");
                Err(Status::unavailable("collector is shutting down"))
            }
        }
    }
}

fn success() -> Response<pb::SubmissionResponse> {
    Response::new(pb::SubmissionResponse {
        message: "Success".into(),
    })
}

#[tonic::async_trait]
impl pb::submission_server::Submission for Service {
    async fn submit_snapshot(
        &self,
        request: Request<proto::SnapshotSubmission>,
    ) -> Result<Response<pb::SubmissionResponse>, Status> {
        self.stats.received("SubmitSnapshot");
        self.take(request.into_inner())?;
        Ok(success())
    }

    async fn submit_snapshot_simulation(
        &self,
        request: Request<Streaming<proto::SnapshotSubmission>>,
    ) -> Result<Response<pb::SubmissionResponse>, Status> {
        let mut stream = request.into_inner();
        while let Some(p) = stream.message().await? {
            self.stats.received("SubmitSnapshotSimulation");
            self.take(p)?;
        }
        Ok(success())
    }
}
