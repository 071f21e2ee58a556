//! What happens to accepted messages the queue has not taken when the drain deadline passes:
//! they are appended to a local JSON-lines file, fsynced, and replayed into the queue on the
//! next start. Messages the queue rejects as malformed (sender fault) go to a separate
//! `*.rejected.jsonl` file and are not replayed. Delivery is at least once: a call that timed out
//! at the deadline may have reached the queue and is spilled anyway.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::sink::{Envelope, EnvelopeMeta};

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
    /// A line that is not a spill record.
    #[error("spill file {path} line {line}: {source}")]
    Parse {
        /// File concerned.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Cause.
        source: serde_json::Error,
    },
}

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
    pub fn bytes(&self) -> Vec<u8> {
        match (&self.raw, &self.raw_hex) {
            (Some(s), _) => s.as_bytes().to_vec(),
            (None, Some(h)) => hex::decode(h).unwrap_or_default(),
            (None, None) => Vec::new(),
        }
    }
}

/// Appends records to a JSON-lines file, opened on first use.
pub struct SpillWriter {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl SpillWriter {
    /// Writer for `path` (not created until the first record).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            file: Mutex::new(None),
        }
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends records and fsyncs.
    pub fn append(&self, records: &[SpillRecord]) -> Result<(), SpillError> {
        if records.is_empty() {
            return Ok(());
        }
        let io = |source| SpillError::Io {
            path: self.path.clone(),
            source,
        };
        let mut buf = Vec::new();
        for r in records {
            // Serializing a struct of strings and integers cannot fail.
            if let Ok(line) = serde_json::to_vec(r) {
                buf.extend_from_slice(&line);
                buf.push(b'\n');
            }
        }
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            *guard = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
                    .map_err(io)?,
            );
        }
        if let Some(f) = guard.as_mut() {
            f.write_all(&buf).map_err(io)?;
            f.sync_data().map_err(io)?;
        }
        Ok(())
    }
}

/// Deletes replayed spill files once every record from them is acknowledged or spilled again
/// (held by the replayed envelopes; dropped with the last one).
#[derive(Debug)]
pub struct ReplayGuard {
    files: Vec<PathBuf>,
}

impl Drop for ReplayGuard {
    fn drop(&mut self) {
        for f in &self.files {
            if let Err(e) = std::fs::remove_file(f) {
                tracing::warn!(file = %f.display(), error = %e, "could not remove replayed spill file");
            } else {
                tracing::info!(file = %f.display(), "replayed spill file fully handed over, removed");
            }
        }
    }
}

fn read_records(path: &Path) -> Result<Vec<SpillRecord>, SpillError> {
    let f = File::open(path).map_err(|source| SpillError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|source| SpillError::Io {
            path: path.to_owned(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line) {
            Ok(r) => out.push(r),
            // A torn last line (crash while writing) is skipped; anything else is an error.
            Err(source) if source.is_eof() => {
                tracing::warn!(file = %path.display(), line = i + 1, "torn spill line skipped");
            }
            Err(source) => {
                return Err(SpillError::Parse {
                    path: path.to_owned(),
                    line: i + 1,
                    source,
                })
            }
        }
    }
    Ok(out)
}

/// Records to replay and the guard that removes their files once all are handed over.
pub type Replay = (Vec<SpillRecord>, Arc<ReplayGuard>);

/// Takes the spill file (and any replay left over from a crash during an earlier replay) for
/// replay: renames it aside so new spills go to a fresh file, reads every record, and returns
/// them with the guard that deletes the renamed files when dropped.
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
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            if e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix))
            {
                files.push(e.path());
            }
        }
    }
    if files.is_empty() {
        return Ok(None);
    }
    files.sort();
    let mut records = Vec::new();
    for f in &files {
        records.extend(read_records(f)?);
    }
    Ok(Some((records, Arc::new(ReplayGuard { files }))))
}

/// Reads a spill or rejected file (tests, operators).
pub fn read_file(path: &Path) -> Result<Vec<SpillRecord>, SpillError> {
    read_records(path)
}
