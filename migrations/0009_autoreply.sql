-- Automated replies through the outbound queue, idempotent rule runs, snoozes that end.

-- The rule that wrote an automated reply (author_user_id stays for agents: a rule's reply
-- is not an agent's).
ALTER TABLE messages ADD COLUMN author_rule_id INTEGER;

-- What a rule run was for: 'message:ID', 'time:EPISODE' or 'events:FIRST_EVENT_ID:DEPTH'.
-- A run and its ticket changes are committed together under this key, so a retried event
-- never runs a rule's actions on the same ticket twice (two notes, two tags events).
ALTER TABLE rule_runs ADD COLUMN run_key TEXT;
CREATE UNIQUE INDEX rule_runs_key ON rule_runs(rule_id, ticket_id, run_key)
    WHERE run_key IS NOT NULL;

-- The scheduler wakes snoozed tickets whose time has come.
CREATE INDEX tickets_snoozed ON tickets(snoozed_until) WHERE status = 'snoozed';
