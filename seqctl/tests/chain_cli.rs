//! `seqctl chain deploy | release-epochs | epoch` against a real anvil (ANVIL_BIN). Without
//! anvil the test prints a loud skip line, or fails under `SEQ_REQUIRE_SERVICES=1`.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn anvil() -> Option<(Node, String)> {
    anvil_with(&[])
}

fn anvil_with(extra: &[&str]) -> Option<(Node, String)> {
    let bin = std::env::var_os("ANVIL_BIN")
        .map(PathBuf::from)
        .filter(|p| p.is_file());
    let Some(bin) = bin else {
        if std::env::var("SEQ_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("ANVIL_BIN is not set or missing and SEQ_REQUIRE_SERVICES=1");
        }
        eprintln!("\n!!!!! SKIPPED seqctl chain CLI test: ANVIL_BIN is not set or missing (scripts/tools.sh anvil; source scripts/env.sh) !!!!!\n");
        return None;
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new(bin)
        .args(["--port", &port.to_string()])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn anvil");
    let node = Node(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "anvil did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((node, format!("http://127.0.0.1:{port}")))
}

/// Runs seqctl with only `envs` of the variables it reads set.
fn run(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_seqctl"));
    c.args(args);
    for v in [
        "SIGNER_PRIVATE_KEY",
        "SEQCTL_PRIVATE_KEY",
        "SEQCTL_PRIVATE_KEY_FILE",
        "PROTOCOL_STATE_ADDRESS",
        "DATA_MARKET_ADDRESS",
        "RPC_URL",
    ] {
        c.env_remove(v);
    }
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("run seqctl")
}

fn seqctl(args: &[&str]) -> String {
    let out = run(args, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "seqctl {args:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn deploy_release_and_show_an_epoch() {
    let Some((_node, url)) = anvil() else { return };
    let d: serde_json::Value = serde_json::from_str(&seqctl(&[
        "chain",
        "deploy",
        "--rpc-url",
        &url,
        "--slots",
        "3",
        "--epoch-size",
        "5",
        "--json",
    ]))
    .expect("deploy json");
    assert_eq!(d["chain_id"], 31337);
    // Addresses are EIP-55 checksummed, like every other output.
    assert_eq!(d["owner"], "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
    for field in [
        "protocol_state",
        "data_market",
        "sequencer",
        "epoch_manager",
    ] {
        let a = d[field].as_str().expect(field);
        let parsed: sequencer_chain::Address = a.parse().expect("address");
        assert_eq!(a, parsed.to_checksum(None), "{field}");
    }
    let slot1 = d["slots"][0][1].as_str().expect("slot address");
    assert_ne!(slot1, slot1.to_lowercase(), "slot addresses checksummed");
    assert_eq!(d["slots"].as_array().map(Vec::len), Some(3));
    let ps = d["protocol_state"]
        .as_str()
        .expect("protocol_state")
        .to_string();
    let market = d["data_market"].as_str().expect("data_market").to_string();
    // Simulated slot keys are reproducible: slot 1 = keccak256("powerloom-sequencer/sim-snapshotter/1").
    assert_eq!(
        d["slots"][0][1].as_str().map(str::to_lowercase).as_deref(),
        Some("0x50f505d185f06ac97ab6dfc70a1fe26798655f15")
    );

    let releases = seqctl(&[
        "chain",
        "release-epochs",
        "--rpc-url",
        &url,
        "--protocol-state",
        &ps,
        "--market",
        &market,
        "--every",
        "2-blocks",
        "--count",
        "2",
        "--mine-idle",
        "--poll-ms",
        "20",
        "--json",
    ]);
    let lines: Vec<serde_json::Value> = releases
        .lines()
        .map(|l| serde_json::from_str(l).expect("release json"))
        .collect();
    assert_eq!(lines.len(), 2, "{releases}");
    assert_eq!(
        (
            lines[0]["epoch_id"].as_u64(),
            lines[0]["begin"].as_u64(),
            lines[0]["end"].as_u64()
        ),
        (Some(1), Some(1), Some(5))
    );
    assert_eq!(
        (lines[1]["epoch_id"].as_u64(), lines[1]["begin"].as_u64()),
        (Some(2), Some(6))
    );
    let gap = lines[1]["block"]
        .as_u64()
        .unwrap_or(0)
        .saturating_sub(lines[0]["block"].as_u64().unwrap_or(0));
    assert!(gap >= 2, "released {gap} blocks apart");

    let e: serde_json::Value = serde_json::from_str(&seqctl(&[
        "--json",
        "chain",
        "epoch",
        &market,
        "2",
        "--rpc-url",
        &url,
        "--protocol-state",
        &ps,
    ]))
    .expect("epoch json");
    assert_eq!(e["release_block"], lines[1]["block"]);
    assert_eq!(e["batches"].as_array().map(Vec::len), Some(0));
    let text = seqctl(&[
        "chain",
        "epoch",
        &market,
        "9",
        "--rpc-url",
        &url,
        "--protocol-state",
        &ps,
    ]);
    assert!(text.contains("not released"), "{text}");
}

/// Anvil's funded accounts 1 and 2 of its standard test mnemonic (public, like account 0).
const KEY1: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const ADDR1: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const KEY2: &str = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a";
const ADDR2: &str = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Neither the key nor its hex without `0x` appears in what seqctl printed.
fn assert_key_not_printed(o: &std::process::Output, key: &str) {
    let all = text(o);
    let bare = key.trim_start_matches("0x");
    assert!(!all.contains(bare), "the key was printed: {all}");
}

fn key_file(dir: &std::path::Path, name: &str, key: &str, mode: u32) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("{key}\n")).expect("write key file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path.to_str().expect("utf-8 path").to_string()
}

fn head(url: &str) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let c = sequencer_chain::ChainClient::connect(sequencer_chain::ChainConfig::new(
            url,
            sequencer_chain::Address::ZERO,
        ))
        .await
        .expect("connect");
        c.head().await.expect("head")
    })
}

#[test]
fn deploy_refuses_simulated_slots_on_a_non_local_chain() {
    // A node on 127.0.0.1 that says it is Base (8453): a tunnel to a public node or a fork of
    // one looks exactly like this, so the loopback host is no proof of a local chain.
    let Some((_node, url)) = anvil_with(&["--chain-id", "8453"]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let deploy = |slots: &str, envs: &[(&str, &str)], extra: &[&str]| {
        let mut args = vec![
            "chain",
            "deploy",
            "--rpc-url",
            &url,
            "--slots",
            slots,
            "--json",
        ];
        args.extend_from_slice(extra);
        run(&args, envs)
    };

    // The loophole: slots handed to keys anyone can derive, on a public chain id.
    for slots in ["3", "1"] {
        let o = deploy(slots, &[("SEQCTL_PRIVATE_KEY", KEY1)], &[]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let all = text(&o);
        assert!(
            all.contains("8453") && all.contains("not a local development chain"),
            "{all}"
        );
        assert_key_not_printed(&o, KEY1);
    }
    assert_eq!(head(&url), 0, "nothing was deployed or sent");
    // The default (anvil's publicly known) deployer key is not guessed there either.
    let o = deploy("0", &[], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("not a local chain"), "{}", text(&o));
    assert_eq!(head(&url), 0);

    // Without simulated slots, with a key of its own, the deployment goes through.
    let file = key_file(dir.path(), "owner.key", KEY1, 0o600);
    let o = deploy("0", &[], &["--private-key-file", &file]);
    assert!(o.status.success(), "{}", text(&o));
    let d: serde_json::Value = serde_json::from_slice(&o.stdout).expect("deploy json");
    assert_eq!(d["chain_id"], 8453);
    assert_eq!(d["owner"], ADDR1);
    assert_eq!(d["slots"].as_array().map(Vec::len), Some(0));
    assert_key_not_printed(&o, KEY1);
}

#[test]
fn signing_key_from_env_or_file_never_printed() {
    let Some((_node, url)) = anvil() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let deploy = |envs: &[(&str, &str)], extra: &[&str]| {
        let mut args = vec![
            "chain",
            "deploy",
            "--rpc-url",
            &url,
            "--slots",
            "1",
            "--json",
        ];
        args.extend_from_slice(extra);
        run(&args, envs)
    };
    let owner_of = |o: &std::process::Output| -> String {
        assert!(o.status.success(), "{}", text(o));
        let d: serde_json::Value = serde_json::from_slice(&o.stdout).expect("deploy json");
        d["owner"].as_str().expect("owner").to_string()
    };

    // From the environment.
    let o = deploy(&[("SEQCTL_PRIVATE_KEY", KEY1)], &[]);
    assert_eq!(owner_of(&o), ADDR1);
    assert_key_not_printed(&o, KEY1);
    assert!(!text(&o).contains("warning"), "{}", text(&o));
    let d: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let (ps, market) = (
        d["protocol_state"].as_str().expect("ps").to_string(),
        d["data_market"].as_str().expect("market").to_string(),
    );

    // From a file (owner-only): no warning; it wins over the environment.
    let private = key_file(dir.path(), "k2", KEY2, 0o600);
    let o = deploy(
        &[("SEQCTL_PRIVATE_KEY", KEY1)],
        &["--private-key-file", &private],
    );
    assert_eq!(owner_of(&o), ADDR2);
    assert!(!text(&o).contains("warning"), "{}", text(&o));
    assert_key_not_printed(&o, KEY2);
    // Named by SEQCTL_PRIVATE_KEY_FILE.
    let o = deploy(&[("SEQCTL_PRIVATE_KEY_FILE", &private)], &[]);
    assert_eq!(owner_of(&o), ADDR2);
    // A file others can read still works, with a warning.
    let open = key_file(dir.path(), "k2-open", KEY2, 0o644);
    let o = deploy(&[], &["--private-key-file", &open]);
    assert_eq!(owner_of(&o), ADDR2);
    assert!(text(&o).contains("readable by others"), "{}", text(&o));
    // The flag still works, with a warning about the process list.
    let o = deploy(&[], &["--private-key", KEY1]);
    assert_eq!(owner_of(&o), ADDR1);
    assert!(text(&o).contains("process list"), "{}", text(&o));
    // Old scripts' SIGNER_PRIVATE_KEY is read last.
    let o = deploy(&[("SIGNER_PRIVATE_KEY", KEY2)], &[]);
    assert_eq!(owner_of(&o), ADDR2);

    // Bad keys are refused by their source, never echoed.
    let secret = "0x1234-not-a-key-but-secret-5678";
    let o = deploy(&[("SEQCTL_PRIVATE_KEY", secret)], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("SEQCTL_PRIVATE_KEY does not hold a valid"),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains("not-a-key-but-secret"), "{}", text(&o));
    let bad = key_file(dir.path(), "bad", secret, 0o600);
    let o = deploy(&[], &["--private-key-file", &bad]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(!text(&o).contains("not-a-key-but-secret"), "{}", text(&o));
    let empty = key_file(dir.path(), "empty", "", 0o600);
    let o = deploy(&[], &["--private-key-file", &empty]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("is empty"), "{}", text(&o));
    let o = deploy(
        &[],
        &[
            "--private-key-file",
            &dir.path().join("missing").to_string_lossy(),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    // Flag and file together: which one was meant is unclear, refused.
    let o = deploy(
        &[],
        &["--private-key", KEY1, "--private-key-file", &private],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    // release-epochs signs with the key from a file: account 1 is the epoch manager of the first
    // deployment, anvil's default key is not.
    let k1 = key_file(dir.path(), "k1", KEY1, 0o600);
    let o = run(
        &[
            "chain",
            "release-epochs",
            "--rpc-url",
            &url,
            "--protocol-state",
            &ps,
            "--market",
            &market,
            "--count",
            "1",
            "--mine-idle",
            "--poll-ms",
            "20",
            "--json",
            "--private-key-file",
            &k1,
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_key_not_printed(&o, KEY1);
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).expect("release json");
    assert_eq!(line["epoch_id"], 1);
}
