//! Helpers shared by the seqctl tests that run the real binary against a chain and a served
//! content store.
#![allow(dead_code, clippy::unwrap_used)]

use std::process::Output;

/// Runs the real `seqctl` with `args` off the async runtime. `RPC_URL` and
/// `PROTOCOL_STATE_ADDRESS` are removed, so only what a test passes on the command line counts.
pub async fn seqctl(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_seqctl"))
            .args(&args)
            .env_remove("RPC_URL")
            .env_remove("PROTOCOL_STATE_ADDRESS")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// Standard output then standard error, as text.
pub fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The `FAIL …` lines of a check report.
pub fn fails(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.starts_with("FAIL"))
        .map(String::from)
        .collect()
}
