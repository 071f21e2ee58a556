//! The records layer against a real store (embedded SQLite): the epoch lifecycle is enforced
//! before the store is touched, a move is conditional on the state read (two racing runs: one
//! wins), and what is written reads back typed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use sequencer_core::Address;
use sequencer_embedded::{Db, SqliteState};
use sequencer_handlers::records::{EpochMove, EpochRecord, EpochState, Records};
use sequencer_handlers::PipelineError;
use sequencer_ports::StateStore;

fn store() -> Arc<dyn StateStore> {
    Arc::new(SqliteState::new(Db::in_memory().unwrap()))
}

#[tokio::test]
async fn moves_outside_the_lifecycle_are_refused_before_the_store_is_touched() {
    let s = store();
    let r = Records::new(s.as_ref(), Address::repeat_byte(1), Duration::from_secs(60));
    let rec = EpochRecord {
        epoch: 3,
        ..EpochRecord::default()
    };
    assert!(r.open_epoch(&rec).await.unwrap());
    assert!(!r.open_epoch(&rec).await.unwrap(), "opened once");
    for to in [
        EpochState::Closed,
        EpochState::Finalized,
        EpochState::Anchored,
        EpochState::Failed,
        EpochState::Open,
    ] {
        let err = r.move_epoch(EpochState::Open, to, &rec).await;
        assert!(
            matches!(err, Err(PipelineError::Invariant(_))),
            "OPEN -> {to}: {err:?}"
        );
    }
    assert_eq!(r.epoch(3).await.unwrap().unwrap().state, EpochState::Open);

    // Allowed, but only from the state the caller read.
    let stale = r
        .move_epoch(EpochState::Closing, EpochState::Closed, &rec)
        .await
        .unwrap();
    assert!(
        matches!(&stale, EpochMove::Refused(Some(e)) if e.state == EpochState::Open),
        "{stale:?}"
    );
    assert_eq!(
        r.move_epoch(EpochState::Open, EpochState::Closing, &rec)
            .await
            .unwrap(),
        EpochMove::Moved
    );
    assert_eq!(r.epochs().await.unwrap()[0].state, EpochState::Closing);
}

#[tokio::test]
async fn two_racing_moves_one_wins() {
    let s = store();
    let r = Records::new(s.as_ref(), Address::repeat_byte(2), Duration::from_secs(60));
    for epoch in 1..=20 {
        let rec = EpochRecord {
            epoch,
            ..EpochRecord::default()
        };
        r.open_epoch(&rec).await.unwrap();
        let (a, b) = tokio::join!(
            r.move_epoch(EpochState::Open, EpochState::Closing, &rec),
            r.move_epoch(EpochState::Open, EpochState::Closing, &rec)
        );
        let moved = [a.unwrap(), b.unwrap()]
            .iter()
            .filter(|m| **m == EpochMove::Moved)
            .count();
        assert_eq!(moved, 1, "epoch {epoch}");
    }
    // Listing from an epoch on reads only those.
    let from = r.epochs_from(15).await.unwrap();
    assert_eq!(
        from.iter().map(|e| e.record.epoch).collect::<Vec<_>>(),
        (15..=20).collect::<Vec<_>>()
    );
    assert_eq!(r.oldest_epoch().await.unwrap(), Some(1));
    assert_eq!(r.newest_epoch().await.unwrap(), Some(20));
}
