//! Merkle roots over 100 k submission ids, and finalizing one epoch of 10 k
//! projects × 10 submissions (consensus, batches, canonical JSON, CIDs, both
//! roots). Targets: roots under 100 ms; the epoch under 1 s on one core.
//!
//! `cargo bench -p sequencer-core --bench finalize`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use sequencer_core::finalize::{finalize_epoch, Accepted, FinalizeConfig};
use sequencer_core::merkle::IncrementalTree;
use sequencer_core::submission::{Request, SnapshotSubmission};

fn uuid_like(i: u64) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        i * 2654435761 % (1 << 32),
        i % 65536,
        i % 4096,
        (i * 7) % 4096,
        i * 11
    )
}

fn epoch(projects: u64, per_project: u64) -> Vec<Accepted> {
    let mut subs = Vec::with_capacity((projects * per_project) as usize);
    for p in 0..projects {
        for s in 0..per_project {
            // Two CIDs compete per project so consensus has real work.
            let cid = if s % 3 == 0 {
                "bafkreiasr6gc7wdltoiakwqgiovqy6glo2yxuz7xqwqfxh2qlhd5mlzmdq"
            } else {
                "bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy"
            };
            subs.push(Accepted {
                submission_id: uuid_like(p * per_project + s),
                submission: SnapshotSubmission {
                    request: Request {
                        slot_id: 1000 + s,
                        deadline: 6624038,
                        snapshot_cid: cid.into(),
                        epoch_id: 11267,
                        project_id: format!("aggregate_pairContract_24h_trade_volume:0x{p:040x}:UNISWAPV2"),
                    },
                    signature: "eec085a6726db340ae7ee3bbb8185cf8733d48d2e27276d5017fd0cb56f83a095bb8bde86757e1719f2d6e60a5e6a84644e39cfcebb5e345fb1f6684c7fbcb2c1b".into(),
                    header: "0xbfcdbbe00299b89c983a93729da99049ed33adb808fb03c0448f6455af5c4bb0".into(),
                    data_market: "0x0c2e22fe7526faef28e7a58c84f8723defce200c".into(),
                    node_version: Some("v0.5.1".into()),
                    protocol_state: None,
                },
            });
        }
    }
    subs
}

fn bench(c: &mut Criterion) {
    let ids: Vec<String> = (0..100_000).map(uuid_like).collect();
    let mut g = c.benchmark_group("merkle");
    g.sample_size(20);
    g.bench_function("roots_100k_ids", |b| {
        b.iter(|| {
            let mut t = IncrementalTree::new();
            for id in black_box(&ids) {
                t.push(id).expect("fits");
            }
            t.published_root()
        })
    });
    g.finish();

    let subs = epoch(10_000, 10);
    let cfg = FinalizeConfig::default();
    let mut g = c.benchmark_group("finalize");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("epoch_10k_projects_x10", |b| {
        b.iter(|| finalize_epoch(black_box(&subs), black_box(&cfg)).expect("finalizes"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
