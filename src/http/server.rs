//! The HTTP listener: our own accept loop around hyper, because `axum::serve` cannot be
//! configured. Every connection is a file descriptor, and SMTP shares the process's
//! descriptors: so HTTP connections are capped (in total, from a figure `app` derives from
//! the open-file limit, and per client network), a request head must arrive whole within
//! `http.header_timeout` (which also closes idle keep-alive connections), and request
//! bodies have a pace (`body_pace`). A connection over a cap gets a 503 if it can be
//! written at once, and is closed.

use super::body_pace::PacedBody;
use crate::net::{
    AcceptBackoff, ConnectionLimits, ConnectionSlot, LimitHit, PaceLimits, RefusalLog,
};
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// How the HTTP listener protects itself (from `[http]` and the open-file plan).
#[derive(Clone)]
pub struct HttpLimits {
    pub connections: ConnectionLimits,
    pub header_timeout: Duration,
    pub body: PaceLimits,
}

/// Serves `router` until `shutdown` fires; then stops accepting, lets requests in flight
/// finish and closes idle connections. Returns once every connection is closed (the caller
/// bounds that wait).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) {
    let connections = TaskTracker::new();
    let mut backoff = AcceptBackoff::new("http");
    let mut refusals = RefusalLog::new("http");
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(x) => {
                backoff.accepted();
                x
            }
            Err(e) => {
                let pause = backoff.failed(&e);
                if !pause.is_zero() {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
                continue;
            }
        };
        match limits.connections.try_acquire(peer.ip()) {
            Ok(slot) => {
                connections.spawn(serve_connection(
                    stream,
                    peer,
                    slot,
                    router.clone(),
                    limits.clone(),
                    shutdown.clone(),
                ));
            }
            Err(hit) => {
                refusals.note(peer, hit);
                refuse(stream, hit);
            }
        }
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    slot: ConnectionSlot,
    router: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) {
    let _slot = slot;
    let _ = stream.set_nodelay(true);
    let body = limits.body;
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        // Handlers that need the client's address take `ConnectInfo<SocketAddr>`.
        request.extensions_mut().insert(ConnectInfo(peer));
        let request = request.map(|b| axum::body::Body::new(PacedBody::new(b, body)));
        router.clone().oneshot(request)
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let mut conn = pin!(builder.serve_connection(TokioIo::new(stream), service));
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = shutdown.cancelled() => {
            // A request in flight finishes; an idle connection closes now.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "HTTP connection ended");
    }
}

/// A 503 written only if the socket takes it at once (no task, no wait), then closed.
fn refuse(stream: TcpStream, hit: LimitHit) {
    let text = match hit {
        LimitHit::Total => "Too many connections to this server; try again in a moment.\n",
        LimitHit::PerClient(_) => {
            "Too many connections from your network; close some and try again.\n"
        }
    };
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nRetry-After: 5\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.try_write(response.as_bytes());
}
