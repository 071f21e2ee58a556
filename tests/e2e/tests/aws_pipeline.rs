//! The whole pipeline on the emulators: simulator → libp2p ingress → SQS → verify → DynamoDB →
//! tick → finalize → IPFS (js-ipfs, the Kubo RPC) → anchor → anvil, through the local runner's
//! `--aws` mode. The runner itself asserts every simulated outcome (accepted, or rejected with
//! the expected reason) and checks sampled inclusion proofs against the batch bytes fetched from
//! IPFS and the roots on chain; this test adds the fault drills: every message delivered twice,
//! and a poison message that must reach the DLQ while everything else goes on.

#![recursion_limit = "256"]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use clap::Parser;

/// The services and tools this test needs, or a loud skip (a failure under
/// `SEQ_REQUIRE_SERVICES=1`).
async fn services(test: &str) -> bool {
    let missing = sequencer_testsupport::missing(
        &[
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_DYNAMODB",
            "IPFS_API_URL",
        ],
        &["ANVIL_BIN", "LOCALSTACK_PYTHON"],
    )
    .await;
    sequencer_testsupport::require(test, &missing)
}

/// Creates fresh queues and tables under a prefix of their own.
fn create_resources(prefix: &str) {
    sequencer_testsupport::create_resources(prefix).expect("emulator resources");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_on_the_emulators_with_duplicates_and_poison() {
    if !services("pipeline_on_the_emulators_with_duplicates_and_poison").await {
        return;
    }
    let prefix = format!("e2e{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    create_resources(&prefix);
    // SAFETY of the process environment: nextest runs each test in a process of its own.
    std::env::set_var("SEQ_PREFIX", &prefix);

    let sdk = sequencer_aws::aws_sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = |name: String| {
        let sqs = sqs.clone();
        async move {
            sqs.get_queue_url()
                .queue_name(name)
                .send()
                .await
                .unwrap()
                .queue_url
                .unwrap()
        }
    };
    let submissions = url(format!("{prefix}-submissions")).await;
    let dlq = url(format!("{prefix}-submissions-dlq")).await;
    sqs.send_message()
        .queue_url(&submissions)
        .message_body("this is not a /collect message")
        .send()
        .await
        .unwrap();

    let dir = tempfile_dir();
    let args = sequencer_runner::Args::parse_from([
        "sequencer-local",
        "--aws",
        "--deliver-twice",
        "--epochs",
        "2",
        "--slots",
        "10",
        "--projects",
        "5",
        "--data-dir",
        dir.to_str().unwrap(),
    ]);
    let code = sequencer_runner::run(args).await.expect("runs");
    assert_eq!(
        code, 0,
        "every outcome and proof held with every message delivered twice"
    );

    let got = sqs
        .receive_message()
        .queue_url(&dlq)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .wait_time_seconds(2)
        .send()
        .await
        .unwrap();
    let msgs = got.messages.unwrap_or_default();
    let poison = msgs
        .iter()
        .find(|m| m.body.as_deref() == Some("this is not a /collect message"))
        .expect("the poison message is in the DLQ");
    let reason = poison
        .message_attributes
        .as_ref()
        .and_then(|a| a.get("dead_letter_reason"))
        .and_then(|v| v.string_value.clone())
        .unwrap_or_default();
    assert!(reason.starts_with("malformed:"), "{reason}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("seq-e2e-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
