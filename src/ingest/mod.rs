//! What happens to one inbound message: route it to its accounts, parse it, classify it,
//! thread it (the order in [`thread_resolver`], as code over facts from the store) and
//! commit it durably through the store's writer (or quarantine it) before the SMTP session
//! answers 250. The writer runs [`filing`]'s decisions inside its batch transaction, through
//! the store's `ThreadingRepository`.

pub mod bounce_filing;
pub mod classify;
#[cfg(test)]
mod decision_table;
pub mod duplicates;
#[cfg(test)]
mod fake_repository;
pub mod filing;
pub mod forwarded;
mod lookup_cache;
pub mod mime_limits;
mod parse;
pub mod parse_probe;
pub mod participants;
pub mod reply_text;
pub mod thread_resolver;
pub mod tnef;

pub use filing::MessageFiling;
pub use parse::{content_hash, parse_inbound, parse_message, ParsedMessage, Unusable};
pub use participants::DEFAULT_MAX_PARTICIPANTS;
pub use thread_resolver::{ThreadResolver, ThreadingConfig};

use crate::auth::{
    evaluate, AuthPolicy, AuthVerdicts, Authenticator, PolicyOutcome, StoredAuthResults,
};
use crate::domain::{
    AccountId, AccountSettings, EmailAddress, Envelope, MessageKind, SupportAddressId,
};
use crate::smtp::{Accepted, Delivery, DeliveryError, RecipientVerdict};
use crate::store::{
    CommitWriter, Intake, IntakeOutcome, NewMessage, NewQuarantine, Store, StoreError,
};
use classify::ClassifyContext;
use lookup_cache::LookupCache;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Stack of every thread that parses mail (the runtime's workers and blocking pool, import
/// parsers): Linux's main-thread size rather than Rust's 2 MiB default. The MIME tree is
/// capped (see [`mime_limits`]), so this is margin for what the fuzzers have not found, and
/// costs address space only.
pub const PARSE_THREAD_STACK: usize = 8 * 1024 * 1024;

/// Messages larger than this are parsed on the blocking pool, off the async workers.
const INLINE_PARSE_LIMIT: usize = 512 * 1024;

/// The [`Delivery`] behind the SMTP server.
pub struct MailIntake {
    store: Store,
    writer: CommitWriter,
    inbound_domain: String,
    /// `threading.max_participants_per_message`.
    max_participants: usize,
    auth: Option<Arc<Authenticator>>,
    default_policy: AuthPolicy,
    /// Forwarding address (normalised) -> its account and support address.
    routes: LookupCache<String, (AccountId, SupportAddressId)>,
    settings: LookupCache<AccountId, Arc<AccountSettings>>,
    /// Told after each commit that stored a message: the rules worker runs then, after the
    /// 250 is decided and never in its way (it reads the committed rows itself).
    after_commit: Option<Arc<tokio::sync::Notify>>,
}

/// How many addresses and accounts the lookup caches remember at most.
const LOOKUP_CACHE_CAPACITY: usize = 10_000;

impl MailIntake {
    pub fn new(
        store: Store,
        writer: CommitWriter,
        inbound_domain: &str,
        auth: Option<Arc<Authenticator>>,
        default_policy: AuthPolicy,
        lookup_cache_ttl: Duration,
    ) -> Self {
        Self {
            store,
            writer,
            inbound_domain: inbound_domain.to_ascii_lowercase(),
            max_participants: DEFAULT_MAX_PARTICIPANTS,
            auth,
            default_policy,
            routes: LookupCache::new(lookup_cache_ttl, LOOKUP_CACHE_CAPACITY),
            settings: LookupCache::new(lookup_cache_ttl, LOOKUP_CACHE_CAPACITY),
            after_commit: None,
        }
    }

    /// At most `max` participant rows per message (`threading.max_participants_per_message`).
    pub fn with_max_participants(mut self, max: usize) -> Self {
        self.max_participants = max;
        self
    }

    /// Wakes `notify` after each commit that stored a message (the rules worker).
    pub fn with_after_commit(mut self, notify: Arc<tokio::sync::Notify>) -> Self {
        self.after_commit = Some(notify);
        self
    }

    /// The account and support address behind a forwarding address, if we host it.
    async fn route(
        &self,
        address: &EmailAddress,
    ) -> Result<Option<(AccountId, SupportAddressId)>, StoreError> {
        let key = address.normalized();
        if let Some(hit) = self.routes.get(&key) {
            return Ok(Some(hit));
        }
        let found = self.store.route_forwarding_address(address).await?;
        if let Some(route) = found {
            self.routes.insert(key, route);
        }
        Ok(found)
    }

    async fn account_settings(
        &self,
        account: AccountId,
    ) -> Result<Arc<AccountSettings>, StoreError> {
        if let Some(hit) = self.settings.get(&account) {
            return Ok(hit);
        }
        let settings = Arc::new(self.store.account_settings(account).await?);
        self.settings.insert(account, settings.clone());
        Ok(settings)
    }

    /// Verifies the message (once) and applies each receiving account's policy.
    async fn authenticate(
        &self,
        raw: &Arc<Vec<u8>>,
        envelope: &Envelope,
        routes: &[(AccountId, SupportAddressId)],
    ) -> Result<HashMap<AccountId, (AuthVerdicts, PolicyOutcome)>, DeliveryError> {
        let mut out = HashMap::new();
        let Some(auth) = &self.auth else {
            return Ok(out);
        };
        let verdicts = auth
            .verify_contained(
                raw.clone(),
                envelope.remote_ip,
                envelope.helo.clone(),
                envelope.mail_from.clone(),
            )
            .await;
        let envelope_domain = envelope
            .mail_from
            .as_deref()
            .and_then(|m| m.rsplit_once('@'))
            .map(|(_, d)| d);
        for (account, _) in routes {
            let settings = self
                .account_settings(*account)
                .await
                .map_err(storage_error)?;
            let policy = self.default_policy.for_account(&settings.auth);
            let outcome = evaluate(&verdicts, &policy, envelope_domain);
            out.insert(*account, (verdicts.clone(), outcome));
        }
        if let Some(reason) = out
            .values()
            .map(|(_, o)| o.reject.clone())
            .collect::<Option<Vec<_>>>()
            .and_then(|r| r.into_iter().next())
        {
            tracing::warn!(%reason, "refused by strict DMARC policy");
            return Err(DeliveryError {
                code: 550,
                enhanced: "5.7.1",
                message: format!("Message refused: {reason}"),
            });
        }
        Ok(out)
    }

    async fn routes(
        &self,
        envelope: &Envelope,
    ) -> Result<Vec<(AccountId, SupportAddressId)>, StoreError> {
        let mut routes = Vec::new();
        for rcpt in &envelope.rcpt_to {
            let Ok(addr) = EmailAddress::parse(rcpt) else {
                continue;
            };
            if let Some((account, support)) = self.route(&addr).await? {
                // One copy per account, even when several of its addresses were recipients.
                if !routes.iter().any(|(a, _)| *a == account) {
                    routes.push((account, support));
                }
            }
        }
        Ok(routes)
    }
}

fn storage_error(e: StoreError) -> DeliveryError {
    match e {
        StoreError::DiskFull(_) => DeliveryError {
            code: 452,
            enhanced: "4.3.1",
            message: "Insufficient system storage, try again later".into(),
        },
        _ => DeliveryError::temporary("4.3.0", "Storage failure, try again later"),
    }
}

/// Where a message is filed: our inbound domain, and how many participants it may add.
#[derive(Debug, Clone)]
pub struct Filing<'a> {
    pub inbound_domain: &'a str,
    /// `threading.max_participants_per_message`.
    pub max_participants: usize,
    /// [`parse::needs_probe`] of the message, when the caller found it out already.
    pub needs_probe: Option<bool>,
}

/// The rows of one parsed message for one account.
#[allow(clippy::too_many_arguments)]
fn new_message(
    p: ParsedMessage,
    filing: &Filing<'_>,
    account: AccountId,
    support: Option<SupportAddressId>,
    raw: Arc<Vec<u8>>,
    raw_packed: Option<Arc<Vec<u8>>>,
    raw_sha256: String,
    envelope_json: String,
    received_at: i64,
    source: &'static str,
) -> NewMessage {
    let mut attachments = p.attachments;
    for a in &mut attachments {
        a.packed = crate::store::pack_blob(&a.data);
    }
    let pack = |body: &Option<String>| {
        body.as_deref()
            .and_then(crate::store::pack_body)
            .map(Arc::new)
    };
    let (text_packed, html_packed) = (pack(&p.text_body), pack(&p.html_body));
    let participants = participants::participants(
        &p.from,
        &p.to,
        &p.cc,
        filing.inbound_domain,
        filing.max_participants,
    );
    NewMessage {
        account_id: account,
        support_address_id: support,
        message_id: p.message_id,
        dedup_key: p.dedup_key,
        in_reply_to: p.in_reply_to,
        references: p.references,
        from: p.from,
        to: p.to,
        cc: p.cc,
        participants,
        reply_to: p.reply_to,
        subject: p.subject,
        sent_at: p.sent_at,
        received_at,
        text_body: p.text_body,
        html_body: p.html_body,
        text_packed,
        html_packed,
        raw,
        raw_packed,
        raw_sha256,
        envelope_json,
        source,
        attachments,
        kind: p.kind,
        forwarded_from: p.forwarded_from,
        stripped_text: p.stripped_text,
        spoof_suspected: false,
        dmarc_pass_domain: None,
        auth_results: None,
        import_job: None,
    }
}

/// Builds the rows for every account the message is for (or the quarantine entries).
#[allow(clippy::too_many_arguments)]
pub fn intake_items(
    filing: &Filing<'_>,
    raw: Arc<Vec<u8>>,
    envelope_json: &str,
    envelope_sender: Option<&str>,
    routes: &[(AccountId, SupportAddressId)],
    received_at: i64,
    source: &'static str,
) -> Vec<Intake> {
    let raw_sha256 = crate::store::blob_key(&raw);
    let context = ClassifyContext::new(filing.inbound_domain);
    let probe = filing
        .needs_probe
        .unwrap_or_else(|| parse::needs_probe(&raw));
    match parse::parse_inbound_probed(&raw, envelope_sender, Some(&context), probe) {
        Ok(parsed) => {
            // Compressed here, off the writer thread; quarantined mail is stored as it came.
            let raw_packed = crate::store::pack_blob(&raw).map(Arc::new);
            // The last account takes the parsed message itself; only the others need a copy.
            let mut parsed = Some(parsed);
            routes
                .iter()
                .enumerate()
                .filter_map(|(i, &(account, support))| {
                    let parsed = if i + 1 == routes.len() {
                        parsed.take()?
                    } else {
                        parsed.clone()?
                    };
                    Some(Intake::Message(Box::new(new_message(
                        parsed,
                        filing,
                        account,
                        Some(support),
                        raw.clone(),
                        raw_packed.clone(),
                        raw_sha256.clone(),
                        envelope_json.to_string(),
                        received_at,
                        source,
                    ))))
                })
                .collect()
        }
        Err(unusable) => routes
            .iter()
            .map(|&(account, _)| {
                Intake::Quarantine(NewQuarantine {
                    account_id: Some(account),
                    reason: unusable.reason.to_string(),
                    detail: Some(unusable.detail.clone()),
                    raw: raw.clone(),
                    raw_sha256: raw_sha256.clone(),
                    envelope_json: Some(envelope_json.to_string()),
                    source,
                    source_position: None,
                    received_at,
                })
            })
            .collect(),
    }
}

/// Where a historic message comes from, for its rows and its quarantine entry.
pub struct ImportOrigin<'a> {
    pub job: i64,
    /// Checkpoint form of its position (`mbox:1234`).
    pub position: String,
    /// What a human reads (`old.mbox at byte 1234`).
    pub origin: &'a str,
    pub folder: Option<&'a str>,
    /// What the old mailbox recorded as envelope sender (mbox `From ` line).
    pub envelope_sender: Option<&'a str>,
}

/// The row for one historic message of an import (or its quarantine entry). Its date is
/// the message's own; nothing about it can act on the present: a forwarding confirmation
/// from years ago is a plain message.
pub fn import_item(
    filing: &Filing<'_>,
    raw: Arc<Vec<u8>>,
    account: AccountId,
    date: i64,
    from: &ImportOrigin<'_>,
) -> Intake {
    let raw_sha256 = crate::store::blob_key(&raw);
    let envelope_json = serde_json::json!({
        "import": {"job": from.job, "origin": from.origin, "folder": from.folder}
    })
    .to_string();
    let context = ClassifyContext::new(filing.inbound_domain);
    match parse_inbound(&raw, from.envelope_sender, Some(&context)) {
        Ok(parsed) => {
            let mut m = new_message(
                parsed,
                filing,
                account,
                None,
                raw.clone(),
                crate::store::pack_blob(&raw).map(Arc::new),
                raw_sha256,
                envelope_json,
                date,
                "import",
            );
            if matches!(m.kind, MessageKind::ForwardingConfirmation { .. }) {
                m.kind = MessageKind::Normal;
            }
            m.import_job = Some(from.job);
            Intake::Message(Box::new(m))
        }
        Err(unusable) => Intake::Quarantine(NewQuarantine {
            account_id: Some(account),
            reason: unusable.reason.to_string(),
            detail: Some(format!("{} ({})", unusable.detail, from.origin)),
            raw,
            raw_sha256,
            envelope_json: Some(envelope_json),
            source: "import",
            source_position: Some(from.position.clone()),
            received_at: date,
        }),
    }
}

impl Delivery for MailIntake {
    async fn check_recipient(&self, recipient: &EmailAddress) -> RecipientVerdict {
        if !recipient
            .domain()
            .eq_ignore_ascii_case(&self.inbound_domain)
        {
            return RecipientVerdict::RelayDenied;
        }
        match self.route(recipient).await {
            Ok(Some(_)) => RecipientVerdict::Accept,
            Ok(None) => RecipientVerdict::UnknownUser,
            Err(e) => RecipientVerdict::TemporaryFailure(e.to_string()),
        }
    }

    async fn deliver(
        &self,
        envelope: Envelope,
        message: Vec<u8>,
    ) -> Result<Accepted, DeliveryError> {
        let routes = self.routes(&envelope).await.map_err(storage_error)?;
        let received_at = envelope.received_at.timestamp_millis();
        let envelope_json = serde_json::to_string(&envelope).unwrap_or_default();
        let raw = Arc::new(message);
        let auth = self.authenticate(&raw, &envelope, &routes).await?;
        // Found out once: it decides where the message is parsed, and the parse uses it.
        let probe = !routes.is_empty() && parse::needs_probe(&raw);
        let items = if routes.is_empty() {
            // Every recipient vanished between RCPT and end of data (account deleted):
            // keep the message anyway, it was accepted at RCPT time.
            vec![Intake::Quarantine(NewQuarantine {
                account_id: None,
                reason: "no_route".into(),
                detail: Some(format!("no account for {}", envelope.rcpt_to.join(", "))),
                raw_sha256: crate::store::blob_key(&raw),
                raw,
                envelope_json: Some(envelope_json),
                source: "smtp",
                source_position: None,
                received_at,
            })]
        } else if raw.len() > INLINE_PARSE_LIMIT || probe {
            let sender = envelope.mail_from.clone();
            let domain = self.inbound_domain.clone();
            let max_participants = self.max_participants;
            tokio::task::spawn_blocking(move || {
                intake_items(
                    &Filing {
                        inbound_domain: &domain,
                        max_participants,
                        needs_probe: Some(probe),
                    },
                    raw,
                    &envelope_json,
                    sender.as_deref(),
                    &routes,
                    received_at,
                    "smtp",
                )
            })
            .await
            .map_err(|_| {
                DeliveryError::temporary("4.3.0", "Internal error while parsing, try again later")
            })?
        } else {
            intake_items(
                &Filing {
                    inbound_domain: &self.inbound_domain,
                    max_participants: self.max_participants,
                    needs_probe: Some(probe),
                },
                raw,
                &envelope_json,
                envelope.mail_from.as_deref(),
                &routes,
                received_at,
                "smtp",
            )
        };
        let items = items
            .into_iter()
            .map(|item| match item {
                Intake::Message(mut m) => {
                    if let Some((verdicts, outcome)) = auth.get(&m.account_id) {
                        // A forwarding confirmation sets what the admin will click: only
                        // believe one that Google really signed.
                        if matches!(m.kind, MessageKind::ForwardingConfirmation { .. })
                            && !verdicts.dkim.iter().any(|d| {
                                d.result == "pass"
                                    && d.domain.as_deref().is_some_and(|x| {
                                        x == "google.com" || x.ends_with(".google.com")
                                    })
                            })
                        {
                            tracing::warn!("forwarding confirmation without a valid google.com DKIM signature: kept as a normal message");
                            m.kind = MessageKind::Normal;
                        }
                        m.spoof_suspected = outcome.spoof_suspected;
                        m.dmarc_pass_domain = outcome.authenticated_domain.clone();
                        // Straight to text: going through a `serde_json::Value` tree first
                        // cost a sixteenth of the session threads' time.
                        m.auth_results = match serde_json::to_string(&StoredAuthResults {
                            verdicts: Cow::Borrowed(verdicts),
                            policy: Cow::Borrowed(outcome),
                        }) {
                            Ok(text) => Some(text),
                            Err(e) => {
                                tracing::warn!(error = %e, "auth results not serialisable; stored without them");
                                None
                            }
                        };
                    }
                    Intake::Message(m)
                }
                other => other,
            })
            .collect();
        let outcomes = self.writer.submit(items).await.map_err(storage_error)?;
        if let Some(wake) = &self.after_commit {
            if outcomes
                .iter()
                .any(|o| matches!(o, IntakeOutcome::Stored { .. }))
            {
                wake.notify_one();
            }
        }
        let queue_id = outcomes
            .iter()
            .map(|o| match o {
                IntakeOutcome::Stored { message, .. } => format!("m{message}"),
                IntakeOutcome::Duplicate { message, .. } => format!("m{message}-duplicate"),
                IntakeOutcome::Quarantined { id } => format!("q{id}"),
                IntakeOutcome::Checkpointed => String::new(),
            })
            .collect::<Vec<_>>()
            .join(",");
        Ok(Accepted { queue_id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_for_several_accounts_gives_each_its_own_complete_copy() {
        let raw = Arc::new(
            b"From: Ana <ana@example.com>\r\nTo: support@shop.test\r\nSubject: Where is my order?\r\nMessage-ID: <1@example.com>\r\n\r\nHello\r\n"
                .to_vec(),
        );
        let routes = [
            (AccountId(1), SupportAddressId(10)),
            (AccountId(2), SupportAddressId(20)),
            (AccountId(3), SupportAddressId(30)),
        ];
        let items = intake_items(
            &Filing {
                inbound_domain: "in.postern.test",
                max_participants: DEFAULT_MAX_PARTICIPANTS,
                needs_probe: None,
            },
            raw,
            "{}",
            Some("ana@example.com"),
            &routes,
            0,
            "smtp",
        );
        let copies: Vec<_> = items
            .iter()
            .map(|i| match i {
                Intake::Message(m) => (
                    m.account_id,
                    m.support_address_id,
                    m.subject.as_str(),
                    m.from.address.as_str(),
                    m.text_body.as_deref(),
                ),
                _ => panic!("not a message"),
            })
            .collect();
        assert_eq!(
            copies,
            routes
                .iter()
                .map(|&(a, s)| (
                    a,
                    Some(s),
                    "Where is my order?",
                    "ana@example.com",
                    Some("Hello\r\n")
                ))
                .collect::<Vec<_>>()
        );
    }
}
