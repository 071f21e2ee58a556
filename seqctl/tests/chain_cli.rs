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

fn seqctl(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_seqctl"))
        .args(args)
        .env_remove("SIGNER_PRIVATE_KEY")
        .env_remove("PROTOCOL_STATE_ADDRESS")
        .env_remove("DATA_MARKET_ADDRESS")
        .env_remove("RPC_URL")
        .output()
        .expect("run seqctl");
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
