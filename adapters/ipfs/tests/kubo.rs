//! `KuboContent` against a real IPFS HTTP RPC (js-ipfs from scripts/ipfs.sh, or Kubo) and against
//! scripted fake nodes: a node that answers another CID is refused, one that serves bytes not
//! matching the CID is corrupt, an unreachable one is unavailable.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use sequencer_core::cids::{document_cid, raw_cid};
use sequencer_ipfs::{Config, KuboContent};
use sequencer_ports::conformance;
use sequencer_ports::{ContentStore, ErrorKind};

/// The shared test kit's helpers, under the names these tests use.
mod common {
    pub use sequencer_testsupport::net::{dead_endpoint, scripted_http};

    /// A loud skip (false), or a panic under SEQ_REQUIRE_SERVICES=1.
    pub fn require(what: &str, available: bool) -> bool {
        sequencer_testsupport::require_service(what, available)
    }

    /// `IPFS_API_URL` if an IPFS RPC answers there.
    pub async fn ipfs_url() -> Option<String> {
        let url = std::env::var("IPFS_API_URL").ok()?;
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .ok()?;
        let ok = client
            .post(format!("{}/api/v0/id", url.trim_end_matches('/')))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        ok.then_some(url)
    }
}

fn at(url: &str) -> KuboContent {
    KuboContent::new(url, Duration::from_secs(10), Duration::from_millis(1500)).unwrap()
}

#[tokio::test]
async fn kubo_content_conforms() {
    let Some(url) = common::ipfs_url().await else {
        common::require(
            "an IPFS HTTP API at IPFS_API_URL (scripts/ipfs.sh start)",
            false,
        );
        return;
    };
    let store = at(&url);
    conformance::content_store(&store).await;

    // A document up to one raw block (256 KiB) round-trips with the locally computed CID.
    let big: Vec<u8> = (0..256 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    let cid = store.put(&big).await.unwrap();
    assert_eq!(cid, raw_cid(&big).to_string());
    assert_eq!(store.get(&cid).await.unwrap().as_deref(), Some(&big[..]));

    // One byte more and the node chunks it into a UnixFS DAG of raw leaves: the node's root is
    // the one computed locally (docs/protocol.md §6), and `cat` gives the whole document back.
    let bigger = [big.as_slice(), b"!"].concat();
    let cid = store.put(&bigger).await.unwrap();
    assert!(cid.starts_with("bafybei"), "{cid}");
    assert_eq!(cid, document_cid(&bigger).to_string());
    assert_eq!(store.get(&cid).await.unwrap().as_deref(), Some(&bigger[..]));
    // 300 KiB and a 1 MiB batch-shaped document (a JSON array of submissions, escapes included).
    let a: Vec<u8> = (0..300 * 1024u32)
        .map(|i| ((i * 7 + 3) % 251) as u8)
        .collect();
    assert_eq!(
        store.put(&a).await.unwrap(),
        "bafybeifrdasshsfwx7jzd65bo7kz2i3gpiho3jepsgdbgnxrf5n4tav6va"
    );
    let doc = serde_json::to_vec(
        &(0..2000)
            .map(|i| format!(r#"{{"request":{{"slotId":{i},"projectId":"\"big\"{i:0>480}"}}}}"#))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(doc.len() > 1024 * 1024, "{}", doc.len());
    let cid = store.put(&doc).await.unwrap();
    assert_eq!(cid, document_cid(&doc).to_string());
    assert_eq!(store.get(&cid).await.unwrap().as_deref(), Some(&doc[..]));
    // Not a CID: nothing to get.
    assert_eq!(store.get("not-a-cid").await.unwrap(), None);
}

#[tokio::test]
async fn config_points_at_the_api() {
    let c = Config::from_lookup(|k| (k == "IPFS_API_URL").then(|| "http://127.0.0.1:5999/".into()));
    assert_eq!(
        KuboContent::from_config(&c).unwrap().base_url(),
        "http://127.0.0.1:5999"
    );
    assert!(KuboContent::from_config(&Config::from_lookup(|k| {
        (k == "IPFS_API_URL").then(|| "localhost:5001".into())
    }))
    .is_err());
}

#[tokio::test]
async fn another_cid_is_refused() {
    // The empty file's CID, whatever was uploaded.
    let url = common::scripted_http(
        200,
        r#"{"Name":"batch","Hash":"bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku","Size":"0"}"#,
    )
    .await;
    match at(&url)
        .put(b"hello world\n")
        .await
        .map_err(|e| e.kind().clone())
    {
        Err(ErrorKind::CidMismatch { expected, got }) => {
            assert_eq!(
                expected,
                "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
            );
            assert_eq!(
                got,
                "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
            );
        }
        other => panic!("expected CidMismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn bytes_not_matching_their_cid_are_corrupt() {
    let url = common::scripted_http(200, "tampered").await;
    let cid = raw_cid(b"hello world\n").to_string();
    assert!(
        matches!(at(&url).get(&cid).await, Err(ref e) if *e.kind() == ErrorKind::Corrupt && e.message() == cid)
    );
}

#[tokio::test]
async fn node_answers_are_classified() {
    let cid = raw_cid(b"x").to_string();
    // js-ipfs's answer when its `timeout=` passes, and Kubo's offline miss: not there.
    for body in [
        r#"{"Message":"Failed to cat file: request timed out","Code":0,"Type":"error"}"#,
        r#"{"Message":"block was not found locally (offline): ipld: could not find bafk","Code":0,"Type":"error"}"#,
    ] {
        let url = common::scripted_http(500, body).await;
        assert_eq!(at(&url).get(&cid).await.unwrap(), None, "{body}");
    }
    // Any other failure: unavailable (retry), for both calls.
    let url = common::scripted_http(500, r#"{"Message":"repo is locked","Code":0}"#).await;
    assert!(matches!(
        at(&url).get(&cid).await,
        Err(ref e) if *e.kind() == ErrorKind::Unavailable
    ));
    assert!(matches!(
        at(&url).put(b"x").await,
        Err(ref e) if *e.kind() == ErrorKind::Unavailable
    ));
    let url = common::scripted_http(200, "not json").await;
    assert!(matches!(
        at(&url).put(b"x").await,
        Err(ref e) if *e.kind() == ErrorKind::Unavailable
    ));
}

#[tokio::test]
async fn unreachable_node_is_unavailable() {
    let store = at(&common::dead_endpoint().await);
    assert!(matches!(
        store.put(b"x").await,
        Err(ref e) if *e.kind() == ErrorKind::Unavailable
    ));
    assert!(matches!(
        store.get(&raw_cid(b"x").to_string()).await,
        Err(ref e) if *e.kind() == ErrorKind::Unavailable
    ));
}

#[tokio::test]
async fn a_node_that_never_answers_is_unavailable() {
    // Accepts connections and never answers: the client's timeout (cat timeout + 5 s) fires.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    let store =
        KuboContent::new(&url, Duration::from_millis(500), Duration::from_millis(100)).unwrap();
    assert!(matches!(
        store.put(b"x").await,
        Err(ref e) if *e.kind() == ErrorKind::Unavailable
    ));
    assert!(matches!(
        store.get(&raw_cid(b"x").to_string()).await,
        Err(ref e) if *e.kind() == ErrorKind::Unavailable
    ));
}
