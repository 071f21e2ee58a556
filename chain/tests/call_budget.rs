//! A call never outlives `RPC_CALL_BUDGET_MS`, whatever the node does: a node that accepts and
//! never answers, and one that refuses every connection (a transient error retried with
//! backoff), both end in the retryable `CallBudget` error inside the budget, although the
//! per-request timeout (10 s) and the retries (6 × backoff up to 5 s) alone would take over a
//! minute. This is what keeps verify's chain reads inside its 30 s Lambda timeout.

use std::time::{Duration, Instant};

use sequencer_chain::{ChainClient, ChainConfig, ChainError};

fn config(url: String, budget_ms: u64) -> ChainConfig {
    let mut cfg = ChainConfig::new(url, Default::default());
    cfg.rpc_timeout = Duration::from_secs(10);
    cfg.max_retries = 6;
    cfg.backoff_initial = Duration::from_millis(200);
    cfg.backoff_max = Duration::from_secs(5);
    cfg.call_budget = Duration::from_millis(budget_ms);
    cfg
}

#[tokio::test]
async fn a_node_that_never_answers_costs_one_budget_not_a_minute() {
    // Accepts connections and reads, never writes a byte back.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            open.push(s);
        }
    });
    let started = Instant::now();
    let err = ChainClient::connect(config(format!("http://{addr}"), 800))
        .await
        .expect_err("no answer");
    let took = started.elapsed();
    assert!(matches!(err, ChainError::CallBudget { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert!(took < Duration::from_secs(3), "took {took:?}");
    hold.abort();
}

#[tokio::test]
async fn a_refusing_node_is_retried_only_while_the_budget_lasts() {
    // A port nobody listens on: connection refused, a transient error.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let started = Instant::now();
    let err = ChainClient::connect(config(format!("http://127.0.0.1:{port}"), 1_000))
        .await
        .expect_err("refused");
    let took = started.elapsed();
    assert!(err.is_retryable(), "{err:?}");
    assert!(matches!(err, ChainError::CallBudget { .. }), "{err:?}");
    // 200 + 400 ms of backoff fit in 1 s; 800 more would not: stopped well before the 6 retries
    // (200 + 400 + … + 5 000 ms) would have ended.
    assert!(took < Duration::from_secs(2), "took {took:?}");
}
