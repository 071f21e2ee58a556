//! Serving a router on a TCP listener with hyper, where a process of ours (the local runner)
//! faces clients itself: a header-read timeout (a client that opens a connection and sends its
//! headers slowly, or not at all, is dropped) and a limit on open connections (beyond it, new
//! connections wait in the listener's backlog until one closes). `axum::serve` offers neither;
//! hyper's HTTP/1 connection builder and a semaphore do. Behind a function URL, Lambda does both.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connection limits of [`serve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Open connections at most; the next waits until one closes.
    pub max_connections: usize,
    /// A connection whose request headers are not complete within this is closed (applies to
    /// every request of a keep-alive connection).
    pub header_read_timeout: Duration,
    /// How long in-flight requests may finish after the shutdown signal.
    pub shutdown_grace: Duration,
}

impl Default for ServeLimits {
    /// 256 connections, 5 s to send the headers, 5 s to finish at shutdown.
    fn default() -> Self {
        Self {
            max_connections: 256,
            header_read_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets in-flight requests finish
/// (within `shutdown_grace`). Accept errors (a full file table, say) are logged and retried after
/// a short pause, never fatal.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let conn = http.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace; dropping them");
    }
}
