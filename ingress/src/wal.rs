//! Optional write-ahead log of accepted messages (`INGRESS_WAL_PATH`, off by default).
//!
//! Without it, a message is accepted once it is in the in-memory buffer, so a SIGKILL (OOM kill,
//! host failure) loses what the buffer held and the queue had not acknowledged (the bound is in
//! ingress/README.md). With it, a message counts as accepted (and goes on to the dispatcher) only
//! once it is appended to the current segment and fsynced. The reader does not wait for that:
//! `/collect` acknowledges nothing to the collector, so a stream's next message is decoded while
//! the previous one is being committed, and one stream is not limited to one message per fsync.
//!
//! Group commit: one writer thread takes every append waiting when it is free (up to
//! [`MAX_GROUP`]), writes them with one `write` and one `fdatasync`, then answers all of them.
//! No timer: an append waits at most for the fsync in progress plus its own, and under load many
//! messages share one fsync.
//!
//! Trimming: segments are files `wal-<n>.jsonl` in the WAL directory, rotated at
//! [`SEGMENT_BYTES`]. Each message holds a ticket on its segment; a segment is deleted once it is
//! rotated out and every message in it is settled (acknowledged by the queue, spilled or
//! rejected to a file). A message dropped unsettled keeps its segment for the next start.
//!
//! Replay: at start every segment left by an earlier run is replayed like a spill file (damaged
//! lines, e.g. a torn tail, quarantined to `quarantine.jsonl`). Segments are replayed whole, so
//! messages the queue had already taken are sent again: delivery is at least once and the
//! verifier deduplicates by submission id.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;

use crate::envelope::Envelope;
pub use crate::metrics::WalMetrics;
use crate::spill::{FileGuard, Replay, SpillError, SpillRecord, SpillWriter};

/// A segment is rotated once it holds this many bytes. Small enough that replay after a crash
/// resends little that the queue already had; large enough that rotation is rare (at 1 KiB per
/// message, one file per 4096 messages).
pub const SEGMENT_BYTES: u64 = 4 * 1024 * 1024;

/// Most appends in one group commit (bounds one `write`, ~1 MiB at 1 KiB per message).
pub const MAX_GROUP: usize = 1024;

/// Name of the file that receives damaged WAL lines.
pub const QUARANTINE_FILE: &str = "quarantine.jsonl";

/// Errors of the write-ahead log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// File system error (directory, segment, replay).
    #[error(transparent)]
    File(#[from] SpillError),
    /// The WAL directory could not be read or created.
    #[error("write-ahead log directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The writer thread is gone (it failed to start, or the process is shutting down).
    #[error("write-ahead log writer stopped")]
    Stopped,
}

/// What to do with a message once its group commit is done: `Ok` with the segment's guard (the
/// message is durable), `Err` with the failure (it is not).
pub type Committed = Box<dyn FnOnce(Result<&Arc<FileGuard>, &str>) + Send>;

struct Append {
    line: Vec<u8>,
    done: Committed,
}

/// Handle to the write-ahead log.
pub struct Wal {
    tx: Option<mpsc::Sender<Append>>,
    writer: Option<std::thread::JoinHandle<()>>,
    dir: PathBuf,
}

impl Drop for Wal {
    /// Lets the writer commit what is queued and waits for it, so the last segment is deleted
    /// (if every message in it is settled) before the process exits.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.writer.take() {
            if t.join().is_err() {
                tracing::error!("write-ahead log writer panicked");
            }
        }
    }
}

fn is_segment(name: &str) -> bool {
    name.starts_with("wal-") && name.ends_with(".jsonl")
}

fn segment_number(name: &str) -> Option<u64> {
    name.strip_prefix("wal-")?
        .strip_suffix(".jsonl")?
        .parse()
        .ok()
}

impl Wal {
    /// Opens the WAL in `dir` (created if absent): returns the handle, writing to a new segment,
    /// and what earlier runs left for replay.
    pub fn open(dir: &Path, metrics: WalMetrics) -> Result<(Self, Option<Replay>), WalError> {
        let dir_err = |source| WalError::Dir {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(dir_err)?;
        let mut old = Vec::new();
        let mut next = 0u64;
        for e in std::fs::read_dir(dir).map_err(dir_err)? {
            let e = e.map_err(dir_err)?;
            let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if is_segment(&name) {
                if let Some(n) = segment_number(&name) {
                    next = next.max(n.saturating_add(1));
                }
                old.push(e.path());
            }
        }
        old.sort();
        let replay = if old.is_empty() {
            None
        } else {
            crate::spill::replay_files(old, &dir.join(QUARANTINE_FILE), "write-ahead log segment")?
        };
        let (tx, rx) = mpsc::channel();
        let writer_dir = dir.to_owned();
        let writer = std::thread::Builder::new()
            .name("ingress-wal".into())
            .spawn(move || writer(rx, writer_dir, next, metrics))
            .map_err(dir_err)?;
        Ok((
            Self {
                tx: Some(tx),
                writer: Some(writer),
                dir: dir.to_owned(),
            },
            replay,
        ))
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The line the WAL stores for `env`.
    pub fn line(env: &Envelope) -> Vec<u8> {
        SpillRecord::from_envelope(env, None).to_line()
    }

    /// Queues `line` (from [`Wal::line`]) for the next group commit; `done` runs on the writer
    /// thread once it is on disk or the commit failed (the envelope travels inside `done`).
    pub fn submit(&self, line: Vec<u8>, done: Committed) -> Result<(), WalError> {
        self.tx
            .as_ref()
            .ok_or(WalError::Stopped)?
            .send(Append { line, done })
            .map_err(|_| WalError::Stopped)
    }
}

struct Segment {
    writer: SpillWriter,
    guard: Arc<FileGuard>,
    bytes: u64,
}

fn writer(rx: mpsc::Receiver<Append>, dir: PathBuf, mut next: u64, metrics: WalMetrics) {
    let mut current: Option<Segment> = None;
    let mut buf = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(a) => group.push(a),
                Err(_) => break,
            }
        }
        let seg = current.get_or_insert_with(|| {
            let path = dir.join(format!("wal-{next:020}.jsonl"));
            next = next.saturating_add(1);
            Segment {
                writer: SpillWriter::new(&path),
                guard: FileGuard::new(vec![path], "write-ahead log segment"),
                bytes: 0,
            }
        });
        buf.clear();
        for a in &group {
            buf.extend_from_slice(&a.line);
        }
        match seg.writer.append_bytes(&buf) {
            Ok(()) => {
                metrics.commits.inc();
                metrics.appended.inc_by(group.len() as u64);
                seg.bytes += buf.len() as u64;
                for a in group {
                    (a.done)(Ok(&seg.guard));
                }
                if seg.bytes >= SEGMENT_BYTES {
                    current = None;
                }
            }
            Err(e) => {
                metrics.failures.inc();
                tracing::error!(error = %e, messages = group.len(), "write-ahead log commit failed");
                let msg = e.to_string();
                for a in group {
                    (a.done)(Err(&msg));
                }
                // Start a fresh segment next time; the cut-back one goes once its messages settle.
                current = None;
            }
        }
    }
}
