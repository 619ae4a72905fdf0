-- API tokens know who made them and may expire (docs/SECURITY.md, finding 12).
-- created_by_user_id: the signed-in user who made the token through the API (or the user
--   behind the token that made it); the token works only while that user exists and is not
--   disabled, with at most that user's role. NULL for tokens an operator made with
--   `postern token create` on the server, and for every token made before this migration:
--   those keep working as before.
-- created_by_token_id: the API token that made it, when one did (for the audit trail).
-- expires_at: ms since the epoch after which the token is refused; NULL never.
ALTER TABLE api_tokens ADD COLUMN created_by_user_id INTEGER REFERENCES users(id) ON DELETE CASCADE;
ALTER TABLE api_tokens ADD COLUMN created_by_token_id INTEGER;
ALTER TABLE api_tokens ADD COLUMN expires_at INTEGER;
CREATE INDEX api_tokens_creator ON api_tokens(created_by_user_id);
