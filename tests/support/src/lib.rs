//! Helpers shared by the integration tests of several crates (a dev-dependency only):
//!
//! - service probes that skip loudly (below: [`require`], [`missing`], [`anvil_bin`]) and the
//!   emulator resources ([`create_resources`]);
//! - [`net`]: unique names, a dead endpoint, a scripted HTTP server for failure tests;
//! - [`MemChain`] ([`memchain`]): the protocol chain in memory;
//! - [`signing`]: signed `/collect` messages from the simulated slot keys;
//! - [`Harness`] ([`harness`], feature `harness`, on by default): a pipeline on the embedded
//!   adapters and a [`MemChain`], and [`ServedContent`], a read-only content store over fixed
//!   documents;
//! - [`metrics`]: [`MetricsProbe`], what a pipeline recorded, read back by the metrics
//!   catalogue's definitions (the [`Harness`] has one);
//! - [`events`]: Lambda events as Lambda delivers them (a function URL request);
//! - [`faults`]: a state store that fails the next call of a kind (a crash between two port
//!   calls), stalls, or counts calls in flight;
//! - [`gate`]: one handler's port calls (state, content, queues) counted, and the n-th parked
//!   (another handler runs in between) or failed (a crash between two calls).
//!
//! A test that needs a service or tool asks [`require`] first: with everything present it runs;
//! with something missing it prints a loud skip and returns `false`, or panics when
//! `SEQ_REQUIRE_SERVICES=1` (`scripts/test.sh` and CI set it), so a CI run can never pass by
//! skipping. `source scripts/env.sh` sets the variables probed here.

pub mod bench;
pub mod events;
pub mod faults;
pub mod gate;
#[cfg(feature = "harness")]
pub mod harness;
pub mod memchain;
pub mod metrics;
pub mod net;
pub mod signing;

#[cfg(feature = "harness")]
pub use harness::{Harness, ServedContent};
pub use memchain::{block_hash_of, MemChain, SendFault};
pub use metrics::MetricsProbe;
pub use signing::signed_message;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How to get the services and tools the probes look for.
pub const HOW_TO_START: &str =
    "source scripts/env.sh; localstack/start.sh; scripts/ipfs.sh start; \
     scripts/tools.sh anvil cargo-lambda";

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether something listens at the `host:port` of `url` (http:// or a bare host:port), within 2 s.
pub async fn listening(url: &str) -> bool {
    let rest = url
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    let hostport = rest.split('/').next().unwrap_or(rest).to_string();
    matches!(
        tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(hostport)
        )
        .await,
        Ok(Ok(_))
    )
}

/// The names of what is missing: each of `urls` is an environment variable holding a service URL
/// that must answer, each of `files` one holding the path of an executable file.
pub async fn missing(urls: &[&str], files: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for var in urls {
        match std::env::var(var) {
            Ok(u) if listening(&u).await => {}
            _ => out.push((*var).to_string()),
        }
    }
    for var in files {
        if !std::env::var_os(var).is_some_and(|p| Path::new(&p).is_file()) {
            out.push((*var).to_string());
        }
    }
    out
}

/// `true` when nothing is missing; otherwise a loud skip (`false`), or a panic under
/// `SEQ_REQUIRE_SERVICES=1`.
pub fn require(test: &str, missing: &[String]) -> bool {
    if missing.is_empty() {
        return true;
    }
    if std::env::var("SEQ_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{test}: {missing:?} not available and SEQ_REQUIRE_SERVICES=1 ({HOW_TO_START})");
    }
    eprintln!("\n!!!!! SKIPPED {test}: {missing:?} not available ({HOW_TO_START}) !!!!!\n");
    false
}

/// `true` when `service` is `up`; otherwise a loud skip or a panic as [`require`].
pub fn require_service(service: &str, up: bool) -> bool {
    if up {
        return true;
    }
    require(service, &[service.to_string()])
}

/// The anvil binary (`ANVIL_BIN`), or a loud skip / panic as [`require`].
pub fn anvil_bin(test: &str) -> Option<PathBuf> {
    match std::env::var_os("ANVIL_BIN").map(PathBuf::from) {
        Some(p) if p.is_file() => Some(p),
        _ => {
            require(test, &["ANVIL_BIN".to_string()]);
            None
        }
    }
}

/// Errors creating emulator resources.
#[derive(Debug)]
pub struct ResourcesError(pub String);

impl std::fmt::Display for ResourcesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "localstack/resources.py create: {}", self.0)
    }
}

impl std::error::Error for ResourcesError {}

/// Creates the sequencer's queues and tables under `prefix` on the emulators, with the same
/// script `localstack/start.sh` uses (`LOCALSTACK_PYTHON`), so tests see exactly the deployed
/// schema.
pub fn create_resources(prefix: &str) -> Result<(), ResourcesError> {
    let py = std::env::var("LOCALSTACK_PYTHON")
        .map_err(|_| ResourcesError("LOCALSTACK_PYTHON is not set".into()))?;
    let out = Command::new(py)
        .arg(repo_root().join("localstack/resources.py"))
        .arg("create")
        .env("SEQ_PREFIX", prefix)
        .current_dir(repo_root())
        .output()
        .map_err(|e| ResourcesError(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ResourcesError(
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }
}
