-- Outbound mail: the brand's sending domains with their DKIM keys, and the durable queue of
-- replies waiting for (or done with) delivery, one row per recipient.

-- A domain the account sends from. The DKIM private keys are kept here (base64 PKCS#8 DER)
-- for now: whoever can read the database can sign as the brand (see docs/OUTBOUND.md).
CREATE TABLE sending_domains (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id          INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    domain              TEXT NOT NULL,              -- lower-case, no trailing dot
    selector            TEXT NOT NULL,              -- RSA key: <selector>._domainkey.<domain>
    rsa_private_key     TEXT NOT NULL,
    rsa_public_key      TEXT NOT NULL,              -- base64 SubjectPublicKeyInfo (the p= value)
    ed25519_selector    TEXT,                       -- second signature (RFC 8463), when set
    ed25519_private_key TEXT,
    ed25519_public_key  TEXT,                       -- base64 of the 32 raw bytes
    verified            INTEGER NOT NULL DEFAULT 0, -- the RSA DKIM record was found as published
    last_check          TEXT,                       -- JSON: the last `domain check` report
    checked_at          INTEGER,
    created_at          INTEGER NOT NULL,
    UNIQUE (account_id, domain)
);

-- One recipient of one outbound message. The signed bytes are the message's raw blob, so
-- every attempt sends the same bytes. A worker owns a row while lease_until is in the
-- future; a row whose worker died is claimed again once its lease has expired.
CREATE TABLE outbound_queue (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id       INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    ticket_id        INTEGER NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    message_id       INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    mail_from        TEXT NOT NULL,                 -- envelope sender (the brand address)
    recipient        TEXT NOT NULL,                 -- lower-case
    status           TEXT NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'deferred', 'delivered', 'bounced')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_until      INTEGER,
    last_error       TEXT,
    last_code        INTEGER,                       -- SMTP reply code of the last answer
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,              -- given up (bounced) after this time
    updated_at       INTEGER NOT NULL,
    delivered_at     INTEGER,
    UNIQUE (message_id, recipient)
);
CREATE INDEX outbound_queue_due ON outbound_queue(status, next_attempt_at);
CREATE INDEX outbound_queue_account ON outbound_queue(account_id, id);
CREATE INDEX outbound_queue_ticket ON outbound_queue(ticket_id);
