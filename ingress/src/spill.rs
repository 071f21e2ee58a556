//! What happens to accepted messages the queue has not taken when the drain deadline passes:
//! they are appended to a local JSON-lines file, fsynced, and replayed into the queue on the
//! next start. Messages the queue rejects as malformed (sender fault) go to a separate
//! `*.rejected.jsonl` file and are not replayed. Delivery is at least once: a call that timed out
//! at the deadline may have reached the queue and is spilled anyway.
//!
//! Damage: a line that is not a record (torn by a crash mid-append, or corrupted) is moved to
//! `<file>.quarantine.jsonl` and counted; the rest of the file is replayed. A failed append (disk
//! full) truncates the file back to its last good length, so a half-written line never reaches
//! the next start.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::envelope::{Envelope, EnvelopeMeta, Settlement, Ticket};

/// Suffix of the file that receives damaged lines found while replaying `<file>`.
pub const QUARANTINE_SUFFIX: &str = ".quarantine.jsonl";

/// Errors reading or writing spill files.
#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    /// File system error.
    #[error("spill file {path}: {source}")]
    Io {
        /// File concerned.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// An append failed and the file could not be cut back to its last good length either.
    #[error(
        "spill file {path}: {source}; truncating back to {good_len} bytes also failed: {truncate}"
    )]
    Torn {
        /// File concerned.
        path: PathBuf,
        /// Cause of the failed append.
        source: std::io::Error,
        /// Length before the append.
        good_len: u64,
        /// Cause of the failed truncation.
        truncate: std::io::Error,
    },
}

/// A record whose `raw_hex` is not hex, or that has no body at all.
#[derive(Debug, thiserror::Error)]
#[error("spill record has no valid body")]
pub struct BadRecord;

/// One spilled message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpillRecord {
    /// The exact `/collect` bytes as text (always UTF-8 after decoding: UUID + JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// The bytes as hex, only if they were not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_hex: Option<String>,
    /// Attributes.
    pub meta: EnvelopeMeta,
    /// Why it is in this file (rejected file only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl SpillRecord {
    /// Record for an envelope.
    pub fn from_envelope(env: &Envelope, reason: Option<String>) -> Self {
        let (raw, raw_hex) = match std::str::from_utf8(&env.raw) {
            Ok(s) => (Some(s.to_owned()), None),
            Err(_) => (None, Some(hex::encode(&env.raw))),
        };
        Self {
            raw,
            raw_hex,
            meta: env.meta.clone(),
            reason,
        }
    }

    /// The original bytes.
    pub fn bytes(&self) -> Result<Vec<u8>, BadRecord> {
        match (&self.raw, &self.raw_hex) {
            (Some(s), _) => Ok(s.as_bytes().to_vec()),
            (None, Some(h)) => hex::decode(h).map_err(|_| BadRecord),
            (None, None) => Err(BadRecord),
        }
    }

    /// One JSON line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        // A struct of strings and integers always serializes.
        let mut line = serde_json::to_vec(self).unwrap_or_else(|e| {
            tracing::error!(error = %e, "spill record did not serialize");
            Vec::new()
        });
        line.push(b'\n');
        line
    }
}

/// The file operations an append needs; a trait so tests can inject a disk that fills up.
pub trait AppendFile: Write + Send {
    /// Current length in bytes.
    fn current_len(&self) -> std::io::Result<u64>;
    /// Cuts the file back to `len` bytes.
    fn truncate(&mut self, len: u64) -> std::io::Result<()>;
    /// Flushes data to stable storage.
    fn sync(&mut self) -> std::io::Result<()>;
}

impl AppendFile for File {
    fn current_len(&self) -> std::io::Result<u64> {
        self.metadata().map(|m| m.len())
    }
    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        self.set_len(len)?;
        self.sync_data()
    }
    fn sync(&mut self) -> std::io::Result<()> {
        self.sync_data()
    }
}

type Opener = Box<dyn Fn(&Path) -> std::io::Result<Box<dyn AppendFile>> + Send + Sync>;

fn open_append(path: &Path) -> std::io::Result<Box<dyn AppendFile>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let f = OpenOptions::new().create(true).append(true).open(path)?;
    Ok(Box::new(f))
}

/// Appends records to a JSON-lines file, opened on first use.
pub struct SpillWriter {
    path: PathBuf,
    open: Opener,
    file: Mutex<Option<Box<dyn AppendFile>>>,
}

impl SpillWriter {
    /// Writer for `path` (not created until the first record).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self::with_opener(path, Box::new(open_append))
    }

    /// Writer whose file comes from `open` (tests inject a file that fails like a full disk).
    pub fn with_opener(path: impl Into<PathBuf>, open: Opener) -> Self {
        Self {
            path: path.into(),
            open,
            file: Mutex::new(None),
        }
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends records and fsyncs. On failure nothing of this call stays in the file: it is cut
    /// back to the length it had before (the file handle is reopened on the next call).
    pub fn append(&self, records: &[SpillRecord]) -> Result<(), SpillError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for r in records {
            buf.extend_from_slice(&r.to_line());
        }
        self.append_bytes(&buf)
    }

    /// Appends pre-encoded lines (see [`Self::append`]).
    pub fn append_bytes(&self, buf: &[u8]) -> Result<(), SpillError> {
        let io = |source| SpillError::Io {
            path: self.path.clone(),
            source,
        };
        // A panic while holding the lock leaves at worst a torn tail, which replay quarantines;
        // the next append measures the length afresh, so going on is safe.
        let mut guard = self.file.lock().unwrap_or_else(|p| {
            tracing::error!(file = %self.path.display(), "spill writer lock was poisoned by a panic");
            p.into_inner()
        });
        if guard.is_none() {
            *guard = Some((self.open)(&self.path).map_err(io)?);
        }
        let Some(f) = guard.as_mut() else {
            return Err(io(std::io::Error::other("spill file not open")));
        };
        let good_len = f.current_len().map_err(io)?;
        let written = f
            .write_all(buf)
            .and_then(|()| f.flush())
            .and_then(|()| f.sync());
        if let Err(source) = written {
            let cut = f.truncate(good_len);
            // Reopen next time: the handle may be in a bad state.
            *guard = None;
            return Err(match cut {
                Ok(()) => SpillError::Io {
                    path: self.path.clone(),
                    source,
                },
                Err(truncate) => SpillError::Torn {
                    path: self.path.clone(),
                    source,
                    good_len,
                    truncate,
                },
            });
        }
        Ok(())
    }
}

/// Deletes files of durable copies (replayed spill files, WAL segments) once every message in
/// them is settled. Held through [`Ticket`]s by the envelopes; when the last one is dropped the
/// files go, unless one of them was abandoned (dropped unsettled), then they stay for the next
/// start.
#[derive(Debug)]
pub struct FileGuard {
    files: Vec<PathBuf>,
    keep: AtomicBool,
    what: &'static str,
}

impl FileGuard {
    /// A guard over `files`; `what` names them in logs.
    pub fn new(files: Vec<PathBuf>, what: &'static str) -> Arc<Self> {
        Arc::new(Self {
            files,
            keep: AtomicBool::new(false),
            what,
        })
    }

    /// A ticket on this guard for one message.
    pub fn ticket(self: &Arc<Self>) -> Ticket {
        Ticket::new(self.clone())
    }

    /// Keep the files whatever happens (shutdown before every record was handed over).
    pub fn keep(&self) {
        self.keep.store(true, Ordering::SeqCst);
    }
}

impl Settlement for FileGuard {
    fn release(&self, settled: bool) {
        if !settled && !self.keep.swap(true, Ordering::SeqCst) {
            tracing::error!(what = self.what, "a message was dropped before it was handed over; its file is kept for the next start");
        }
    }
}

impl Drop for FileGuard {
    fn drop(&mut self) {
        let files = std::mem::take(&mut self.files);
        if self.keep.load(Ordering::SeqCst) {
            for f in &files {
                tracing::warn!(file = %f.display(), what = self.what, "kept for the next start");
            }
            return;
        }
        for f in &files {
            match std::fs::remove_file(f) {
                Ok(()) => {
                    tracing::info!(file = %f.display(), what = self.what, "fully handed over, removed")
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(file = %f.display(), what = self.what, error = %e, "could not remove")
                }
            }
        }
    }
}

/// What reading a file found.
#[derive(Debug, Default)]
pub struct ReadOutcome {
    /// Records, in file order, with their bodies.
    pub records: Vec<(SpillRecord, Vec<u8>)>,
    /// Lines that were not records, moved to the quarantine file.
    pub quarantined: usize,
}

/// The quarantine file for `path`.
pub fn quarantine_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(QUARANTINE_SUFFIX);
    PathBuf::from(p)
}

/// Reads `path`; lines that are not records go to `quarantine` (appended, fsynced) and are
/// counted. Fails only if a file cannot be read or the quarantine cannot be written (then the
/// damaged line would be lost, so the caller must not delete `path`).
pub fn read_with_quarantine(path: &Path, quarantine: &Path) -> Result<ReadOutcome, SpillError> {
    let io = |source| SpillError::Io {
        path: path.to_owned(),
        source,
    };
    let mut data = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(io)?;
    let mut out = ReadOutcome::default();
    let mut bad = Vec::new();
    let ends_with_newline = data.last() == Some(&b'\n');
    let lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    let last = lines.len().saturating_sub(1);
    for (i, line) in lines.into_iter().enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed = serde_json::from_slice::<SpillRecord>(line)
            .ok()
            .and_then(|r| r.bytes().ok().map(|b| (r, b)));
        match parsed {
            // A last line without its newline was torn by a crash even if it happens to parse
            // as JSON (a record cut after a closing brace of a nested object cannot, but be safe
            // only about what is complete).
            Some(rec) if i < last || ends_with_newline => out.records.push(rec),
            _ => {
                tracing::warn!(file = %path.display(), line = i + 1, bytes = line.len(), torn = i == last, "damaged line quarantined");
                bad.extend_from_slice(line);
                bad.push(b'\n');
                out.quarantined += 1;
            }
        }
    }
    if !bad.is_empty() {
        SpillWriter::new(quarantine).append_bytes(&bad)?;
    }
    Ok(out)
}

/// Records to replay and the guard that removes their files once all are handed over.
pub struct Replay {
    /// Records with their bodies.
    pub records: Vec<(SpillRecord, Vec<u8>)>,
    /// Deletes the replayed files once every record is settled.
    pub guard: Arc<FileGuard>,
    /// Damaged lines moved to the quarantine file.
    pub quarantined: usize,
}

/// Takes the spill file (and any replay left over from a crash during an earlier replay) for
/// replay: renames it aside so new spills go to a fresh file, reads every record (quarantining
/// damaged lines to `<path>.quarantine.jsonl`), and returns them with the guard that deletes the
/// renamed files when every record is settled.
pub fn take_for_replay(path: &Path) -> Result<Option<Replay>, SpillError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(None);
    };
    let prefix = format!("{name}.replaying-");
    if path.exists() {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let aside = dir.join(format!("{prefix}{stamp}"));
        std::fs::rename(path, &aside).map_err(|source| SpillError::Io {
            path: path.to_owned(),
            source,
        })?;
    }
    let mut files = Vec::new();
    let entries = std::fs::read_dir(&dir).map_err(|source| SpillError::Io {
        path: dir.clone(),
        source,
    })?;
    for e in entries.flatten() {
        if e.file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(&prefix))
        {
            files.push(e.path());
        }
    }
    if files.is_empty() {
        return Ok(None);
    }
    files.sort();
    replay_files(files, &quarantine_path(path), "spill file")
}

/// Reads `files` for replay, quarantining damaged lines into `quarantine`.
pub fn replay_files(
    files: Vec<PathBuf>,
    quarantine: &Path,
    what: &'static str,
) -> Result<Option<Replay>, SpillError> {
    let mut records = Vec::new();
    let mut quarantined = 0;
    for f in &files {
        let o = read_with_quarantine(f, quarantine)?;
        records.extend(o.records);
        quarantined += o.quarantined;
    }
    // Quarantined lines are safe in the quarantine file; a file with only damaged lines is done.
    Ok(Some(Replay {
        records,
        guard: FileGuard::new(files, what),
        quarantined,
    }))
}

/// Reads a spill or rejected file (tests, operators); damaged lines are skipped, not moved.
pub fn read_file(path: &Path) -> Result<Vec<SpillRecord>, SpillError> {
    let mut data = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(|source| SpillError::Io {
            path: path.to_owned(),
            source,
        })?;
    Ok(data
        .split(|b| *b == b'\n')
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect())
}
