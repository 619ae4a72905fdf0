-- Finding an already quarantined copy of the same bytes (a sender's retry) quickly.
CREATE INDEX quarantine_raw ON quarantine(account_id, raw_sha256);
