//! Per-submission verification against one raw signer recovery, on both
//! secp256k1 implementations. Target: verification within 1.2× of the
//! raw recovery it is built on.
//!
//! `cargo bench -p sequencer-core --bench verify`

use std::hint::black_box;

use alloy_primitives::Address;
use criterion::{criterion_group, criterion_main, Criterion};
use sequencer_core::eip712::{
    recover_k256, recover_libsecp256k1, sign_request, Domain, RawSignature, Verifier,
};
use sequencer_core::rules::check_stateless;
use sequencer_core::submission::{Request, SnapshotSubmission};

fn bench(c: &mut Criterion) {
    let domain = Domain {
        chain_id: 11169,
        verifying_contract: Address::repeat_byte(0x42),
    };
    let market = Address::repeat_byte(0x11);
    let key = k256::ecdsa::SigningKey::from_slice(&[7u8; 32]).expect("key");
    let request = Request {
        slot_id: 4036,
        deadline: 6624038,
        snapshot_cid: "bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy".into(),
        epoch_id: 11267,
        project_id: "aggregate_pairContract_24h_trade_volume:0x8ef79d6c328c25da633559c20c75f638a4863462:UNISWAPV2".into(),
    };
    let signature = sign_request(&domain, &request, &key).expect("signs");
    let sub = SnapshotSubmission {
        request,
        signature,
        header: format!("0x{}", "ab".repeat(32)),
        data_market: format!("{market:#x}"),
        node_version: None,
        protocol_state: None,
    };
    let verifier = Verifier::new(domain);
    let digest = verifier.digest(&sub.request);
    let sig = RawSignature::parse(&sub.signature).expect("parses");

    let mut g = c.benchmark_group("recover");
    g.bench_function("raw_recover_k256", |b| {
        b.iter(|| recover_k256(black_box(&digest), black_box(&sig)))
    });
    g.bench_function("raw_recover_libsecp256k1", |b| {
        b.iter(|| recover_libsecp256k1(black_box(&digest), black_box(&sig)))
    });
    g.bench_function("verify_submission", |b| {
        b.iter(|| check_stateless(black_box(&verifier), black_box(&sub), black_box(&market)))
    });
    g.finish();

    // Where the time between raw recovery and full verification goes.
    let mut g = c.benchmark_group("verify_parts");
    g.bench_function("validate_fields", |b| {
        b.iter(|| black_box(&sub).validate_fields())
    });
    g.bench_function("eip712_digest", |b| {
        b.iter(|| verifier.digest(black_box(&sub.request)))
    });
    g.bench_function("parse_signature", |b| {
        b.iter(|| RawSignature::parse(black_box(&sub.signature)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
