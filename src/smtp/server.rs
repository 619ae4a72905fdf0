//! The SMTP listener: connection limits, STARTTLS hand-over, graceful shutdown.

use super::delivery::Delivery;
use super::reply::Reply;
use super::session::{Session, SessionConfig, SessionEnd};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Caps on simultaneous connections, overall and per client IP.
#[derive(Clone)]
pub struct ConnectionLimits {
    total: Arc<Semaphore>,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max_per_ip: usize,
}

/// Held for the life of a connection; frees its slots when dropped.
pub struct ConnectionSlot {
    _permit: OwnedSemaphorePermit,
    ip: IpAddr,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Ok(mut map) = self.per_ip.lock() {
            if let Some(n) = map.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&self.ip);
                }
            }
        }
    }
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        Self {
            total: Arc::new(Semaphore::new(max_total)),
            per_ip: Arc::new(Mutex::new(HashMap::new())),
            max_per_ip,
        }
    }

    pub fn try_acquire(&self, ip: IpAddr) -> Option<ConnectionSlot> {
        let permit = self.total.clone().try_acquire_owned().ok()?;
        let mut map = self.per_ip.lock().ok()?;
        let n = map.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return None;
        }
        *n += 1;
        Some(ConnectionSlot {
            _permit: permit,
            ip,
            per_ip: self.per_ip.clone(),
        })
    }
}

pub struct SmtpServer<D> {
    listener: TcpListener,
    config: Arc<SessionConfig>,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    delivery: Arc<D>,
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
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            // EMFILE and friends: back off instead of spinning.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    if deadline.is_some() {
                        tokio::spawn(refuse(stream, Reply::new(421, "4.3.2",
                            format!("{} Service shutting down, try again later", self.config.hostname))));
                        continue;
                    }
                    let Some(slot) = self.limits.try_acquire(peer.ip()) else {
                        tracing::warn!(%peer, "connection limit reached");
                        tokio::spawn(refuse(stream, Reply::new(421, "4.7.0",
                            format!("{} Too many connections, try again later", self.config.hostname))));
                        continue;
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
                    sessions.spawn(async move {
                        let _slot = slot;
                        let _counted = counted;
                        conn.serve(stream).await;
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
    async fn serve(self, stream: TcpStream) {
        tracing::debug!("connection opened");
        let _ = stream.set_nodelay(true);
        let session = Session::new(
            stream,
            self.delivery.clone(),
            self.config.clone(),
            self.id.clone(),
            self.peer,
            false,
            self.tls.is_some(),
            self.shutdown.clone(),
        );
        let stream = match session.run(true).await {
            Ok(SessionEnd::StartTls(stream)) => stream,
            Ok(SessionEnd::Closed) => return,
            Err(e) => {
                tracing::debug!(error = %e, "session ended with an I/O error");
                return;
            }
        };
        let Some(acceptor) = self.tls else { return };
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
        let session = Session::new(
            tls_stream,
            self.delivery.clone(),
            self.config.clone(),
            self.id.clone(),
            self.peer,
            true,
            false,
            self.shutdown.clone(),
        );
        if let Err(e) = session.run(false).await {
            tracing::debug!(error = %e, "TLS session ended with an I/O error");
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
