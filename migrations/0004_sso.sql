-- SAML single sign-on: one identity provider per account, the login requests we issued
-- (each consumed once) and the assertion IDs we accepted (remembered until they expire, so
-- a captured response cannot be replayed). Every row carries account_id.

CREATE TABLE sso_providers (
    account_id       INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    idp_entity_id    TEXT NOT NULL,
    sso_url          TEXT NOT NULL,               -- the IdP's HTTP-Redirect SingleSignOnService
    slo_url          TEXT,                        -- the IdP's HTTP-Redirect SingleLogoutService
    signing_certs    TEXT NOT NULL,               -- JSON list of base64 DER certificates
    metadata_xml     TEXT NOT NULL,               -- the metadata as uploaded
    role_attribute   TEXT NOT NULL DEFAULT 'role',
    admin_values     TEXT NOT NULL DEFAULT '["admin"]',   -- JSON list
    agent_values     TEXT NOT NULL DEFAULT '["agent"]',   -- JSON list
    default_agent    INTEGER NOT NULL DEFAULT 0,  -- 1: no matching value means agent
    updated_at       INTEGER NOT NULL
);

CREATE TABLE sso_requests (
    request_id   TEXT PRIMARY KEY,                -- "_" + 64 hex digits (256 random bits)
    account_id   INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    relay_state  TEXT NOT NULL,                   -- the relative path to return to
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    consumed_at  INTEGER
);
CREATE INDEX sso_requests_expiry ON sso_requests(expires_at);

CREATE TABLE sso_seen_assertions (
    account_id    INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    assertion_id  TEXT NOT NULL,
    expires_at    INTEGER NOT NULL,
    PRIMARY KEY (account_id, assertion_id)
);
CREATE INDEX sso_seen_assertions_expiry ON sso_seen_assertions(expires_at);
