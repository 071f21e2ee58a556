//! The `aws-kms` signer for real: a secp256k1 key created in the AWS emulator's KMS
//! (`AWS_ENDPOINT_URL`, LocalStack with `kms` in its SERVICES, see localstack/), a client
//! configured with `SignerSource::Kms` against a spawned anvil, and every transaction (deploy,
//! market setup, epoch release, batch anchoring) signed by KMS.

#![cfg(feature = "aws-kms")]

mod common;

use std::time::Duration;

use alloy::{
    consensus::Transaction as _,
    network::TransactionResponse,
    primitives::{keccak256, Address, U256},
    providers::Provider,
    rpc::types::TransactionRequest,
};
use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use common::*;
use sequencer_chain::{
    deploy::{deploy_local, DeployPlan},
    ChainClient, SignerSource, SubmitOutcome, Windows,
};

/// Whether a service-dependent test should run: prints a loud skip (and returns false) when the
/// service is missing, unless SEQ_REQUIRE_SERVICES=1, then panics.
fn require(what: &str, missing: Option<String>) -> bool {
    let Some(why) = missing else {
        return true;
    };
    if std::env::var("SEQ_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{what} is required (SEQ_REQUIRE_SERVICES=1) but missing: {why}");
    }
    eprintln!("\n!!!!! SKIPPED: {what} is missing ({why}); this test did not run !!!!!\n");
    false
}

/// The Ethereum address of a KMS secp256k1 public key (DER SubjectPublicKeyInfo, as
/// `GetPublicKey` returns it), derived here independently of alloy-signer-aws: the key ends with
/// the uncompressed point `04 ‖ X ‖ Y`; the address is the last 20 bytes of keccak256(X ‖ Y).
fn address_of_der(der: &[u8]) -> Address {
    assert!(
        der.len() > 65 && der[der.len() - 65] == 0x04,
        "not an uncompressed EC point: {der:02x?}"
    );
    Address::from_slice(&keccak256(&der[der.len() - 64..])[12..])
}

#[tokio::test(flavor = "multi_thread")]
async fn kms_key_deploys_and_anchors_exactly_once() {
    let Some(bin) = anvil_bin("kms_key_deploys_and_anchors_exactly_once") else {
        return;
    };

    // A fresh secp256k1 signing key in the emulator's KMS.
    let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let kms = aws_sdk_kms::Client::new(&conf);
    let created = tokio::time::timeout(
        Duration::from_secs(30),
        kms.create_key()
            .key_spec(KeySpec::EccSecgP256K1)
            .key_usage(KeyUsageType::SignVerify)
            .description("sequencer-chain kms test")
            .send(),
    )
    .await;
    let created = match created {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(format!(
            "CreateKey ECC_SECG_P256K1 failed: {}",
            aws_sdk_kms::error::DisplayErrorContext(&e)
        )),
        Err(_) => Err("CreateKey timed out after 30 s".to_string()),
    };
    if !require(
        "KMS of the AWS emulator (AWS_ENDPOINT_URL, LocalStack with SERVICES including kms)",
        created.as_ref().err().cloned(),
    ) {
        return;
    }
    let key_id = created
        .expect("created")
        .key_metadata
        .expect("key metadata")
        .key_id;
    let public = kms
        .get_public_key()
        .key_id(&key_id)
        .send()
        .await
        .expect("GetPublicKey");
    let kms_address = address_of_der(public.public_key.expect("public key").as_ref());

    // The client signs with KMS; its address is the key's.
    let anvil = spawn_anvil(&bin, None);
    let mut cfg = test_config(&anvil.endpoint(), None);
    cfg.signer = Some(SignerSource::Kms(key_id.clone()));
    let client = ChainClient::connect(cfg).await.expect("connect with KMS");
    assert_eq!(client.signer_address(), Some(kms_address));
    assert!(!anvil.addresses().contains(&kms_address));

    // Fund it from anvil's first (unlocked) account.
    let funder = anvil.addresses()[0];
    let funding = client
        .provider()
        .send_transaction(
            TransactionRequest::default()
                .from(funder)
                .to(kms_address)
                .value(U256::from(10u64).pow(U256::from(18))),
        )
        .await
        .expect("send funding")
        .get_receipt()
        .await
        .expect("funding receipt");
    assert!(funding.status());

    // Deploy, register the market, grant roles, assign slots: every transaction KMS-signed.
    let plan = DeployPlan {
        slots: 3,
        windows: Windows {
            snapshot_blocks: 20,
            batch_blocks: 60,
        },
        ..DeployPlan::default()
    };
    let (c, deployment) = deploy_local(&client, &plan).await.expect("deploy with KMS");
    assert_eq!(
        (
            deployment.owner,
            deployment.sequencer,
            deployment.epoch_manager
        ),
        (kms_address, kms_address, kms_address)
    );
    let market = deployment.data_market;
    let (_, epoch) = c.release_epoch(market, 100, 109).await.expect("release");
    assert_eq!(epoch, 1);

    // Anchor a batch: the node recovers the KMS key's address from the signature.
    let projects = strings(&["proj:a", "proj:b"]);
    let cids = strings(&[CID_A, CID_B]);
    let out = c
        .submit_batch(market, epoch, "batch-kms", &projects, &cids, root(7))
        .await
        .expect("submit with KMS");
    let SubmitOutcome::Anchored {
        tx_hash,
        delayed: false,
        ..
    } = out
    else {
        panic!("expected Anchored, got {out:?}")
    };
    let tx = c
        .provider()
        .get_transaction_by_hash(tx_hash)
        .await
        .expect("get tx")
        .expect("tx exists");
    assert_eq!(tx.from(), kms_address);
    assert_eq!(tx.to(), Some(deployment.protocol_state));
    assert_eq!(tx.chain_id(), Some(c.chain_id()));
    let a = c.anchored(market, epoch).await.expect("anchored");
    assert_eq!(a.batch("batch-kms").map(|b| b.root), Some(root(7)));

    // A retry finds it anchored and sends nothing (KMS is not asked to sign again).
    let nonce = c
        .provider()
        .get_transaction_count(kms_address)
        .await
        .expect("nonce");
    let retry = c
        .submit_batch(market, epoch, "batch-kms", &projects, &cids, root(7))
        .await
        .expect("retry");
    assert!(
        matches!(retry, SubmitOutcome::AlreadyAnchored { tx_hash: Some(h), root: r, delayed: false, .. } if h == tx_hash && r == root(7)),
        "{retry:?}"
    );
    assert_eq!(
        c.provider()
            .get_transaction_count(kms_address)
            .await
            .expect("nonce"),
        nonce
    );

    let _ = kms
        .schedule_key_deletion()
        .key_id(&key_id)
        .pending_window_in_days(7)
        .send()
        .await;
}
