//! The real `sequencer-ingress` binary as a child process, for the benchmarks that measure its
//! resident memory and CPU apart from the load generator's own (`runner/examples/`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use libp2p::{Multiaddr, PeerId};
use tokio::io::AsyncBufReadExt;

use crate::Client;

/// A running ingress child (killed on drop).
pub struct IngressProcess {
    /// Its process id.
    pub pid: u32,
    /// Its peer id.
    pub peer: PeerId,
    /// Its TCP `/collect` and gossipsub address.
    pub addr: Multiaddr,
    /// `host:port` of its operations HTTP listener.
    pub http: String,
    child: tokio::process::Child,
    files: Vec<PathBuf>,
}

impl IngressProcess {
    /// Starts `bin --sink memory --listen <listen> --http-listen 127.0.0.1:<port+1> <args>` with a
    /// fresh key, echoes its stderr, and waits until a client can connect.
    pub async fn start(bin: &str, port: u16, quic: bool, args: &[String]) -> anyhow::Result<Self> {
        let tag = format!("{}-{port}", std::process::id());
        let key_file = std::env::temp_dir().join(format!("bench-ingress-{tag}.key"));
        let spill = std::env::temp_dir().join(format!("bench-ingress-{tag}.jsonl"));
        let listen = if quic {
            format!("/ip4/127.0.0.1/udp/{port}/quic-v1")
        } else {
            format!("/ip4/127.0.0.1/tcp/{port}")
        };
        let out = std::process::Command::new(bin)
            .args(["--print-peer-id", "--generate-key", "--key-file"])
            .arg(&key_file)
            .output()
            .with_context(|| format!("running {bin}"))?;
        let peer: PeerId = String::from_utf8(out.stdout)?.trim().parse()?;
        let http = format!("127.0.0.1:{}", port + 1);
        let mut child = tokio::process::Command::new(bin)
            .args([
                "--sink",
                "memory",
                "--listen",
                &listen,
                "--http-listen",
                &http,
            ])
            .arg("--key-file")
            .arg(&key_file)
            .arg("--spill-path")
            .arg(&spill)
            .args(args)
            .args(["--log", "warn"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting the ingress")?;
        let pid = child.id().context("child pid")?;
        if let Some(err) = child.stderr.take() {
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(err).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    eprintln!("ingress: {l}");
                }
            });
        }
        let addr: Multiaddr = listen.parse()?;
        let mut up = false;
        for _ in 0..100 {
            if let Ok(c) = Client::connect(&addr, peer).await {
                c.close().await;
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !up {
            bail!("ingress did not come up on {listen}");
        }
        Ok(Self {
            pid,
            peer,
            addr,
            http,
            child,
            files: vec![key_file, spill],
        })
    }

    /// One unlabelled sample of its `/metrics` (0 if absent).
    pub async fn metric(&self, name: &str) -> f64 {
        self.series(name)
            .await
            .into_iter()
            .find(|(labels, _)| labels.is_empty())
            .map(|(_, v)| v)
            .unwrap_or(0.0)
    }

    /// Every series of `name` in its `/metrics`: (labels as rendered, value).
    pub async fn series(&self, name: &str) -> Vec<(String, f64)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut s) = tokio::net::TcpStream::connect(&self.http).await else {
            return Vec::new();
        };
        let req = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        if s.write_all(req.as_bytes()).await.is_err() {
            return Vec::new();
        }
        let mut body = String::new();
        let _ = s.read_to_string(&mut body).await;
        body.lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(name)?;
                let (labels, value) = rest.rsplit_once(' ')?;
                if !(labels.is_empty() || labels.starts_with('{')) {
                    return None;
                }
                Some((labels.to_owned(), value.parse().ok()?))
            })
            .collect()
    }

    /// Stops it and removes its files.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// CPU time (user + system) process `pid` has used so far (Linux `/proc/<pid>/stat`).
pub fn cpu_seconds_of(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Median (upper) of the samples.
pub fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// KiB as MiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
