//! The SMTP listener: connection limits, STARTTLS hand-over, graceful shutdown.

use super::delivery::Delivery;
use super::reply::Reply;
use super::session::{Session, SessionConfig, SessionEnd};
use crate::net::fds::SMTP_REFUSALS;
use crate::net::{AcceptBackoff, ConnectionLimits, LimitHit, RefusalLog};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub struct SmtpServer<D> {
    listener: TcpListener,
    config: Arc<SessionConfig>,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    delivery: Arc<D>,
    /// 421 replies being written to connections that are not served; bounded, so that a
    /// flood of connections over the cap cannot hold descriptors (see `net::fds`).
    refusals: Arc<Semaphore>,
}

impl<D: Delivery> SmtpServer<D> {
    pub fn new(
        listener: TcpListener,
        config: SessionConfig,
        limits: ConnectionLimits,
        tls: Option<TlsAcceptor>,
        delivery: Arc<D>,
    ) -> Self {
        Self {
            listener,
            config: Arc::new(config),
            limits,
            tls,
            delivery,
            refusals: Arc::new(Semaphore::new(SMTP_REFUSALS)),
        }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` fires; then answers 421 to new connections while the
    /// sessions in flight finish, for at most `grace`.
    pub async fn run(self, shutdown: CancellationToken, grace: Duration) {
        let sessions = TaskTracker::new();
        // Sessions watch this token: it fires with `shutdown`, and idle sessions leave at once.
        let session_stop = shutdown.child_token();
        // Fires when the grace period is over: sessions still running are closed.
        let cut_off = CancellationToken::new();
        let mut deadline: Option<tokio::time::Instant> = None;
        let mut backoff = AcceptBackoff::new("smtp");
        let mut refusals = RefusalLog::new("smtp");
        // After a failed accept (out of descriptors), no accept until this instant.
        let mut paused_until: Option<tokio::time::Instant> = None;
        loop {
            let pause = paused_until.unwrap_or_else(tokio::time::Instant::now);
            tokio::select! {
                _ = tokio::time::sleep_until(pause), if paused_until.is_some() => {
                    paused_until = None;
                }
                accepted = self.listener.accept(), if paused_until.is_none() => {
                    let (stream, peer) = match accepted {
                        Ok(x) => {
                            backoff.accepted();
                            x
                        }
                        Err(e) => {
                            let wait = backoff.failed(&e);
                            if !wait.is_zero() {
                                paused_until = Some(tokio::time::Instant::now() + wait);
                            }
                            continue;
                        }
                    };
                    if deadline.is_some() {
                        self.refuse(stream, Reply::new(421, "4.3.2",
                            format!("{} Service shutting down, try again later", self.config.hostname)));
                        continue;
                    }
                    let slot = match self.limits.try_acquire(peer.ip()) {
                        Ok(slot) => slot,
                        Err(hit) => {
                            let text = match hit {
                                LimitHit::Total => format!(
                                    "{} Too many connections, try again later", self.config.hostname),
                                LimitHit::PerClient(group) => format!(
                                    "{} Too many connections from your network ({group}), try again later",
                                    self.config.hostname),
                            };
                            refusals.note(peer, hit);
                            self.refuse(stream, Reply::new(421, "4.7.0", text));
                            continue;
                        }
                    };
                    let id = new_session_id();
                    let span = tracing::info_span!("smtp", session = %id, %peer);
                    let conn = Connection {
                        config: self.config.clone(),
                        delivery: self.delivery.clone(),
                        tls: self.tls.clone(),
                        shutdown: session_stop.clone(),
                        id,
                        peer,
                    };
                    let counted = crate::metrics::smtp_session_opened();
                    let cut = cut_off.clone();
                    sessions.spawn(async move {
                        let _slot = slot;
                        let _counted = counted;
                        // Past the shutdown grace the session is dropped, which closes it.
                        tokio::select! {
                            _ = conn.serve(stream) => {}
                            _ = cut.cancelled() => {}
                        }
                    }.instrument(span));
                }
                _ = shutdown.cancelled(), if deadline.is_none() => {
                    tracing::info!(in_flight = sessions.len(), "SMTP shutting down");
                    deadline = Some(tokio::time::Instant::now() + grace);
                    sessions.close();
                }
                _ = sessions.wait(), if deadline.is_some() => break,
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {
                    tracing::warn!(left = sessions.len(), "grace period over, closing remaining sessions");
                    cut_off.cancel();
                    // They stop at their next await; give them a moment to let go.
                    let _ = tokio::time::timeout(Duration::from_secs(1), sessions.wait()).await;
                    break;
                }
            }
        }
    }
}

struct Connection<D> {
    config: Arc<SessionConfig>,
    delivery: Arc<D>,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
    id: String,
    peer: SocketAddr,
}

impl<D: Delivery> Connection<D> {
    /// A session on `stream`: the plain connection, offering STARTTLS when there is a
    /// certificate, or the same connection once TLS is on.
    fn session<S>(&self, stream: S, tls_active: bool) -> Session<S, D>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        Session::new(
            stream,
            self.delivery.clone(),
            self.config.clone(),
            self.id.clone(),
            self.peer,
            tls_active,
            !tls_active && self.tls.is_some(),
            self.shutdown.clone(),
        )
    }

    async fn serve(mut self, stream: TcpStream) {
        tracing::debug!("connection opened");
        let _ = stream.set_nodelay(true);
        let session = self.session(stream, false);
        let stream = match session.run(true).await {
            Ok(SessionEnd::StartTls(stream)) => stream,
            Ok(SessionEnd::Closed) => return,
            Err(e) => {
                tracing::debug!(error = %e, "session ended with an I/O error");
                return;
            }
        };
        let Some(acceptor) = self.tls.take() else {
            return;
        };
        let handshake = tokio::time::timeout(self.config.command_timeout, acceptor.accept(stream));
        let tls_stream = match handshake.await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::info!(error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::info!("TLS handshake timed out");
                return;
            }
        };
        let session = self.session(tls_stream, true);
        if let Err(e) = session.run(false).await {
            tracing::debug!(error = %e, "TLS session ended with an I/O error");
        }
    }
}

impl<D> SmtpServer<D> {
    /// Answers `reply` and closes; with too many refusals in flight, just closes.
    fn refuse(&self, stream: TcpStream, reply: Reply) {
        match self.refusals.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(async move {
                    refuse(stream, reply).await;
                    drop(permit);
                });
            }
            Err(_) => drop(stream),
        }
    }
}

async fn refuse(mut stream: TcpStream, reply: Reply) {
    let mut out = Vec::new();
    reply.write_to(&mut out);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = stream.write_all(&out).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

fn new_session_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}
