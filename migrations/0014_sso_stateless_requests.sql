-- Single sign-on requests are no longer stored when they are issued: the AuthnRequest ID is a
-- record sealed with a server key (account, times, browser binding), so an anonymous
-- GET /saml/<account>/login costs no row and cannot fill a table (issue 19, finding 5).
-- Only the requests that were answered are remembered, until their own expiry, so that one
-- request signs in at most once. Requests in flight during the upgrade are forgotten: those
-- users start their sign-in again.
DROP TABLE sso_requests;

CREATE TABLE sso_consumed_requests (
    account_id   INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    request_id   TEXT NOT NULL,
    expires_at   INTEGER NOT NULL,               -- the request's own expiry (unix ms)
    PRIMARY KEY (account_id, request_id)
);
CREATE INDEX sso_consumed_requests_expiry ON sso_consumed_requests(expires_at);
