//! Wiring: the store, the group-commit writer, the SMTP server and the HTTP server in one
//! process, with a shared shutdown.

use crate::admin_socket::{AdminSocket, AdminThread};
use crate::auth::{AuthPolicy, Authenticator};
use crate::config::Settings;
use crate::import::runner::{ImportRunner, RunnerSettings};
use crate::ingest::{MailIntake, ThreadingConfig};
use crate::net::PaceLimits;
use crate::outbound::OutboundQueue;
use crate::rules::{QueueReplySender, RulesConfig, RulesEngine, SystemClock};
use crate::smtp::{self, ConnectionLimits, SessionConfig, SmtpServer};
use crate::store::{CommitWriter, Store, StoreError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    #[error("TLS set-up: {0}")]
    Tls(#[from] smtp::tls::TlsError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "cannot create the data folder {path}: {source}; check data_dir and that its parent \
         is writable by the user running postern"
    )]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    OpenFiles(#[from] crate::net::fds::FilePlanError),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    ServeLock(#[from] crate::store::ServeLockError),
    #[error(transparent)]
    AdminSocket(#[from] crate::admin_socket::AdminSocketError),
}

/// How the store of `settings` opens (the `[store]` section); `observer` is told of every
/// group commit.
pub fn store_options(
    settings: &Settings,
    observer: Option<crate::store::CommitObserver>,
) -> crate::store::StoreOptions {
    crate::store::StoreOptions {
        read_connections: settings.store.read_connections,
        max_size: settings.store.max_size,
        wal_append_buffer: settings.store.wal_append_buffer,
        batch_max: settings.store.batch_max,
        commit_observer: observer,
    }
}

/// What threading needs, from the settings and the store's reply-token secret.
pub async fn threading_config(
    store: &Store,
    settings: &Settings,
) -> Result<ThreadingConfig, StoreError> {
    Ok(ThreadingConfig {
        secret: store.reply_token_secret(&settings.threading.secret).await?,
        inbound_domain: settings.inbound.domain.to_ascii_lowercase(),
        subject_window_ms: settings.threading.subject_window.as_millis() as i64,
    })
}

pub struct Application {
    settings: Settings,
    store: Store,
    smtp: SmtpServer<MailIntake>,
    http: TcpListener,
    http_limits: crate::http::server::HttpLimits,
    outbound: Arc<OutboundQueue>,
    /// The rules engine and the wake-up intake gives it after each commit.
    rules: Option<(Arc<RulesEngine>, Arc<tokio::sync::Notify>)>,
    /// Import jobs of the API, committing through the same writer as intake.
    imports: Arc<ImportRunner>,
    /// Command-line commands against this server's database run here (admin_socket), from
    /// the end of `build` until the end of `run`: on a thread of their own.
    admin: AdminThread,
    /// This server is the one writer of its database while it runs (store/serve_lock.rs).
    _serve_lock: crate::store::ServeLock,
}

/// The outbound queue of the configuration: what `postern serve` runs, and what the CLI
/// uses to add domains and queue replies.
pub async fn outbound_queue(
    settings: &Settings,
    store: &Store,
) -> Result<Arc<OutboundQueue>, AppError> {
    let resolver = crate::auth::dns_resolver(
        &settings.dns.nameservers,
        settings.dns.timeout,
        settings.dns.cache_size,
    )?;
    Ok(Arc::new(OutboundQueue::new(
        store.clone(),
        settings.outbound.clone(),
        &settings.smtp.hostname,
        store.reply_token_secret(&settings.threading.secret).await?,
        &settings.inbound.domain,
        Arc::new(resolver),
    )))
}

/// The rules engine of the configuration, on the system clock: its automated replies go
/// through `outbound` (what `postern serve` runs, and `postern rules tick`).
pub fn rules_engine(
    settings: &Settings,
    store: &Store,
    outbound: Arc<OutboundQueue>,
) -> RulesEngine {
    RulesEngine::new(
        store.clone(),
        Arc::new(QueueReplySender {
            store: store.clone(),
            queue: outbound,
        }),
        RulesConfig {
            reply_window_ms: settings.rules.reply_window.as_millis() as i64,
            max_depth: settings.rules.max_depth,
            scheduler_batch: settings.rules.scheduler_batch,
        },
        Arc::new(SystemClock),
    )
}

fn smtp_prefixes(settings: &Settings) -> Result<crate::net::PrefixLengths, AppError> {
    settings
        .smtp_prefixes()
        .map_err(|e| AppError::Config(e.to_string()))
}

/// Raises the open-file limit and shares it out between SMTP and HTTP connections
/// (`net::fds`), so that HTTP can never take the descriptors SMTP needs.
fn open_file_plan(settings: &Settings) -> Result<crate::net::fds::FilePlan, AppError> {
    let limit = match crate::net::fds::raise_open_file_limit() {
        Ok(limit) => {
            tracing::info!(
                soft = limit.now,
                was = limit.before,
                hard = limit.hard,
                "open-file limit"
            );
            limit.now
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit; the configured connection caps stand");
            u64::MAX
        }
    };
    let (smtp, http) = (&settings.smtp, &settings.http);
    let plan = crate::net::fds::FilePlan::new(
        limit,
        smtp.max_connections,
        http.reserved_descriptors,
        http.max_connections,
    )?;
    if plan.smtp_connections < smtp.max_connections {
        tracing::warn!(
            open_file_limit = limit,
            smtp_connections = plan.smtp_connections,
            configured = smtp.max_connections,
            "smtp.max_connections lowered to fit the open-file limit; raise the hard limit (ulimit -Hn, systemd LimitNOFILE=)"
        );
    }
    if plan.http_connections < http.max_connections {
        tracing::warn!(
            open_file_limit = limit,
            smtp_descriptors = plan.smtp_descriptors,
            reserved = plan.reserved,
            http_connections = plan.http_connections,
            configured = http.max_connections,
            "http.max_connections lowered to fit the open-file limit beside SMTP; raise the hard limit (ulimit -Hn, systemd LimitNOFILE=) to serve more"
        );
    }
    Ok(plan)
}

fn http_limits(
    settings: &Settings,
    plan: &crate::net::fds::FilePlan,
) -> Result<crate::http::server::HttpLimits, AppError> {
    let h = &settings.http;
    Ok(crate::http::server::HttpLimits {
        connections: ConnectionLimits::new(
            plan.http_connections,
            h.max_connections_per_ip,
            settings
                .http_prefixes()
                .map_err(|e| AppError::Config(e.to_string()))?,
        ),
        header_timeout: h.header_timeout,
        body: PaceLimits {
            idle: h.body_timeout,
            total: None,
            min_rate: h.body_min_rate,
            grace: h.body_rate_grace,
        },
    })
}

impl Application {
    /// Opens the store, binds both listeners; nothing is served until [`Application::run`].
    pub async fn build(settings: Settings) -> Result<Self, AppError> {
        // Before the store opens: its files must not stay readable by other local users.
        crate::private_files::secure_data_dir(&settings.data_dir, &settings.database_path())
            .map_err(|source| AppError::DataDir {
                path: settings.data_dir.display().to_string(),
                source,
            })?
            .log();
        let serve_lock = crate::store::ServeLock::serve(&settings.database_path())?;
        // Holding the serve lock: a socket found there is a stopped server's.
        let admin =
            AdminSocket::bind(&crate::admin_socket::socket_path(&settings.database_path()))?;
        let store = Store::open_with(
            &settings.database_path(),
            store_options(&settings, Some(Box::new(crate::metrics::observe_commit))),
        )
        .await?;
        let outbound = outbound_queue(&settings, &store).await?;
        let threading = threading_config(&store, &settings).await?;
        let rules = settings.rules.enabled.then(|| {
            let engine = Arc::new(rules_engine(&settings, &store, outbound.clone()));
            (engine, Arc::new(tokio::sync::Notify::new()))
        });
        let writer = CommitWriter::new(&store, threading);
        let imports = Arc::new(ImportRunner::new(
            store.clone(),
            writer.clone(),
            &settings.inbound.domain,
            settings.data_dir.join("imports"),
            RunnerSettings {
                max_concurrent: settings.imports.max_concurrent,
                batch_size: settings.imports.batch_size,
                max_rate: settings.imports.max_rate,
                max_message_size: settings.imports.max_message_size,
                allow_private_imap: settings.imports.allow_private_imap,
                decompress: crate::import::DecompressLimits {
                    max_size: settings.imports.max_decompressed_size,
                    max_ratio: settings.imports.max_compression_ratio,
                },
                max_staged_size: settings.imports.max_staged_size,
                max_participants: settings.threading.max_participants_per_message,
            },
        ));
        // Before anything runs: jobs a stopped server left running are interrupted.
        imports.recover().await?;
        let auth = if settings.auth.enabled {
            Some(Arc::new(Authenticator::new(
                &settings.dns.nameservers,
                settings.dns.timeout,
                settings.dns.cache_size,
                &settings.smtp.hostname,
            )?))
        } else {
            None
        };
        let mut intake = MailIntake::new(
            store.clone(),
            writer,
            &settings.inbound.domain,
            auth,
            AuthPolicy::from_config(&settings.auth),
            settings.inbound.lookup_cache,
        )
        .with_max_participants(settings.threading.max_participants_per_message);
        if let Some((_, wake)) = &rules {
            intake = intake.with_after_commit(wake.clone());
        }
        let intake = Arc::new(intake);
        let s = &settings.smtp;
        let tls = if s.tls.enabled {
            Some(smtp::tls::acceptor(&s.tls.cert, &s.tls.key, &s.hostname)?)
        } else {
            None
        };
        let files = open_file_plan(&settings)?;
        let http_limits = http_limits(&settings, &files)?;
        let smtp_listener = TcpListener::bind(s.listen)
            .await
            .map_err(|source| AppError::Bind {
                what: "smtp.listen",
                addr: s.listen,
                source,
            })?;
        let smtp_limits = ConnectionLimits::new(
            files.smtp_connections,
            s.max_connections_per_ip,
            smtp_prefixes(&settings)?,
        );
        let session = SessionConfig {
            busy: (s.busy_percent > 0).then(|| smtp::BusyMode {
                connections: smtp_limits.clone(),
                percent: s.busy_percent,
                command_timeout: s.busy_command_timeout,
            }),
            hostname: s.hostname.clone(),
            max_message_size: s.max_message_size,
            max_recipients: s.max_recipients,
            max_line_length: s.max_line_length,
            max_received_headers: s.max_received_headers,
            max_errors: s.max_errors,
            command_timeout: s.command_timeout,
            data_pace: PaceLimits {
                idle: s.data_timeout,
                total: Some(s.data_total_timeout),
                min_rate: s.data_min_rate,
                grace: s.data_rate_grace,
            },
            data_budget: smtp::DataBudget::new(
                s.max_inflight_data,
                s.max_inflight_data_per_ip,
                smtp_prefixes(&settings)?,
            ),
        };
        let smtp = SmtpServer::new(smtp_listener, session, smtp_limits, tls, intake);
        let http = TcpListener::bind(settings.http.listen)
            .await
            .map_err(|source| AppError::Bind {
                what: "http.listen",
                addr: settings.http.listen,
                source,
            })?;
        let admin = admin.spawn_thread(
            Arc::new(crate::cli::ServerCommands::new(
                settings.clone(),
                store.clone(),
            )),
            crate::admin_socket::Limits::default(),
            Duration::from_secs(10),
            crate::ingest::PARSE_THREAD_STACK,
        )?;
        Ok(Self {
            settings,
            store,
            smtp,
            http,
            http_limits,
            outbound,
            rules,
            imports,
            admin,
            _serve_lock: serve_lock,
        })
    }

    pub fn smtp_addr(&self) -> Result<SocketAddr, AppError> {
        Ok(self.smtp.local_addr()?)
    }

    pub fn http_addr(&self) -> Result<SocketAddr, AppError> {
        Ok(self.http.local_addr()?)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn outbound(&self) -> &Arc<OutboundQueue> {
        &self.outbound
    }

    /// The SAML settings, with the public URL derived from the bound address if unset, and
    /// the key that seals sign-in requests (made on first start, kept in the database).
    pub async fn saml_config(&self) -> Result<crate::http::saml::SamlConfig, AppError> {
        let sso = &self.settings.sso;
        Ok(crate::http::saml::SamlConfig {
            public_base_url: self.settings.public_base_url(self.http_addr()?),
            login_timeout: sso.login_timeout,
            clock_skew: sso.clock_skew,
            session_ttl: sso.session_ttl,
            request_key: crate::http::server_key::ServerKey::new(
                self.store
                    .generated_secret(crate::store::SSO_REQUEST_KEY)
                    .await?,
            ),
            login_rate_limit: sso.login_rate_limit,
            login_rate_window: sso.login_rate_window,
        })
    }

    /// The CSRF key and the trusted proxies.
    pub async fn browser_security(&self) -> Result<crate::http::BrowserSecurity, AppError> {
        Ok(crate::http::BrowserSecurity {
            csrf_key: crate::http::server_key::ServerKey::new(
                self.store.generated_secret(crate::store::CSRF_KEY).await?,
            ),
            trusted_proxies: self.settings.http.trusted_proxy_networks(),
            client_prefixes: self
                .settings
                .http_prefixes()
                .map_err(|e| AppError::Config(e.to_string()))?,
        })
    }

    /// Serves until `shutdown` fires, then drains: sessions in flight finish (within
    /// `smtp.shutdown_grace`), new connections get 421, and the writer commits what it holds.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AppError> {
        let smtp_addr = self.smtp_addr()?;
        let http_addr = self.http_addr()?;
        let admin_path = self.admin.path().display().to_string();
        tracing::info!(smtp = %smtp_addr, http = %http_addr, admin = %admin_path, "postern listening");
        crate::metrics::set_queue_depth(self.store.queue_depth().await.unwrap_or(0));
        let router = crate::http::router(
            self.store.clone(),
            self.saml_config().await?,
            self.browser_security().await?,
            &self.settings.inbound.domain,
            self.outbound.clone(),
            self.settings.api,
            crate::http::ImportsConfig {
                runner: self.imports.clone(),
                max_upload_size: self.settings.imports.max_upload_size,
                allow_plain_imap: self.settings.imports.allow_plain_imap,
                max_message_size: self.settings.imports.max_message_size,
                decompress: crate::import::DecompressLimits {
                    max_size: self.settings.imports.max_decompressed_size,
                    max_ratio: self.settings.imports.max_compression_ratio,
                },
            },
        );
        let outbound = if self.settings.outbound.enabled {
            let stop = shutdown.clone();
            Some(tokio::spawn(self.outbound.clone().run(stop)))
        } else {
            None
        };
        let mut workers = Vec::new();
        if let Some((engine, wake)) = &self.rules {
            workers.push(tokio::spawn(crate::rules::worker::run_worker(
                engine.clone(),
                wake.clone(),
                self.settings.rules.poll_interval,
                shutdown.clone(),
            )));
            if !self.settings.rules.scheduler_interval.is_zero() {
                workers.push(tokio::spawn(crate::rules::worker::run_scheduler(
                    engine.clone(),
                    self.settings.rules.scheduler_interval,
                    shutdown.clone(),
                )));
            }
        }
        let http = tokio::spawn(crate::http::server::serve(
            self.http,
            router,
            self.http_limits,
            shutdown.clone(),
        ));
        self.smtp
            .run(shutdown.clone(), self.settings.smtp.shutdown_grace)
            .await;
        // Import jobs stop after their current batch (interrupted, resumable).
        self.imports.shutdown(Duration::from_secs(20)).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), http).await;
        // Commands in flight get their grace (within AdminSocket::serve) before the store
        // closes under them.
        self.admin.stop().await;
        if let Some(worker) = outbound {
            // An attempt in flight may finish (it is bounded by outbound.attempt_timeout);
            // one cut short is delivered again once its lease expires.
            let grace = self
                .settings
                .outbound
                .attempt_timeout
                .min(Duration::from_secs(30));
            if tokio::time::timeout(grace, worker).await.is_err() {
                tracing::warn!("outbound worker still busy at shutdown; its deliveries resume after their lease");
            }
        }
        for w in workers {
            let _ = tokio::time::timeout(Duration::from_secs(10), w).await;
        }
        // Everything that writes has stopped: the writer commits what it holds and stops.
        if tokio::time::timeout(Duration::from_secs(30), self.store.close())
            .await
            .is_err()
        {
            tracing::error!("storage writer did not stop in time");
        }
        tracing::info!("postern stopped");
        Ok(())
    }
}
