//! The key scheme: the only place a state-store key is built.
//!
//! Keys are spread so that one epoch's writes do not land on one partition: submissions and
//! receipts of an epoch are split over [`SHARDS`] partitions by a stable hash of the project
//! (submissions) or the submission id (receipts); finalization reads all of them. The formats are
//! what stored data already uses; changing one orphans what is stored.
//!
//! | table | pk | sk |
//! | --- | --- | --- |
//! | submissions | `market#epoch#shard(project)` | `project#slot(20 digits)` |
//! | receipts | `market#epoch#shard(id)` | submission id |
//! | counters | `market#epoch#slot` | `accepted` |
//! | epochs | market | epoch (20 digits); the tick's cursor: `market#cursor` / `tick`; an epoch's seal: `market#seal` / epoch (20 digits) |
//! | blocks | block hash (lower case) | `block` |
//! | batches | `market#epoch` | index (6 digits) |
//! | epochs | `market#rewards` | epoch (20 digits): an epoch's rewards |
//! | epochs | `market#rewards-day` | day (20 digits): a day's rewards and its commit |
//! | epochs | `market#rewards-latest` | `day`: the newest day with rewards (the status summary's one read) |
//! | epochs | `market#tallies` | ingress boot: its newest tally (the close watermark) |
//! | counters | `market#epoch#decided` | shard (2 digits): marks of the epoch's decided messages |

use sequencer_core::Address;
use sequencer_ports::Key;

/// Partitions per epoch for submissions and receipts. Changing it needs empty tables.
pub const SHARDS: u32 = 8;

/// Items asked for per query page (DynamoDB also ends a page at 1 MB).
pub(super) const PAGE: usize = 1000;

/// FNV-1a, stable across builds and platforms (unlike `DefaultHasher`).
fn fnv1a(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The shard of a project or submission id.
pub fn shard_of(s: &str) -> u32 {
    fnv1a(s) % SHARDS
}

fn m(market: &Address) -> String {
    format!("{market:#x}")
}

/// Partition of an epoch's submissions (or receipts) in one shard.
pub(super) fn epoch_shard_pk(market: &Address, epoch: u64, shard: u32) -> String {
    format!("{}#{epoch}#{shard}", m(market))
}

/// Key of the accepted submission of (project, slot).
pub(super) fn submission_key(market: &Address, epoch: u64, project: &str, slot: u64) -> Key {
    Key::new(
        epoch_shard_pk(market, epoch, shard_of(project)),
        format!("{project}#{slot:020}"),
    )
}

/// Key of a submission id's receipt.
pub(super) fn receipt_key(market: &Address, epoch: u64, submission_id: &str) -> Key {
    Key::new(
        epoch_shard_pk(market, epoch, shard_of(submission_id)),
        submission_id.to_string(),
    )
}

/// Key of the per-(slot, epoch) accepted counter.
pub(super) fn slot_counter_key(market: &Address, epoch: u64, slot: u64) -> Key {
    Key::new(format!("{}#{epoch}#{slot}", m(market)), "accepted")
}

/// Partition of a market's epochs.
pub(super) fn epochs_pk(market: &Address) -> String {
    m(market)
}

/// Sort key of an epoch.
pub(super) fn epoch_sk(epoch: u64) -> String {
    format!("{epoch:020}")
}

/// Key of an epoch.
pub(super) fn epoch_key(market: &Address, epoch: u64) -> Key {
    Key::new(epochs_pk(market), epoch_sk(epoch))
}

/// Epoch id of an epoch sort key.
pub(super) fn epoch_of_sk(sk: &str) -> Option<u64> {
    sk.parse().ok()
}

/// Key of the tick's cursor.
pub(super) fn cursor_key(market: &Address) -> Key {
    Key::new(format!("{}#cursor", m(market)), "tick")
}

/// Key of an epoch's seal (finalize's sealed batch set), beside the epochs in their table but in
/// a partition of its own, so listing epochs never reads one.
pub(super) fn seal_key(market: &Address, epoch: u64) -> Key {
    Key::new(format!("{}#seal", m(market)), epoch_sk(epoch))
}

/// Key of a block hash.
pub(super) fn block_key(hash: &str) -> Key {
    Key::new(hash.to_ascii_lowercase(), "block")
}

/// Partition of an epoch's batches.
pub(super) fn batches_pk(market: &Address, epoch: u64) -> String {
    format!("{}#{epoch}", m(market))
}

/// Key of a batch.
pub(super) fn batch_key(market: &Address, epoch: u64, index: u32) -> Key {
    Key::new(batches_pk(market, epoch), format!("{index:06}"))
}

/// Partition of a market's per-epoch rewards.
pub(super) fn epoch_rewards_pk(market: &Address) -> String {
    format!("{}#rewards", m(market))
}

/// Key of an epoch's rewards.
pub(super) fn epoch_rewards_key(market: &Address, epoch: u64) -> Key {
    Key::new(epoch_rewards_pk(market), epoch_sk(epoch))
}

/// Key of a day's rewards.
pub(super) fn day_rewards_key(market: &Address, day: u64) -> Key {
    Key::new(format!("{}#rewards-day", m(market)), format!("{day:020}"))
}

/// Key of the newest day with rewards: a partition of its own, so no listing of days reads it.
pub(super) fn latest_rewards_day_key(market: &Address) -> Key {
    Key::new(format!("{}#rewards-latest", m(market)), "day")
}

/// Partitions of one epoch's decided marks (the close watermark's count).
pub const DECIDED_SHARDS: u32 = 32;

/// Partition of the newest tally of each ingress boot (sort key: the boot).
pub(super) fn tallies_pk(market: &Address) -> String {
    format!("{}#tallies", m(market))
}

/// Key of one shard of epoch `epoch`'s decided marks.
pub(super) fn decided_key(market: &Address, epoch: u64, shard: u32) -> Key {
    Key::new(
        format!("{}#{epoch}#decided", m(market)),
        format!("{shard:02}"),
    )
}

/// The shard a group of decided marks goes to (by its first mark).
pub(super) fn decided_shard(mark: &str) -> u32 {
    fnv1a(mark) % DECIDED_SHARDS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_and_spread() {
        let a = Address::repeat_byte(1);
        assert!(epoch_key(&a, 9).sk < epoch_key(&a, 10).sk);
        assert_eq!(epoch_of_sk(&epoch_key(&a, 42).sk), Some(42));
        let shards: std::collections::BTreeSet<u32> = (0..200)
            .map(|i| shard_of(&format!("project-{i}")))
            .collect();
        assert_eq!(
            shards.len() as u32,
            SHARDS,
            "projects spread over every shard"
        );
        // Stable forever: changing the hash would orphan stored records.
        assert_eq!(fnv1a("a"), 0xe40c_292c);
    }

    #[test]
    fn key_formats_are_what_stored_data_uses() {
        let a = Address::repeat_byte(0xab);
        let m = "0xabababababababababababababababababababab";
        let s = submission_key(&a, 7, "p1", 3);
        assert_eq!(s.pk, format!("{m}#7#{}", shard_of("p1")));
        assert_eq!(s.sk, "p1#00000000000000000003");
        let id = "0c0f951b-0000-4000-8000-000000000000";
        assert_eq!(
            receipt_key(&a, 7, id),
            Key::new(format!("{m}#7#{}", shard_of(id)), id)
        );
        assert_eq!(
            slot_counter_key(&a, 7, 3),
            Key::new(format!("{m}#7#3"), "accepted")
        );
        assert_eq!(epoch_key(&a, 7), Key::new(m, "00000000000000000007"));
        assert_eq!(cursor_key(&a), Key::new(format!("{m}#cursor"), "tick"));
        assert_eq!(
            seal_key(&a, 7),
            Key::new(format!("{m}#seal"), "00000000000000000007")
        );
        assert_eq!(block_key("0xAB"), Key::new("0xab", "block"));
        assert_eq!(batch_key(&a, 7, 2), Key::new(format!("{m}#7"), "000002"));
        assert_eq!(
            latest_rewards_day_key(&a),
            Key::new(format!("{m}#rewards-latest"), "day")
        );
    }
}
