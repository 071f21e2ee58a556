//! Helpers shared by the seqctl tests that run the real binary against a chain and a served
//! content store.
#![allow(dead_code, clippy::unwrap_used)]

use std::process::Output;

/// Every variable seqctl reads for a flag (`seqctl --help`, README).
pub const SEQCTL_ENV: [&str; 9] = [
    "RPC_URL",
    "SOURCE_RPC_URL",
    "PROTOCOL_STATE_ADDRESS",
    "DATA_MARKET_ADDRESS",
    "IPFS_API_URL",
    "PROOF_API_URL",
    "CHAIN_ID",
    "ANCHOR_GROUP_ID",
    "RECORD_TTL_DAYS",
];

/// Runs the real `seqctl` with `args` off the async runtime. Every variable of [`SEQCTL_ENV`]
/// is removed (`scripts/env.sh` exports `IPFS_API_URL`), so only what a test passes on the
/// command line counts.
pub async fn seqctl(args: Vec<String>) -> Output {
    seqctl_env(args, Vec::new()).await
}

/// [`seqctl`] with these variables set (and the other [`SEQCTL_ENV`] ones removed).
pub async fn seqctl_env(args: Vec<String>, env: Vec<(&'static str, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_seqctl"));
        c.args(&args);
        for v in SEQCTL_ENV {
            c.env_remove(v);
        }
        c.envs(env).output().unwrap()
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
