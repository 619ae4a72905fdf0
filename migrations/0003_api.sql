-- The HTTP API: API tokens and browser sessions. Only hashes (SHA-256) of their secrets are
-- stored, so a copy of the database does not let anyone in.

CREATE TABLE api_tokens (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id    INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name          TEXT NOT NULL DEFAULT '',
    role          TEXT NOT NULL CHECK (role IN ('admin', 'agent')),
    token_hash    TEXT NOT NULL UNIQUE,           -- hex SHA-256 of the whole token
    prefix        TEXT NOT NULL,                  -- first characters, to recognise a token in a list
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER,
    revoked_at    INTEGER
);
CREATE INDEX api_tokens_account ON api_tokens(account_id, id);

-- Signed-in users (SAML single sign-on). The cookie holds the random value; we keep its hash.
CREATE TABLE sessions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash  TEXT NOT NULL UNIQUE,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    account_id  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX sessions_expiry ON sessions(expires_at);

-- Users can be switched off without losing the authorship of their notes.
ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;

-- Ticket listings: filters by assignee and customer, newest first, and by tag within an account.
CREATE INDEX tickets_account_assignee ON tickets(account_id, assignee_id, updated_at);
CREATE INDEX tickets_account_created ON tickets(account_id, created_at);
CREATE INDEX customers_account ON customers(account_id, id);
