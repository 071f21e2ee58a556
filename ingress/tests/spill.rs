//! Damaged spill files and a full disk: torn and corrupt lines are quarantined with a count while
//! the rest is replayed; a failed append leaves the file as it was, so the next start replays
//! cleanly; write-ahead-log segments with a torn tail are handled the same way.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use sequencer_ingress::dispatcher::{self, DispatcherConfig};
use sequencer_ingress::envelope::{Envelope, EnvelopeMeta};
use sequencer_ingress::metrics::Metrics;
use sequencer_ingress::sink::memory::MemorySink;
use sequencer_ingress::spill::{self, AppendFile, SpillRecord, SpillWriter};
use sequencer_ingress::wal::{Wal, WalMetrics};
use snapshotter_sim::SubmissionFactory;

fn record(body: &[u8], i: usize) -> SpillRecord {
    let env = Envelope::new(
        body.to_vec(),
        EnvelopeMeta {
            submission_id: format!("id-{i}"),
            peer: "p".into(),
            project: format!("proj-{i}"),
            ..Default::default()
        },
    );
    SpillRecord::from_envelope(&env, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_and_corrupt_lines_are_quarantined_and_the_rest_is_replayed() {
    let dir = tempfile::tempdir().expect("tmp");
    let factory = SubmissionFactory::new(2).expect("factory");
    let msgs = common::messages(&factory, 0, 4);
    let path = dir.path().join("spill.jsonl");
    // Two good lines, a corrupt line in the middle (bit rot: not JSON), a record whose hex body
    // is not hex, a good line, then a torn last line (crash mid-append: no newline).
    let mut file = Vec::new();
    for m in &msgs[..2] {
        file.extend_from_slice(&record(m, 0).to_line());
    }
    file.extend_from_slice(b"{\"raw\":\"abc\x00\xff\xfe garbage\n");
    file.extend_from_slice(b"{\"raw_hex\":\"zz\",\"meta\":{\"submission_id\":\"x\",\"peer\":\"p\",\"market\":\"\",\"epoch\":0,\"slot\":0,\"project\":\"q\"}}\n");
    file.extend_from_slice(&record(&msgs[2], 2).to_line());
    let torn = record(&msgs[3], 3).to_line();
    file.extend_from_slice(&torn[..torn.len() / 2]);
    std::fs::write(&path, &file).expect("write spill");

    let sink = Arc::new(MemorySink::new());
    let ingress = common::start(common::settings(dir.path()), sink.clone()).await;
    assert_eq!(ingress.replaying, 3, "the three whole records are replayed");
    assert_eq!(
        ingress.metrics.spill_quarantined.get(),
        3,
        "three damaged lines counted"
    );
    assert_eq!(sink.wait_for(3, Duration::from_secs(10)).await, 3);
    common::assert_same(
        sink.messages().into_iter().map(|m| m.body),
        msgs[..3].iter().cloned(),
        "replayed byte-exact",
    );
    let quarantine = std::fs::read(spill::quarantine_path(&path)).expect("quarantine file");
    assert_eq!(
        quarantine
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
        3,
        "each damaged line is in the quarantine file"
    );
    assert!(
        quarantine
            .windows(torn.len() / 2)
            .any(|w| w == &torn[..torn.len() / 2]),
        "the torn tail is kept as it was"
    );
    ingress.shutdown().await;
    // The replayed file is gone; only the quarantine stays for the operator.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("spill.jsonl") && !n.ends_with(spill::QUARANTINE_SUFFIX))
        .collect();
    assert!(left.is_empty(), "left: {left:?}");
}

/// A file that takes `room` more bytes, then fails like a full disk (after a short write).
struct FullDisk {
    file: std::fs::File,
    room: usize,
}

impl Write for FullDisk {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.room == 0 {
            return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
        }
        let n = buf.len().min(self.room);
        self.room -= n;
        self.file.write(&buf[..n])
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl AppendFile for FullDisk {
    fn current_len(&self) -> std::io::Result<u64> {
        self.file.current_len()
    }
    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        self.file.truncate(len)
    }
    fn sync(&mut self) -> std::io::Result<()> {
        AppendFile::sync(&mut self.file)
    }
}

#[test]
fn a_full_disk_while_spilling_is_reported_and_leaves_the_file_as_it_was() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("spill.jsonl");
    let good: Vec<SpillRecord> = (0..3).map(|i| record(b"good body", i)).collect();
    SpillWriter::new(&path).append(&good).expect("first spill");
    let before = std::fs::read(&path).expect("read");

    // The disk fills 100 bytes into the next append: a half-written line is on disk when the
    // write fails.
    let writer = SpillWriter::with_opener(
        &path,
        Box::new(|p| {
            let file = std::fs::OpenOptions::new().append(true).open(p)?;
            Ok(Box::new(FullDisk { file, room: 100 }))
        }),
    );
    let more: Vec<SpillRecord> = (3..50).map(|i| record(b"more body", i)).collect();
    let err = writer.append(&more).expect_err("the disk is full");
    assert!(err.to_string().contains("spill file"), "{err}");
    assert_eq!(
        std::fs::read(&path).expect("read"),
        before,
        "cut back to the last good length"
    );
    // The next start replays the good records with nothing to quarantine.
    let replay = spill::take_for_replay(&path)
        .expect("replay")
        .expect("some");
    assert_eq!(replay.records.len(), 3);
    assert_eq!(replay.quarantined, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spilling_to_dev_full_is_counted_as_lost_not_silent() {
    let full = std::path::Path::new("/dev/full");
    if !full.exists() {
        eprintln!("SKIPPED: no /dev/full");
        return;
    }
    let err = SpillWriter::new(full)
        .append(&[record(b"x", 0)])
        .expect_err("ENOSPC");
    assert!(err.to_string().contains("/dev/full"), "{err}");

    let metrics = Metrics::new();
    let sink = Arc::new(MemorySink::new());
    sink.set_down(true);
    let (handle, d) = dispatcher::buffer(DispatcherConfig::default(), metrics.clone(), full);
    let (tx, rx) = tokio::sync::watch::channel(None);
    let run = tokio::spawn(d.run(sink, rx));
    for i in 0..5 {
        let env = Envelope::new(format!("body-{i}").into_bytes(), EnvelopeMeta::default());
        handle.push(env).await.expect("push");
    }
    drop(handle);
    tx.send(Some(
        tokio::time::Instant::now() + Duration::from_millis(100),
    ))
    .expect("deadline");
    let report = run.await.expect("dispatcher");
    assert_eq!(report.lost, 5, "{report:?}");
    assert_eq!(report.spilled, 0);
    assert_eq!(metrics.reject_count("spill_failed"), 5);
}

#[test]
fn a_wal_segment_with_a_torn_tail_replays_its_whole_records() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut seg = Vec::new();
    for i in 0..5 {
        seg.extend_from_slice(&record(format!("m{i}").as_bytes(), i).to_line());
    }
    let torn = record(b"m5", 5).to_line();
    seg.extend_from_slice(&torn[..10]);
    std::fs::write(dir.path().join("wal-00000000000000000007.jsonl"), &seg).expect("write");
    let (wal, replay) = Wal::open(dir.path(), WalMetrics::default()).expect("open");
    let replay = replay.expect("replay");
    assert_eq!(replay.records.len(), 5);
    assert_eq!(replay.quarantined, 1);
    assert!(dir.path().join("quarantine.jsonl").exists());
    drop(wal);
}
