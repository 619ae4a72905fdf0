-- Messages are found by Message-ID through the unique (account_id, dedup_key) index:
-- dedup_key is 'mid:' || message_id for every message that has one (and
-- 'mid:' || message_id || '#' || sha256 for a different message under an ID already
-- stored). The separate index held the same keys again and cost every stored message
-- one more B-tree leaf written (an eighth of the WAL under SMTP load).
DROP INDEX IF EXISTS messages_message_id;
