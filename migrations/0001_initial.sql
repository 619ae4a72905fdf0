-- Postern's schema. Every row that belongs to a customer store carries account_id,
-- and every query filters on it. Times are Unix milliseconds (UTC), so range scans
-- by the scheduler and the importer stay on plain integer indexes.

CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL,
    -- Default sending address of the brand (support@brand.com); replies leave from it.
    from_address  TEXT NOT NULL,
    settings      TEXT NOT NULL DEFAULT '{}',  -- JSON: business hours, policies
    created_at    INTEGER NOT NULL
);

-- One row per support mailbox of a store, with the forwarding address we host for it.
CREATE TABLE support_addresses (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id          INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    address             TEXT NOT NULL,            -- support@brand.com (lower-case)
    forwarding_address  TEXT NOT NULL UNIQUE,     -- support-<token>@<inbound domain> (lower-case)
    from_address        TEXT,                     -- overrides accounts.from_address when set
    status              TEXT NOT NULL DEFAULT 'awaiting_mail'
                        CHECK (status IN ('awaiting_mail', 'confirmation_pending', 'active')),
    confirmation_code   TEXT,                     -- e.g. Gmail's forwarding confirmation code
    confirmation_url    TEXT,
    created_at          INTEGER NOT NULL,
    UNIQUE (account_id, address)
);

-- Agents and admins; filled by SAML just-in-time provisioning or the CLI.
CREATE TABLE users (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    email       TEXT NOT NULL,
    name        TEXT,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'agent')),
    created_at  INTEGER NOT NULL,
    UNIQUE (account_id, email)
);

CREATE TABLE customers (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    email       TEXT NOT NULL,                    -- lower-case
    name        TEXT,
    attributes  TEXT NOT NULL DEFAULT '{}',       -- JSON: order numbers, VIP, ...
    created_at  INTEGER NOT NULL,
    UNIQUE (account_id, email)
);

-- Content-addressed bytes: raw messages exactly as received, decoded attachments.
CREATE TABLE blobs (
    sha256  TEXT PRIMARY KEY,
    size    INTEGER NOT NULL,
    data    BLOB NOT NULL
);

CREATE TABLE tickets (
    id                        INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id                INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    subject                   TEXT NOT NULL,
    normalized_subject        TEXT NOT NULL,
    status                    TEXT NOT NULL DEFAULT 'open'
                              CHECK (status IN ('open', 'pending', 'snoozed', 'closed')),
    snoozed_until             INTEGER,
    priority                  TEXT NOT NULL DEFAULT 'normal'
                              CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    customer_id               INTEGER REFERENCES customers(id),
    assignee_id               INTEGER REFERENCES users(id),
    team                      TEXT,                 -- queue name for team assignment
    support_address_id        INTEGER REFERENCES support_addresses(id),
    flags                     TEXT NOT NULL DEFAULT '[]',  -- JSON list: unverified_reply, spoof_suspected, ...
    merged_into               INTEGER REFERENCES tickets(id),
    created_at                INTEGER NOT NULL,
    updated_at                INTEGER NOT NULL,
    last_customer_message_at  INTEGER,
    last_agent_reply_at       INTEGER,
    closed_at                 INTEGER
);
CREATE INDEX tickets_account_updated ON tickets(account_id, updated_at DESC);
CREATE INDEX tickets_account_status ON tickets(account_id, status, last_customer_message_at);
CREATE INDEX tickets_customer ON tickets(account_id, customer_id, normalized_subject);

CREATE TABLE ticket_tags (
    ticket_id  INTEGER NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    tag        TEXT NOT NULL,
    PRIMARY KEY (ticket_id, tag)
);
CREATE INDEX ticket_tags_tag ON ticket_tags(tag);

-- Everyone who took part in a ticket, for the participant rule of threading.
CREATE TABLE ticket_participants (
    ticket_id  INTEGER NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    email      TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('customer', 'cc', 'agent', 'brand')),
    PRIMARY KEY (ticket_id, email)
);

CREATE TABLE messages (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id        INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    ticket_id         INTEGER NOT NULL REFERENCES tickets(id),
    direction         TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound', 'note')),
    source            TEXT NOT NULL CHECK (source IN ('smtp', 'import', 'api', 'rule')),
    -- Message-ID without angle brackets, or NULL when the message had none.
    message_id        TEXT,
    -- What makes the message unique in its account: the Message-ID, or a hash of
    -- the normalised bytes when there is none.
    dedup_key         TEXT NOT NULL,
    in_reply_to       TEXT,
    references_list   TEXT NOT NULL DEFAULT '[]',   -- JSON list, oldest first
    from_address      TEXT,
    from_name         TEXT,
    to_list           TEXT NOT NULL DEFAULT '[]',   -- JSON list of {name, address}
    cc_list           TEXT NOT NULL DEFAULT '[]',
    reply_to          TEXT,
    subject           TEXT NOT NULL DEFAULT '',
    sent_at           INTEGER,                      -- the Date header
    received_at       INTEGER NOT NULL,
    text_body         TEXT,                         -- decoded plain text
    html_body         TEXT,                         -- decoded HTML, untrusted: sanitise before display
    stripped_text     TEXT,                         -- reply part without quotes and signature
    raw_sha256        TEXT REFERENCES blobs(sha256),
    size              INTEGER NOT NULL,
    envelope          TEXT,                         -- JSON: session, IP, HELO, MAIL FROM, RCPT TO, TLS
    support_address_id INTEGER REFERENCES support_addresses(id),
    auth_results      TEXT,                         -- JSON verdicts (SPF, DKIM, DMARC, ARC)
    classification    TEXT NOT NULL DEFAULT 'normal',
    thread_reason     TEXT NOT NULL DEFAULT 'new_ticket',
    flags             TEXT NOT NULL DEFAULT '[]',
    author_user_id    INTEGER REFERENCES users(id), -- agent who wrote an outbound message or note
    UNIQUE (account_id, dedup_key)
);
CREATE INDEX messages_ticket ON messages(ticket_id, received_at);
CREATE INDEX messages_message_id ON messages(account_id, message_id);

-- Message-IDs that messages referred to (In-Reply-To and References), so that a parent
-- arriving after its replies finds their ticket.
CREATE TABLE message_references (
    account_id   INTEGER NOT NULL,
    referenced   TEXT NOT NULL,
    message_id   INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    PRIMARY KEY (account_id, referenced, message_id)
);

CREATE TABLE attachments (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id   INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    filename     TEXT,
    content_type TEXT NOT NULL,
    size         INTEGER NOT NULL,
    content_id   TEXT,                              -- for inline cid: images
    disposition  TEXT NOT NULL CHECK (disposition IN ('attachment', 'inline')),
    blob_sha256  TEXT NOT NULL REFERENCES blobs(sha256)
);
CREATE INDEX attachments_message ON attachments(message_id);

-- History of a ticket: merges, status changes, assignments, rule actions.
CREATE TABLE ticket_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id  INTEGER NOT NULL,
    ticket_id   INTEGER NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    data        TEXT NOT NULL DEFAULT '{}',
    created_at  INTEGER NOT NULL
);
CREATE INDEX ticket_events_ticket ON ticket_events(ticket_id, created_at);

-- Accepted mail that could not become a ticket message; kept whole, with the reason,
-- so it can be re-processed. account_id is NULL when no account could be determined.
CREATE TABLE quarantine (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id       INTEGER REFERENCES accounts(id) ON DELETE CASCADE,
    reason           TEXT NOT NULL,
    detail           TEXT,
    raw_sha256       TEXT NOT NULL REFERENCES blobs(sha256),
    size             INTEGER NOT NULL,
    envelope         TEXT,
    source           TEXT NOT NULL,                 -- smtp, import
    source_position  TEXT,                          -- file offset or UID for imports
    status           TEXT NOT NULL DEFAULT 'held' CHECK (status IN ('held', 'reprocessed', 'discarded')),
    received_at      INTEGER NOT NULL
);
CREATE INDEX quarantine_account ON quarantine(account_id, received_at);

-- Server-wide secrets and settings generated on first start (e.g. the reply-token MAC key).
CREATE TABLE server_secrets (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
