//! `seqctl` as a user runs it: real files in, lines and exit status out.

use std::path::PathBuf;
use std::process::{Command, Output};

use sequencer_core::finalize::{finalize_epoch, Accepted, FinalizeConfig};
use sequencer_core::proof::{prove_inclusion, EpochBatch};
use sequencer_core::submission::{Request, SnapshotSubmission};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn sample() -> PathBuf {
    root().join("tests/vectors/sample-batch-epoch-11267.json")
}

fn seqctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seqctl"))
        .args(args)
        .output()
        .expect("seqctl runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("seqctl-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write");
    p
}

#[test]
fn batch_inspect_prints_the_real_batch_roots() {
    let o = seqctl(&["batch", "inspect", sample().to_str().expect("path")]);
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    assert!(
        out.contains("roothash 0x86faa4aead7f5387aa70c763524c674a4877e2d1d6134851a02de127d5e02322"),
        "{out}"
    );
    assert!(out.contains("finalized_cids_root 0x04a066d979147a36eca07812c338f429fba6334baeef10c25ec428ffc48c821a"), "{out}");
    let o = seqctl(&[
        "--json",
        "batch",
        "inspect",
        sample().to_str().expect("path"),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["ok"], true);
    assert_eq!(v["submissions"], 51);
}

#[test]
fn batch_inspect_fails_on_a_wrong_roothash_and_with_previous_ids() {
    let text = std::fs::read_to_string(sample()).expect("sample");
    let tampered = text.replace("0x86faa4aead7f5387", "0x96faa4aead7f5387");
    let f = tmp("tampered.json", tampered.as_bytes());
    let o = seqctl(&["batch", "inspect", f.to_str().expect("path")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("roothash differs"));
    // The same document read as a later batch no longer matches either.
    let prev = tmp("prev.json", br#"["some-earlier-id"]"#);
    let o = seqctl(&[
        "batch",
        "inspect",
        "--previous-ids",
        prev.to_str().expect("path"),
        sample().to_str().expect("path"),
    ]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn submission_verify_recovers_the_vector_signer() {
    let doc: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root().join("tests/vectors/eip712.json")).expect("vectors"),
    )
    .expect("json");
    let c = &doc["cases"][0];
    let submission = serde_json::json!({
        "request": c["request"],
        "signature": c["signature"],
        "header": format!("0x{}", "ab".repeat(32)),
        "dataMarket": format!("0x{}", "cd".repeat(20)),
    });
    let f = tmp("sub.json", submission.to_string().as_bytes());
    let chain_id = c["domain"]["chainId"].to_string();
    let contract = c["domain"]["verifyingContract"].as_str().expect("address");
    let verify = |f: &PathBuf| {
        seqctl(&[
            "submission",
            "verify",
            "--chain-id",
            &chain_id,
            "--protocol-state",
            contract,
            f.to_str().expect("path"),
        ])
    };
    let o = verify(&f);
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    assert!(
        out.contains(&format!("digest {}", c["digest"].as_str().expect("digest"))),
        "{out}"
    );
    assert!(
        out.contains(&format!("signer {}", c["signer"].as_str().expect("signer"))),
        "{out}"
    );

    let mut bad = submission.clone();
    bad["signature"] = serde_json::Value::String(format!(
        "{}1d",
        &c["signature"].as_str().expect("sig")[..128]
    ));
    let f = tmp("bad.json", bad.to_string().as_bytes());
    let o = verify(&f);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad_v"));
    let o = seqctl(&[
        "submission",
        "verify",
        "--chain-id",
        "1",
        "--protocol-state",
        "nope",
        f.to_str().expect("path"),
    ]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn proof_verify_accepts_a_real_proof_and_rejects_a_tampered_one() {
    let subs: Vec<Accepted> = (0..6)
        .map(|i| Accepted {
            submission_id: format!("id-{i}"),
            submission: SnapshotSubmission {
                request: Request {
                    slot_id: i,
                    deadline: 1,
                    snapshot_cid: "bafkreihwyondy4kizuhvw2zzhzbueoeu725mxg57jsgwpaizummptvtjzy"
                        .into(),
                    epoch_id: 3,
                    project_id: format!("p{i}"),
                },
                ..Default::default()
            },
        })
        .collect();
    let cfg = FinalizeConfig {
        batch_size: 4,
        ..Default::default()
    };
    let batches = finalize_epoch(&subs, &cfg).expect("finalizes").batches;
    let refs: Vec<EpochBatch> = batches.iter().map(EpochBatch::from).collect();
    let proof = prove_inclusion("0xmarket", 3, &refs, "id-5").expect("listed");
    let pf = tmp(
        "proof.json",
        serde_json::to_string_pretty(&proof)
            .expect("json")
            .as_bytes(),
    );
    let bf = tmp("batch2.json", &batches[1].json);
    let o = seqctl(&[
        "proof",
        "verify",
        pf.to_str().expect("path"),
        "--batch",
        bf.to_str().expect("path"),
    ]);
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).starts_with("ok submission id-5 is leaf 5"));
    let mut tampered = proof.clone();
    tampered.submission_id = "id-4".into();
    let tf = tmp(
        "tampered-proof.json",
        serde_json::to_string(&tampered).expect("json").as_bytes(),
    );
    let o = seqctl(&["proof", "verify", tf.to_str().expect("path")]);
    assert_eq!(o.status.code(), Some(1));
}
