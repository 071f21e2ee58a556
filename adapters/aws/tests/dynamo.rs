//! `DynamoStore` against DynamoDB Local: the state store conformance suite (under a unique `ns`,
//! so runs can share the emulator's tables), decoding failures, and an unreachable endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use sequencer_aws::DynamoStore;
use sequencer_ports::conformance;
use sequencer_ports::{BoundedAdd, ErrorKind, Item, Key, StateStore, Table};

fn prefix() -> String {
    std::env::var("SEQ_PREFIX").unwrap_or_else(|_| "seq".into())
}

async fn store() -> Option<DynamoStore> {
    let conf = common::aws().await;
    if !common::require(
        "DynamoDB (DynamoDB Local)",
        common::dynamodb_up(&conf).await,
    ) {
        return None;
    }
    let client = Client::new(&conf);
    let names = client
        .list_tables()
        .send()
        .await
        .unwrap()
        .table_names
        .unwrap_or_default();
    let s = DynamoStore::new(client, prefix());
    let missing: Vec<String> = Table::ALL
        .iter()
        .map(|t| s.table_name(*t))
        .filter(|n| !names.contains(n))
        .collect();
    if !missing.is_empty()
        && !common::require(
            &format!("tables {missing:?} (localstack/create-resources.sh dynamodb)"),
            false,
        )
    {
        return None;
    }
    Some(s)
}

#[tokio::test]
async fn dynamo_store_conforms() {
    let Some(s) = store().await else { return };
    conformance::state_store(&s, &common::unique("ns")).await;
}

#[tokio::test]
async fn zero_ceiling_admits_nobody() {
    let Some(s) = store().await else { return };
    let k = Key::new(common::unique("zero"), "count");
    assert_eq!(
        s.add_bounded(Table::Counters, &k, "m", 0).await.unwrap(),
        BoundedAdd::Full(0)
    );
    assert_eq!(
        s.add_bounded(Table::Counters, &k, "m", 1).await.unwrap(),
        BoundedAdd::Added(1)
    );
    // The counter item reads back with empty data.
    let got = s.get(Table::Counters, &k).await.unwrap().unwrap();
    assert_eq!(got.data, "");
}

#[tokio::test]
async fn undecodable_items_are_corrupt() {
    let Some(s) = store().await else { return };
    let pk = common::unique("corrupt");
    s.client()
        .put_item()
        .table_name(s.table_name(Table::Epochs))
        .item("pk", AttributeValue::S(pk.clone()))
        .item("sk", AttributeValue::S("a".into()))
        .item("data", AttributeValue::N("12".into()))
        .send()
        .await
        .unwrap();
    let k = Key::new(&pk, "a");
    assert!(matches!(
        s.get(Table::Epochs, &k).await,
        Err(ref e) if *e.kind() == ErrorKind::Corrupt
    ));
    assert!(matches!(
        s.query(Table::Epochs, &pk, None, 10).await,
        Err(ref e) if *e.kind() == ErrorKind::Corrupt
    ));
    match s
        .transition(Table::Epochs, &k, Some("OPEN"), &Item::data("{}"))
        .await
    {
        Err(ref e) if *e.kind() == ErrorKind::Corrupt => {}
        other => panic!("refused transition reports the corrupt item: {other:?}"),
    }
}

#[tokio::test]
async fn unreachable_store_is_unavailable() {
    let conf = common::aws_at(&common::dead_endpoint().await).await;
    let s = DynamoStore::new(Client::new(&conf), "seq");
    let k = Key::new("p", "s");
    assert!(matches!(
        s.get(Table::Epochs, &k).await,
        Err(ref e) if *e.kind() == ErrorKind::Unavailable
    ));
    assert!(matches!(
        s.put_if_absent(Table::Epochs, &k, &Item::data("{}")).await,
        Err(ref e) if *e.kind() == ErrorKind::Unavailable
    ));
    assert!(matches!(
        s.add_bounded(Table::Counters, &k, "m", 3).await,
        Err(ref e) if *e.kind() == ErrorKind::Unavailable
    ));
    // A missing table (wrong prefix) is reported, not mistaken for an absent item.
    if let Some(real) = store().await {
        let wrong = DynamoStore::new(real.client().clone(), common::unique("noprefix"));
        assert!(matches!(
            wrong.get(Table::Epochs, &k).await,
            Err(ref e) if *e.kind() == ErrorKind::Unavailable
        ));
    }
}

#[tokio::test]
async fn throttling_is_unavailable() {
    let url = common::scripted_http(
        400,
        r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"slow down"}"#,
    )
    .await;
    let s = DynamoStore::new(Client::new(&common::aws_at(&url).await), "seq");
    match s.get(Table::Epochs, &Key::new("p", "s")).await {
        Err(e) if *e.kind() == ErrorKind::Unavailable => {
            assert!(e.message().contains("ThrottlingException"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}
