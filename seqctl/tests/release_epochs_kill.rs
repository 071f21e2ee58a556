//! Fault drill of the epoch manager as operators run it: `seqctl chain release-epochs` is
//! SIGKILLed between sending a release and its receipt (anvil with mining off, so the
//! transaction stays pending), then restarted while blocks are mined again. Each epoch must be
//! released exactly once, contiguous, with exactly one transaction per epoch from the key.
//! Needs ANVIL_BIN: without it the test prints a loud skip line, or fails under
//! `SEQ_REQUIRE_SERVICES=1`.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use serde_json::{json, Value};

/// Anvil's first funded account (the default key of `seqctl chain` on chain 31337).
const KEY0_ADDRESS: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn anvil() -> Option<(Killed, String)> {
    let bin = std::env::var_os("ANVIL_BIN")
        .map(PathBuf::from)
        .filter(|p| p.is_file());
    let Some(bin) = bin else {
        if std::env::var("SEQ_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("ANVIL_BIN is not set or missing and SEQ_REQUIRE_SERVICES=1");
        }
        eprintln!("\n!!!!! SKIPPED seqctl release-epochs kill drill: ANVIL_BIN is not set or missing (scripts/tools.sh anvil; source scripts/env.sh) !!!!!\n");
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
    let node = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "anvil did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((node, format!("127.0.0.1:{port}")))
}

/// One JSON-RPC call over plain HTTP/1.1 (the test needs no client library).
fn rpc(addr: &str, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let mut s = TcpStream::connect(addr).expect("connect anvil");
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let json = &body[body.find('{').unwrap_or(0)..=body.rfind('}').unwrap_or(0)];
    let v: Value = serde_json::from_str(json).expect("json-rpc response");
    assert!(v.get("error").is_none(), "{method}: {v}");
    v["result"].clone()
}

fn nonce(addr: &str, tag: &str) -> u64 {
    let v = rpc(addr, "eth_getTransactionCount", json!([KEY0_ADDRESS, tag]));
    u64::from_str_radix(v.as_str().unwrap_or("0x0").trim_start_matches("0x"), 16).expect("hex")
}

fn seqctl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_seqctl"));
    c.env_remove("SIGNER_PRIVATE_KEY")
        .env_remove("PROTOCOL_STATE_ADDRESS")
        .env_remove("DATA_MARKET_ADDRESS")
        .env_remove("RPC_URL")
        .env_remove("SOURCE_RPC_URL");
    c
}

fn output_of(mut child: Child, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut out = String::new();
            if let Some(mut s) = child.stdout.take() {
                s.read_to_string(&mut out).expect("stdout");
            }
            let mut err = String::new();
            if let Some(mut s) = child.stderr.take() {
                s.read_to_string(&mut err).expect("stderr");
            }
            assert!(status.success(), "seqctl failed: {out}\n{err}");
            return out;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("seqctl did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigkill_between_send_and_receipt_then_restart() {
    let Some((_node, addr)) = anvil() else { return };
    let url = format!("http://{addr}");
    let out = seqctl()
        .args([
            "--json",
            "chain",
            "deploy",
            "--rpc-url",
            &url,
            "--slots",
            "1",
            "--epoch-size",
            "2",
        ])
        .output()
        .expect("deploy");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d: Value = serde_json::from_slice(&out.stdout).expect("deploy json");
    let ps = d["protocol_state"]
        .as_str()
        .expect("protocol_state")
        .to_string();
    let market = d["data_market"].as_str().expect("data_market").to_string();
    let release_args = |extra: &[&str]| {
        let mut v: Vec<String> = [
            "--json",
            "chain",
            "release-epochs",
            "--rpc-url",
            &url,
            "--protocol-state",
            &ps,
            "--market",
            &market,
            "--first-begin",
            "1",
            "--finality-offset",
            "1",
            "--poll-ms",
            "20",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        v.extend(extra.iter().map(ToString::to_string));
        v
    };

    // Mining off: the first release stays pending. Kill -9 as soon as it is in the pool.
    rpc(&addr, "evm_setAutomine", json!([false]));
    let before = nonce(&addr, "latest");
    let mut first = Killed(
        seqctl()
            .args(release_args(&[]))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn release-epochs"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while nonce(&addr, "pending") == before {
        assert!(Instant::now() < deadline, "release-epochs never sent");
        std::thread::sleep(Duration::from_millis(10));
    }
    first.0.kill().expect("SIGKILL");
    first.0.wait().expect("reap");
    let mut printed = String::new();
    if let Some(mut s) = first.0.stdout.take() {
        let _ = s.read_to_string(&mut printed);
    }
    assert!(
        printed.is_empty(),
        "killed before any receipt, yet printed {printed}"
    );
    assert_eq!(nonce(&addr, "latest"), before, "nothing mined yet");

    // Restart with the transaction still pending; blocks start again half a second later.
    let second = seqctl()
        .args(release_args(&["--count", "3"]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn release-epochs");
    let mining = Arc::new(AtomicBool::new(true));
    let miner = {
        let (addr, mining) = (addr.clone(), mining.clone());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            while mining.load(Ordering::SeqCst) {
                rpc(&addr, "evm_mine", json!([]));
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let out = output_of(second, Duration::from_secs(60));
    mining.store(false, Ordering::SeqCst);
    miner.join().expect("miner");

    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("release json"))
        .collect();
    let ids: Vec<u64> = lines
        .iter()
        .filter_map(|l| l["epoch_id"].as_u64())
        .collect();
    // The killed process's transaction released epoch 1; the restart waited for it, found it on
    // chain from our key and reports it as settled, then released 2 and 3.
    assert_eq!(ids, [1, 2, 3], "{out}");
    // Exactly one transaction per epoch from the key: the killed one and two.
    assert_eq!(nonce(&addr, "latest"), before + 3);
    for (id, begin) in [(1u64, 1u64), (2, 3), (3, 5)] {
        let e = seqctl()
            .args([
                "--json",
                "chain",
                "epoch",
                &market,
                &id.to_string(),
                "--rpc-url",
                &url,
                "--protocol-state",
                &ps,
            ])
            .output()
            .expect("epoch");
        let e: Value = serde_json::from_slice(&e.stdout).expect("epoch json");
        assert!(
            e["release_block"].as_u64().is_some(),
            "epoch {id} released: {e}"
        );
        assert_eq!(
            (e["begin"].as_u64(), e["end"].as_u64()),
            (Some(begin), Some(begin + 1)),
            "epoch {id}"
        );
    }
    let e = seqctl()
        .args([
            "--json",
            "chain",
            "epoch",
            &market,
            "4",
            "--rpc-url",
            &url,
            "--protocol-state",
            &ps,
        ])
        .output()
        .expect("epoch");
    let e: Value = serde_json::from_slice(&e.stdout).expect("epoch json");
    assert!(e["release_block"].is_null(), "no fourth epoch: {e}");
}
