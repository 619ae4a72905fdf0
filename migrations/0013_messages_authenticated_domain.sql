-- The From domain that DMARC (or a trusted forwarder's ARC seal) proved for an inbound
-- message, NULL when none was. Deduplication reads it: a message that reuses a stored
-- Message-ID is dropped as a duplicate only when it has the same sender and body, and never
-- when it is authenticated and the stored copy was not (issue 19, finding 9).
ALTER TABLE messages ADD COLUMN authenticated_domain TEXT;
