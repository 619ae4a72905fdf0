-- Rules, macros and their history (docs/RULES.md). Every row carries account_id.

-- A rule as written by the admin (JSON or TOML), stored in its canonical JSON form.
CREATE TABLE rules (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    -- message_received, ticket_created, ticket_updated or time.
    trigger     TEXT NOT NULL,
    -- Rules run by ascending position, then id.
    position    INTEGER NOT NULL DEFAULT 100,
    enabled     INTEGER NOT NULL DEFAULT 0,
    definition  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (account_id, name)
);
CREATE INDEX rules_account_trigger ON rules(account_id, trigger, enabled, position, id);
CREATE INDEX rules_trigger_enabled ON rules(trigger, enabled);

-- Reply templates (minijinja), compiled when saved.
CREATE TABLE macros (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    subject     TEXT,                 -- template; empty: "Re: " + the ticket's subject
    body        TEXT NOT NULL,        -- template
    -- What a variable the ticket does not have renders as: 'empty' or 'fallback'.
    missing     TEXT NOT NULL DEFAULT 'empty' CHECK (missing IN ('empty', 'fallback')),
    fallback    TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (account_id, name)
);

-- Every evaluation of a rule on a ticket: what matched, what was done or skipped and why.
CREATE TABLE rule_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    rule_id     INTEGER,              -- NULL once the rule is deleted (the name stays)
    rule_name   TEXT NOT NULL,
    ticket_id   INTEGER,
    message_id  INTEGER,
    trigger     TEXT NOT NULL,
    matched     INTEGER NOT NULL,
    conditions  TEXT NOT NULL DEFAULT '[]',   -- JSON: each condition with its result
    actions     TEXT NOT NULL DEFAULT '[]',   -- JSON: each action, done or skipped with the reason
    depth       INTEGER NOT NULL DEFAULT 0,
    error       TEXT,
    created_at  INTEGER NOT NULL
);
CREATE INDEX rule_runs_account ON rule_runs(account_id, id);
CREATE INDEX rule_runs_rule ON rule_runs(account_id, rule_id, id);
CREATE INDEX rule_runs_ticket ON rule_runs(account_id, ticket_id, id);

-- A time-based rule fires once per ticket per episode: the episode is the time of the
-- ticket's last human activity (customer message or agent reply) when it fired.
CREATE TABLE rule_fires (
    rule_id     INTEGER NOT NULL REFERENCES rules(id) ON DELETE CASCADE,
    ticket_id   INTEGER NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    episode     INTEGER NOT NULL,
    fired_at    INTEGER NOT NULL,
    PRIMARY KEY (rule_id, ticket_id)
);

-- Automated replies, for "at most one per customer per rule within the window".
CREATE TABLE rule_auto_replies (
    account_id  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    rule_id     INTEGER NOT NULL,
    customer    TEXT NOT NULL,
    ticket_id   INTEGER NOT NULL,
    message_id  INTEGER,
    sent_at     INTEGER NOT NULL
);
CREATE INDEX rule_auto_replies_lookup ON rule_auto_replies(rule_id, customer, sent_at);

-- How far the rules worker has read: messages and ticket events committed after these ids
-- are the ones it has yet to run rules for. Starting at the current end, so that history
-- already in the database never fires a rule.
CREATE TABLE rule_cursors (
    name     TEXT PRIMARY KEY,
    last_id  INTEGER NOT NULL
);
INSERT INTO rule_cursors (name, last_id) SELECT 'messages', COALESCE(MAX(id), 0) FROM messages;
INSERT INTO rule_cursors (name, last_id) SELECT 'ticket_events', COALESCE(MAX(id), 0) FROM ticket_events;

-- The scheduler's candidate queries: open/pending tickets of an account by the age of the
-- last customer message, the last agent reply and creation.
CREATE INDEX tickets_account_status_agent ON tickets(account_id, status, last_agent_reply_at);
CREATE INDEX tickets_account_status_created ON tickets(account_id, status, created_at);
-- (No index on messages(account_id, received_at) for the simulation: SQLite would take it
-- for the per-ticket message queries and scan a whole account. The simulation reads all of
-- an account's messages once and sorts them.)
CREATE INDEX ticket_events_account ON ticket_events(account_id, created_at);
