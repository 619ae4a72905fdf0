//! The outbound queue: replies are composed, DKIM-signed once and stored with one queue row
//! per recipient ([`OutboundQueue::enqueue_reply`]); workers inside `postern serve` take due
//! rows under a lease ([`OutboundQueue::run`]), deliver them through the relay or to the MX
//! hosts, and record delivered / deferred (with the retry time) / bounced.

use super::compose::{self, DraftLimits, ReplyDraft};
use super::delivery::{self, Connection, DeliveryError, RecipientResults, TlsMode};
use super::dkim::{self, DomainSigner};
use super::domains::{self, DomainReport};
use super::recipient::check_deliverable;
use super::{clean_domain, dns, OutboundError};
use crate::config::{OutboundMode, OutboundSettings, RelayTls};
use crate::domain::{mint_reply_token, AccountId, EmailAddress, TicketId};
use crate::store::{
    now_ms, ClaimedDelivery, ClaimedRecipient, DeliveryOutcome, DeliveryView, Disposition,
    NewOutboundAttachment, NewOutboundReply, NewSendingDomain, SendingDomainView, Store,
};
use mail_auth::MessageAuthenticator;
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A reply on its way.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QueuedReply {
    /// The outbound message (messages.id).
    pub message: i64,
    pub ticket_id: i64,
    /// Its Message-ID header (our reply token).
    pub message_id: String,
    pub subject: String,
    /// One entry per recipient.
    pub deliveries: Vec<DeliveryView>,
}

pub struct OutboundQueue {
    store: Store,
    cfg: OutboundSettings,
    helo: String,
    secret: Vec<u8>,
    inbound_domain: String,
    resolver: Arc<MessageAuthenticator>,
    /// Parsed keys by sending domain id: parsing an RSA key costs more than signing.
    signers: Mutex<HashMap<i64, Arc<DomainSigner>>>,
    /// Tells idle workers that something was queued.
    wake: tokio::sync::Notify,
}

impl OutboundQueue {
    pub fn new(
        store: Store,
        cfg: OutboundSettings,
        smtp_hostname: &str,
        secret: Vec<u8>,
        inbound_domain: &str,
        resolver: Arc<MessageAuthenticator>,
    ) -> Self {
        Self {
            store,
            helo: cfg.helo(smtp_hostname).to_string(),
            cfg,
            secret,
            inbound_domain: inbound_domain.to_ascii_lowercase(),
            resolver,
            signers: Mutex::new(HashMap::new()),
            wake: tokio::sync::Notify::new(),
        }
    }

    pub fn settings(&self) -> &OutboundSettings {
        &self.cfg
    }

    /// Generates the domain's DKIM keys and stores them; returns the domain and the
    /// records to publish.
    pub async fn add_domain(
        &self,
        account: AccountId,
        domain: &str,
        selector: Option<&str>,
    ) -> Result<(SendingDomainView, Vec<domains::RecordCheck>), OutboundError> {
        let domain = clean_domain(domain)?;
        let selector = selector
            .unwrap_or(&self.cfg.dkim_selector)
            .trim()
            .to_ascii_lowercase();
        if selector.is_empty()
            || selector.len() > 63
            || !selector
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(OutboundError::Invalid(format!(
                "selector {selector:?} must be letters, digits and '-' (at most 63)"
            )));
        }
        let keys = tokio::task::spawn_blocking({
            let ed = self.cfg.dkim_ed25519;
            move || dkim::generate_keys(ed)
        })
        .await
        .map_err(|e| OutboundError::Dkim(e.to_string()))??;
        let ed_selector = format!("{selector}-ed");
        let view = self
            .store
            .add_sending_domain(
                account,
                &NewSendingDomain {
                    domain: &domain,
                    selector: &selector,
                    rsa_private_key: &keys.rsa_private,
                    rsa_public_key: &keys.rsa_public,
                    ed25519: keys
                        .ed25519
                        .as_ref()
                        .map(|(p, q)| (ed_selector.as_str(), p.as_str(), q.as_str())),
                },
            )
            .await
            .map_err(|e| match e {
                crate::store::StoreError::Conflict(m) => OutboundError::DomainNotReady(m),
                other => other.into(),
            })?;
        let records = domains::records_to_publish(&view, &self.cfg);
        Ok((view, records))
    }

    /// Looks the domain's records up, stores the report and the verified flag.
    pub async fn check_domain(
        &self,
        account: AccountId,
        id: i64,
    ) -> Result<DomainReport, OutboundError> {
        let view = self.store.sending_domain_view(account, id).await?;
        // An operator who just fixed a record checks again at once: ask the DNS afresh.
        self.resolver.resolver().clear_cache();
        let report = domains::check(self.resolver.resolver(), &view, &self.cfg).await;
        self.store
            .set_domain_check(
                id,
                report.verified,
                &serde_json::to_value(&report).unwrap_or_default(),
            )
            .await?;
        Ok(report)
    }

    pub fn records(&self, view: &SendingDomainView) -> Vec<domains::RecordCheck> {
        domains::records_to_publish(view, &self.cfg)
    }

    fn signer(
        &self,
        keys: &crate::store::SendingDomainKeys,
    ) -> Result<Arc<DomainSigner>, OutboundError> {
        if let Some(s) = self
            .signers
            .lock()
            .ok()
            .and_then(|m| m.get(&keys.id).cloned())
        {
            return Ok(s);
        }
        let ed = match (&keys.ed25519_selector, &keys.ed25519_private_key) {
            (Some(s), Some(k)) => Some((s.as_str(), k.as_str())),
            _ => None,
        };
        let signer = Arc::new(DomainSigner::new(
            &keys.domain,
            &keys.selector,
            &keys.rsa_private_key,
            ed,
        )?);
        if let Ok(mut m) = self.signers.lock() {
            m.insert(keys.id, signer.clone());
        }
        Ok(signer)
    }

    /// Composes the reply in `ticket`, signs it, stores it as an outbound message of the
    /// ticket and queues it for every recipient. `automated` marks replies sent by rules
    /// (macro auto-replies): they carry `Auto-Submitted: auto-replied` and do not count as
    /// an agent's reply. Refused with [`OutboundError::DomainNotReady`] while the sending
    /// address's domain is not a verified sending domain of the account.
    pub async fn enqueue_reply(
        &self,
        account: AccountId,
        ticket: TicketId,
        draft: ReplyDraft,
        automated: bool,
    ) -> Result<QueuedReply, OutboundError> {
        let cc = compose::validate(&draft, &self.draft_limits())?;
        let ctx = self.store.reply_context(account, ticket).await?;
        if let Some(customer) = &ctx.customer {
            check_deliverable(&customer.address).map_err(|e| OutboundError::Undeliverable {
                recipient: format!("the customer's address {}", customer.address),
                reason: e.reason,
            })?;
        }
        let from = EmailAddress::parse(&ctx.from_address).map_err(|e| {
            OutboundError::DomainNotReady(format!(
                "the account's sending address {:?} is not usable ({e}); set it with the account's --from",
                ctx.from_address
            ))
        })?;
        let domain = from.domain().to_ascii_lowercase();
        let keys = self
            .store
            .sending_domain(account, None, Some(&domain))
            .await
            .map_err(|e| match e {
                crate::store::StoreError::NotFound(_) => OutboundError::DomainNotReady(format!(
                    "replies leave from {}, but {domain} is not a sending domain of this account: run `postern domain add --account {account} {domain}`, publish the records it prints, then `postern domain check`",
                    ctx.from_address
                )),
                other => other.into(),
            })?;
        if !keys.verified {
            return Err(OutboundError::DomainNotReady(format!(
                "the sending domain {domain} is not verified yet: publish its DKIM record (`postern domain list --account {account}` shows it) and run `postern domain check --account {account} {domain}`"
            )));
        }
        let signer = self.signer(&keys)?;
        let message_id = mint_reply_token(&self.secret, ticket.0, &self.inbound_domain);
        let now = now_ms();
        let composed = compose::compose(&ctx, &draft, &cc, &message_id, automated, now)?;
        let signed = {
            let raw = composed.raw.clone();
            let signer = signer.clone();
            tokio::task::spawn_blocking(move || signer.sign(&raw))
                .await
                .map_err(|e| OutboundError::Dkim(e.to_string()))??
        };
        let lifetime = i64::try_from(self.cfg.lifetime.as_millis()).unwrap_or(i64::MAX / 2);
        let queued = self
            .record(
                account,
                ticket,
                &draft,
                &composed,
                message_id,
                automated,
                Disposition::Queue {
                    raw: &signed,
                    mail_from: &from.normalized(),
                    expires_at: now.saturating_add(lifetime),
                },
            )
            .await?;
        crate::metrics::set_queue_depth(self.store.queue_depth().await.unwrap_or(0));
        self.wake.notify_waiters();
        Ok(queued)
    }

    /// Records a reply in its ticket without sending it: flagged `not_sent`, no queue
    /// entry, `reason` in the ticket's history. What an automated reply becomes when
    /// [`Self::enqueue_reply`] refuses it (sending domain not ready), so that agents see
    /// what the customer did not get.
    pub async fn record_unsent_reply(
        &self,
        account: AccountId,
        ticket: TicketId,
        draft: ReplyDraft,
        automated: bool,
        reason: &str,
    ) -> Result<QueuedReply, OutboundError> {
        let cc = compose::validate(&draft, &self.draft_limits())?;
        let ctx = self.store.reply_context(account, ticket).await?;
        let message_id = mint_reply_token(&self.secret, ticket.0, &self.inbound_domain);
        let composed = compose::compose(&ctx, &draft, &cc, &message_id, automated, now_ms())?;
        self.record(
            account,
            ticket,
            &draft,
            &composed,
            message_id,
            automated,
            Disposition::NotSent { reason },
        )
        .await
    }

    fn draft_limits(&self) -> DraftLimits {
        DraftLimits {
            max_message_size: self.cfg.max_message_size,
            max_attachments: self.cfg.max_attachments,
            max_recipients: self.cfg.max_recipients,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        account: AccountId,
        ticket: TicketId,
        draft: &ReplyDraft,
        composed: &compose::Composed,
        message_id: String,
        automated: bool,
        disposition: Disposition<'_>,
    ) -> Result<QueuedReply, OutboundError> {
        let (message, deliveries) = self
            .store
            .record_outbound_reply(&NewOutboundReply {
                account,
                ticket,
                message_id: &message_id,
                in_reply_to: composed.in_reply_to.as_deref(),
                references: &composed.references,
                from: &composed.from,
                to: &composed.to,
                cc: &composed.cc,
                subject: &composed.subject,
                text: &composed.text,
                html: draft.html.as_deref(),
                attachments: draft
                    .attachments
                    .iter()
                    .map(|a| NewOutboundAttachment {
                        filename: &a.filename,
                        content_type: &a.content_type,
                        data: &a.data,
                    })
                    .collect(),
                author_user_id: draft.author_user_id,
                author_rule_id: draft.author_rule_id,
                automated,
                disposition,
            })
            .await?;
        Ok(QueuedReply {
            message: message.0,
            ticket_id: ticket.0,
            message_id,
            subject: composed.subject.clone(),
            deliveries,
        })
    }

    /// Runs `outbound.workers` delivery workers until `shutdown`; an attempt in flight is
    /// finished (it is bounded by `outbound.attempt_timeout`).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tasks = Vec::new();
        for n in 0..self.cfg.workers {
            let me = self.clone();
            let stop = shutdown.clone();
            let owner = format!(
                "{}:{}:{n}:{:08x}",
                self.helo,
                std::process::id(),
                rand::random::<u32>()
            );
            tasks.push(tokio::spawn(async move { me.worker(owner, stop).await }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    async fn worker(&self, owner: String, shutdown: CancellationToken) {
        let lease = i64::try_from(self.cfg.lease.as_millis()).unwrap_or(600_000);
        while !shutdown.is_cancelled() {
            // Taken before the claim, so it ends no later than the lease the store records.
            let lease_until = Instant::now() + self.cfg.lease;
            match self
                .store
                .claim_delivery(&owner, lease, self.cfg.max_recipients as u32)
                .await
            {
                Ok(Some(claim)) => {
                    self.deliver_claim(&owner, claim, lease_until).await;
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "outbound queue: cannot read the queue"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.cfg.poll_interval) => {}
            }
        }
    }

    /// One attempt for the recipients of one message, grouped by destination. A recipient
    /// that mail can never reach fails at once, without a connection (see [`check_deliverable`]).
    async fn deliver_claim(&self, owner: &str, claim: ClaimedDelivery, lease_until: Instant) {
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, r) in claim.recipients.iter().enumerate() {
            if let Err(e) = check_deliverable(&r.recipient) {
                let refused = DeliveryError::refused(
                    550,
                    format!("refused by Postern before sending: 550 {e}"),
                );
                let outcome = self.failure(r.attempts, &refused);
                self.record_outcome(owner, &claim, r, outcome, lease_until)
                    .await;
                continue;
            }
            let key = match self.cfg.mode {
                OutboundMode::Relay => String::new(),
                OutboundMode::Mx => r
                    .recipient
                    .rsplit_once('@')
                    .map_or(String::new(), |(_, d)| d.to_ascii_lowercase()),
            };
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => v.push(i),
                None => groups.push((key, vec![i])),
            }
        }
        for (domain, idx) in groups {
            let rcpts: Vec<String> = idx
                .iter()
                .map(|&i| claim.recipients[i].recipient.clone())
                .collect();
            let result = if claim.raw.is_empty() {
                Err(DeliveryError::permanent(
                    "the stored message is missing; it cannot be sent",
                ))
            } else {
                match tokio::time::timeout(
                    self.cfg.attempt_timeout,
                    self.attempt(&domain, &claim.mail_from, &rcpts, &claim.raw),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => Err(DeliveryError::transient(format!(
                        "the attempt took longer than outbound.attempt_timeout ({:?})",
                        self.cfg.attempt_timeout
                    ))),
                }
            };
            for &i in &idx {
                let row = &claim.recipients[i];
                let outcome = match &result {
                    Ok(per) => match per.iter().find(|(a, _)| *a == row.recipient) {
                        Some((_, Ok(()))) => DeliveryOutcome::Delivered { code: Some(250) },
                        Some((_, Err(e))) => self.failure(row.attempts, e),
                        None => self.failure(
                            row.attempts,
                            &DeliveryError::transient("no answer for this recipient"),
                        ),
                    },
                    Err(e) => self.failure(row.attempts, e),
                };
                self.record_outcome(owner, &claim, row, outcome, lease_until)
                    .await;
            }
        }
        crate::metrics::set_queue_depth(self.store.queue_depth().await.unwrap_or(0));
    }

    /// Logs one recipient's outcome and records it under the lease.
    async fn record_outcome(
        &self,
        owner: &str,
        claim: &ClaimedDelivery,
        row: &ClaimedRecipient,
        outcome: DeliveryOutcome,
        lease_until: Instant,
    ) {
        match &outcome {
            DeliveryOutcome::Delivered { .. } => {
                tracing::info!(queue_id = row.id, recipient = %row.recipient, message = claim.message_id, "delivered")
            }
            DeliveryOutcome::Deferred { error, .. } => {
                tracing::warn!(queue_id = row.id, recipient = %row.recipient, attempts = row.attempts, %error, "delivery deferred")
            }
            DeliveryOutcome::Bounced { error, .. } => {
                tracing::warn!(queue_id = row.id, recipient = %row.recipient, %error, "delivery failed permanently")
            }
        }
        // A message the peer took must not be sent again because its outcome could not be
        // written (a full disk, a locked database): the outcome is kept and written again
        // until the lease runs out, after which another worker may take the row over.
        let mut pause = Duration::from_millis(100);
        loop {
            match self
                .store
                .finish_delivery(owner, row, claim.ticket_id, claim.account_id, &outcome)
                .await
            {
                Ok(true) => return,
                Ok(false) => {
                    tracing::error!(
                        queue_id = row.id,
                        "outbound queue: the lease ran out before the attempt was recorded; raise outbound.lease above outbound.attempt_timeout"
                    );
                    return;
                }
                Err(e) => {
                    let left = lease_until.saturating_duration_since(Instant::now());
                    if left <= pause {
                        tracing::error!(queue_id = row.id, error = %e, "outbound queue: cannot record the attempt, and the lease ends; the message may be sent again");
                        return;
                    }
                    tracing::warn!(queue_id = row.id, error = %e, retry_in = ?pause, "outbound queue: cannot record the attempt yet; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn failure(&self, attempts: i64, e: &DeliveryError) -> DeliveryOutcome {
        if e.is_transient() {
            let delays = self.cfg.retry_delays();
            let i = usize::try_from(attempts.max(1) - 1).unwrap_or(0);
            let delay = delays
                .get(i.min(delays.len().saturating_sub(1)))
                .copied()
                .unwrap_or(Duration::from_secs(3600));
            DeliveryOutcome::Deferred {
                error: e.message.clone(),
                code: e.code,
                retry_at: now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 4),
            }
        } else {
            DeliveryOutcome::Bounced {
                error: e.message.clone(),
                code: e.code,
            }
        }
    }

    async fn attempt(
        &self,
        domain: &str,
        mail_from: &str,
        rcpts: &[String],
        raw: &[u8],
    ) -> Result<RecipientResults, DeliveryError> {
        match self.cfg.mode {
            OutboundMode::Relay => {
                let r = &self.cfg.relay;
                let addrs = self.addresses(&r.host, r.port, true).await?;
                let conn = |addr| Connection {
                    addr,
                    tls_name: r.host.as_str(),
                    tls: match r.tls {
                        RelayTls::Starttls => TlsMode::Required,
                        RelayTls::Implicit => TlsMode::Implicit,
                        RelayTls::Opportunistic => TlsMode::Opportunistic,
                        RelayTls::None => TlsMode::Off,
                    },
                    verify_certs: !r.allow_invalid_certs,
                    helo: &self.helo,
                    credentials: (!r.username.is_empty())
                        .then_some((r.username.as_str(), r.password.as_str())),
                    connect_timeout: self.cfg.connect_timeout,
                    command_timeout: self.cfg.command_timeout,
                };
                self.try_addresses(&addrs, conn, mail_from, rcpts, raw)
                    .await
            }
            OutboundMode::Mx => {
                let hosts = dns::mail_hosts(self.resolver.resolver(), domain).await?;
                let mut last = DeliveryError::transient(format!("no MX host of {domain} answered"));
                for host in &hosts {
                    let addrs = match self.addresses(host, self.cfg.mx_port, false).await {
                        Ok(a) => a,
                        Err(e) => {
                            last = e;
                            continue;
                        }
                    };
                    let conn = |addr| Connection {
                        addr,
                        tls_name: host.as_str(),
                        tls: TlsMode::Opportunistic,
                        verify_certs: false,
                        helo: &self.helo,
                        credentials: None,
                        connect_timeout: self.cfg.connect_timeout,
                        command_timeout: self.cfg.command_timeout,
                    };
                    match self
                        .try_addresses(&addrs, conn, mail_from, rcpts, raw)
                        .await
                    {
                        Ok(r) => return Ok(r),
                        // A permanent answer from a host is the domain's answer.
                        Err(e) if !e.is_transient() => return Err(e),
                        Err(e) => last = e,
                    }
                }
                Err(last)
            }
        }
    }

    /// The socket addresses of `host`; in MX mode only public ones unless allowed.
    async fn addresses(
        &self,
        host: &str,
        port: u16,
        relay: bool,
    ) -> Result<Vec<SocketAddr>, DeliveryError> {
        let ips = dns::host_addresses(self.resolver.resolver(), host).await?;
        if ips.is_empty() {
            return Err(DeliveryError::transient(format!("{host} has no address")));
        }
        let allowed: Vec<SocketAddr> = ips
            .iter()
            .filter(|ip| relay || self.cfg.allow_private_mx || dns::is_public(**ip))
            .map(|ip| SocketAddr::new(*ip, port))
            .collect();
        if allowed.is_empty() {
            let why: Vec<String> = ips
                .iter()
                .map(|ip| match dns::not_public(*ip) {
                    Some(range) => format!("{ip}: {range}"),
                    None => ip.to_string(),
                })
                .collect();
            return Err(DeliveryError::permanent(format!(
                "refused to deliver to {host}: it resolves to non-public addresses ({}); outbound.allow_private_mx allows that for tests",
                why.join("; ")
            )));
        }
        Ok(allowed)
    }

    async fn try_addresses<'a>(
        &self,
        addrs: &[SocketAddr],
        conn: impl Fn(SocketAddr) -> Connection<'a>,
        mail_from: &str,
        rcpts: &[String],
        raw: &[u8],
    ) -> Result<RecipientResults, DeliveryError> {
        let mut last = DeliveryError::transient("no address to connect to");
        for addr in addrs {
            match delivery::deliver(&conn(*addr), mail_from, rcpts, raw).await {
                Ok(r) => return Ok(r),
                Err(e) if !e.is_transient() => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}
