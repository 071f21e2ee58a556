//! `--help` documents the environment and never shows a secret held there: RPC and IPFS URLs
//! carry API keys (in the path, the query or the user info), and the signing key variables hold
//! keys. Every command is asked, with every variable set to a value holding a marker.

use std::process::Command;

mod common;

const SECRET: &str = "s3cr3t-k3y-0123";

fn help(args: &[&str]) -> String {
    let url = format!("https://user:{SECRET}@host.example/v3/{SECRET}?apikey={SECRET}");
    let o = Command::new(env!("CARGO_BIN_EXE_seqctl"))
        .args(args)
        .arg("--help")
        .env("RPC_URL", &url)
        .env("SOURCE_RPC_URL", &url)
        .env("IPFS_API_URL", &url)
        .env("PROOF_API_URL", &url)
        .env("SEQCTL_PRIVATE_KEY", format!("0x{SECRET}"))
        .env("SEQCTL_PRIVATE_KEY_FILE", format!("/tmp/{SECRET}"))
        .env("SIGNER_PRIVATE_KEY", format!("0x{SECRET}"))
        .output()
        .expect("seqctl runs");
    assert!(o.status.success(), "{args:?}: {o:?}");
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn help_of_every_command_hides_secrets_from_the_environment() {
    for cmd in [
        &[][..],
        &["batch", "inspect"],
        &["submission", "verify"],
        &["proof", "verify"],
        &["proof", "get"],
        &["chain", "deploy"],
        &["chain", "release-epochs"],
        &["chain", "epoch"],
        &["audit", "epoch"],
        &["epochs", "failed"],
        &["epochs", "reanchor"],
    ] {
        let text = help(cmd);
        assert!(!text.contains(SECRET), "{cmd:?} shows a secret:\n{text}");
    }
    // The variables are named where they apply, once for all in the top-level help.
    let top = help(&[]);
    for v in common::SEQCTL_ENV.into_iter().chain(["SEQCTL_PRIVATE_KEY"]) {
        assert!(top.contains(v), "{v} missing from seqctl --help:\n{top}");
    }
    for (cmd, vars) in [
        (
            &["proof", "get"][..],
            &[
                "PROOF_API_URL",
                "IPFS_API_URL",
                "RPC_URL",
                "PROTOCOL_STATE_ADDRESS",
                "DATA_MARKET_ADDRESS",
            ][..],
        ),
        (
            &["proof", "verify"],
            &["RPC_URL", "PROTOCOL_STATE_ADDRESS", "IPFS_API_URL"],
        ),
        (
            &["audit", "epoch"],
            &[
                "RPC_URL",
                "PROTOCOL_STATE_ADDRESS",
                "IPFS_API_URL",
                "DATA_MARKET_ADDRESS",
                "CHAIN_ID",
            ],
        ),
        (
            &["chain", "epoch"],
            &["RPC_URL", "PROTOCOL_STATE_ADDRESS", "DATA_MARKET_ADDRESS"],
        ),
        (
            &["chain", "release-epochs"],
            &[
                "RPC_URL",
                "SOURCE_RPC_URL",
                "PROTOCOL_STATE_ADDRESS",
                "DATA_MARKET_ADDRESS",
            ],
        ),
        (&["chain", "deploy"], &["RPC_URL"]),
        (
            &["epochs", "reanchor"],
            &["DATA_MARKET_ADDRESS", "ANCHOR_GROUP_ID", "RECORD_TTL_DAYS"],
        ),
        (
            &["submission", "verify"],
            &["CHAIN_ID", "PROTOCOL_STATE_ADDRESS"],
        ),
    ] {
        let text = help(cmd);
        for v in vars {
            assert!(
                text.contains(&format!("[env: {v}")),
                "{cmd:?} does not name {v}:\n{text}"
            );
        }
    }
}
