//! `SqsQueue` against LocalStack's SQS: the queue conformance suite on a fresh standard queue and
//! a fresh FIFO queue (each with its own DLQ, uniquely named so runs can share the emulator), the
//! named queues of `localstack/resources.py`, and failures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use aws_sdk_sqs::operation::create_queue::builders::CreateQueueFluentBuilder;
use aws_sdk_sqs::types::QueueAttributeName;
use aws_sdk_sqs::Client;
use sequencer_aws::{QueueKind, SqsQueue};
use sequencer_ports::conformance;
use sequencer_ports::{ErrorKind, OutMessage, Queue};

/// Creates `<name>` (visibility timeout 10 s) with DLQ `<name>-dlq`, as resources.py does.
async fn fresh_pair(client: &Client, name: &str, fifo: bool) -> (SqsQueue, SqsQueue) {
    let suffix = if fifo { ".fifo" } else { "" };
    let with_fifo = |b: CreateQueueFluentBuilder| {
        if fifo {
            b.attributes(QueueAttributeName::FifoQueue, "true")
                .attributes(QueueAttributeName::ContentBasedDeduplication, "false")
        } else {
            b
        }
    };
    let dlq_req = with_fifo(
        client
            .create_queue()
            .queue_name(format!("{name}-dlq{suffix}")),
    );
    let req = with_fifo(client.create_queue().queue_name(format!("{name}{suffix}")));
    let dlq_url = dlq_req.send().await.unwrap().queue_url.unwrap();
    let arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()
        .remove(&QueueAttributeName::QueueArn)
        .unwrap();
    let redrive = format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":5}}"#);
    req.attributes(QueueAttributeName::VisibilityTimeout, "10")
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .send()
        .await
        .unwrap();
    // Resolved by name: the DLQ comes from the redrive policy.
    let q = SqsQueue::resolve(client, &format!("{name}{suffix}"))
        .await
        .unwrap();
    assert_eq!(q.dlq_url(), Some(dlq_url.as_str()));
    assert_eq!(q.is_fifo(), fifo);
    (q, SqsQueue::new(client.clone(), dlq_url))
}

async fn delete(client: &Client, qs: &[&SqsQueue]) {
    for q in qs {
        let _ = client.delete_queue().queue_url(q.url()).send().await;
    }
}

async fn client() -> Option<Client> {
    let conf = common::aws().await;
    common::require("SQS (LocalStack)", common::sqs_up(&conf).await).then(|| Client::new(&conf))
}

#[tokio::test]
async fn standard_queue_conforms() {
    let Some(client) = client().await else { return };
    let (q, dlq) = fresh_pair(&client, &common::unique("std"), false).await;
    conformance::queue(&q, &dlq, false).await;
    assert_eq!(q.depth().await.unwrap(), 0);
    delete(&client, &[&q, &dlq]).await;
}

#[tokio::test]
async fn fifo_queue_conforms() {
    let Some(client) = client().await else { return };
    let (q, dlq) = fresh_pair(&client, &common::unique("fifo"), true).await;
    conformance::queue(&q, &dlq, true).await;
    delete(&client, &[&q, &dlq]).await;
}

#[tokio::test]
async fn fifo_dedup_and_depth() {
    let Some(client) = client().await else { return };
    let (q, dlq) = fresh_pair(&client, &common::unique("dedup"), true).await;
    let m = OutMessage::new("x").attr("a", "1").fifo("key-1", "same");
    q.send(std::slice::from_ref(&m)).await.unwrap();
    q.send(&[m]).await.unwrap();
    assert_eq!(
        q.depth().await.unwrap(),
        1,
        "a repeated dedup id is dropped"
    );
    let got = q.receive(10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].group_id.as_deref(), Some("key-1"));
    // A FIFO message needs a group.
    assert!(matches!(
        q.send(&[OutMessage::new("no group")]).await,
        Err(ref e) if *e.kind() == ErrorKind::Refused
    ));
    delete(&client, &[&q, &dlq]).await;
}

#[tokio::test]
async fn named_queues_resolve_with_their_dlqs() {
    let Some(client) = client().await else { return };
    let prefix = std::env::var("SEQ_PREFIX").unwrap_or_else(|_| "seq".into());
    for kind in QueueKind::ALL {
        let q = match SqsQueue::for_kind(&client, &prefix, kind).await {
            Ok(q) => q,
            Err(e) => {
                if !common::require(
                    &format!(
                        "queue {} (localstack/create-resources.sh)",
                        kind.queue_name(&prefix, false)
                    ),
                    false,
                ) {
                    return;
                }
                panic!("{e}");
            }
        };
        assert_eq!(q.name(), kind.queue_name(&prefix, false));
        assert!(q
            .dlq_url()
            .unwrap()
            .ends_with(&kind.queue_name(&prefix, true)));
        assert_eq!(q.is_fifo(), kind.fifo());
        q.depth().await.unwrap();
    }
}

#[tokio::test]
async fn failures_are_classified() {
    // Nothing listens: transport failure, transient.
    let dead = Client::new(&common::aws_at(&common::dead_endpoint().await).await);
    let q = SqsQueue::new(
        dead.clone(),
        "http://127.0.0.1:1/queue/us-east-1/000000000000/x",
    );
    assert!(matches!(
        q.send(&[OutMessage::new("m")]).await,
        Err(ref e) if *e.kind() == ErrorKind::Unavailable
    ));
    assert!(matches!(
        q.receive(1, Duration::ZERO).await,
        Err(ref e) if *e.kind() == ErrorKind::Unavailable
    ));
    assert!(matches!(
        SqsQueue::queue_url(&dead, "x").await,
        Err(ref e) if *e.kind() == ErrorKind::Unavailable
    ));

    // A missing queue is refused, not "unavailable".
    let Some(client) = client().await else { return };
    let missing = SqsQueue::queue_url(&client, &common::unique("missing")).await;
    assert!(
        matches!(missing, Err(ref e) if *e.kind() == ErrorKind::Refused),
        "{missing:?}"
    );
    // Dead-lettering without a DLQ is refused.
    let (q, dlq) = fresh_pair(&client, &common::unique("nodlq"), false).await;
    let plain = SqsQueue::new(client.clone(), q.url());
    plain.send(&[OutMessage::new("p")]).await.unwrap();
    let got = plain.receive(1, Duration::from_secs(1)).await.unwrap();
    assert!(matches!(
        plain.dead_letter(&got[0], "r").await,
        Err(ref e) if *e.kind() == ErrorKind::Refused
    ));
    // Empty attribute values are refused before sending.
    assert!(matches!(
        q.send(&[OutMessage::new("e").attr("k", "")]).await,
        Err(ref e) if *e.kind() == ErrorKind::Refused
    ));
    delete(&client, &[&q, &dlq]).await;
}

#[tokio::test]
async fn service_errors_are_classified() {
    // Throttling and 5xx are transient; other service errors are refusals.
    for (status, body, transient) in [
        (
            400,
            r#"{"__type":"com.amazonaws.sqs#ThrottlingException","message":"slow down"}"#,
            true,
        ),
        (
            500,
            r#"{"__type":"com.amazonaws.sqs#InternalError","message":"oops"}"#,
            true,
        ),
        (
            400,
            r#"{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"no such queue"}"#,
            false,
        ),
    ] {
        let url = common::scripted_http(status, body).await;
        let client = Client::new(&common::aws_at(&url).await);
        let q = SqsQueue::new(client, format!("{url}/000000000000/q"));
        let got = q.depth().await;
        match (got.as_ref().map_err(|e| e.kind()), transient) {
            (Err(ErrorKind::Unavailable), true) | (Err(ErrorKind::Refused), false) => {}
            _ => panic!("{status} {body}: got {got:?}"),
        }
    }
}
