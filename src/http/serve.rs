//! The accept loop: HTTP/1.1 connections with a cap, a header-read timeout, and a
//! shutdown that ends within its grace whatever the clients do.
//!
//! Each guarantee and what provides it:
//!
//! - *A slow or silent client cannot hold a connection*: hyper's header-read timeout
//!   (`server.header_read_timeout`) runs from the moment a connection is accepted, and
//!   again whenever a kept-alive connection waits for its next request, so a client
//!   that sends no headers, or sends them a byte at a time, is disconnected when it
//!   runs out. The body and the handler are bounded by the request timeout
//!   ([`super::request_timeout`]).
//! - *At most `server.max_connections` connections are served at once*: a connection
//!   is accepted only holding a permit of a semaphore, and gives it back when it
//!   closes. At the cap the loop stops accepting, so further connections wait in the
//!   kernel's listen backlog (and are served as places free up) rather than being
//!   accepted and dropped: a client sees a slow connect, never a reset it might take for
//!   a failed send, and an overloaded instance spends nothing on connections it cannot
//!   serve. The header-read and request timeouts make places free up at a bounded rate.
//! - *Shutdown ends within `server.shutdown_grace`*: on `stop` the listener is closed
//!   and every connection is told to finish (idle ones close at once, one with a
//!   request under way closes after answering it). Connections still open when the
//!   grace runs out are dropped, which closes their sockets. Dropping a connection
//!   never cuts a send: each send runs in a task of its own and finishes without it.
//!
//! HTTP/1.1 only, as `axum::serve` was built here: the clients are application
//! back ends, and TLS with HTTP/2 is the business of a proxy in front.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::EdgeLimits;

/// Serves `app` on `listener` until `stop` completes, then shuts down as described in
/// the module's documentation. Returns the instant the shutdown grace ends, by which
/// the caller's own shutdown work (sends under way) should be done too.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: EdgeLimits,
    shutdown_grace: Duration,
    stop: impl Future<Output = ()>,
) -> Instant {
    let places = Arc::new(Semaphore::new(limits.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    tokio::pin!(stop);

    loop {
        let place = tokio::select! {
            place = places.clone().acquire_owned() => place.expect("the semaphore is never closed"),
            () = &mut stop => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(err) => {
                    if !is_connection_error(&err) {
                        // Out of file descriptors, most likely: wait for some to close
                        // rather than spin.
                        tracing::error!(error = %err, "cannot accept connections");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            () = &mut stop => break,
                        }
                    }
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "a connection ended with an error");
            }
            drop(place);
        });
        // Collect the connections that ended, so the set holds only open ones.
        while connections.try_join_next().is_some() {}
    }

    drop(listener);
    let deadline = Instant::now() + shutdown_grace;
    if tokio::time::timeout_at(deadline, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = connections.len(),
            "shutdown grace ran out; closing the connections still open"
        );
    }
    connections.shutdown().await;
    deadline
}

/// Errors of one connection that the loop just skips (as `axum::serve` does).
fn is_connection_error(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
