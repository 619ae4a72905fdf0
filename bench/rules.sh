#!/usr/bin/env bash
# Rules benchmark (docs/BENCHMARKS.md, "Rules"): the simulation of the seed's follow-up rule
# over 90 days of history, and scheduler passes over the open tickets, on a generated
# account (examples/rules_bench.rs). The peer, in the same run and on the same database:
# the sqlite3 shell running the reads each of them cannot do without (the simulation's
# tickets + messages + tags, and the scheduler's candidate query): the floor of the work.
# Usage: [TICKETS=100000] [MESSAGES=500000] bench/rules.sh
set -euo pipefail
TICKETS="${TICKETS:-100000}"
MESSAGES="${MESSAGES:-500000}"
cd "$(dirname "$0")/.."
command -v sqlite3 >/dev/null || { echo "bench/rules.sh needs the sqlite3 shell (apt-get install sqlite3)"; exit 1; }
cargo build --release --example rules_bench >/dev/null
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
target/release/examples/rules_bench "$work" "$TICKETS" "$MESSAGES" | tee "$work/out.json"
db="$work/rules-bench.db"
now_ms=$(( $(date +%s) * 1000 ))
TIMEFORMAT=%R
echo "peer: sqlite3 $(sqlite3 --version | cut -d' ' -f1)"
echo -n "sqlite3 simulation reads (s): "
{ time sqlite3 "$db" >/dev/null <<SQL ; } 2>&1
SELECT t.id, t.subject, t.status, t.priority, c.email, c.name, c.attributes FROM tickets t
  LEFT JOIN customers c ON c.id = t.customer_id WHERE t.account_id = 1 ORDER BY t.id;
SELECT g.ticket_id, g.tag FROM ticket_tags g JOIN tickets t ON t.id = g.ticket_id WHERE t.account_id = 1;
SELECT m.id, m.ticket_id, m.direction, m.source, m.subject, m.from_address, m.to_list, m.classification,
       m.flags, m.auth_results, m.received_at FROM messages m WHERE m.account_id = 1 ORDER BY m.received_at, m.id;
SQL
echo -n "sqlite3 scheduler candidate query (s): "
{ time sqlite3 "$db" >/dev/null <<SQL ; } 2>&1
SELECT t.id FROM tickets t WHERE t.account_id = 1 AND t.merged_into IS NULL AND t.id > 0
  AND t.status IN ('open') AND COALESCE(t.last_agent_reply_at, t.created_at) <= $now_ms - 86400000
  AND t.last_customer_message_at IS NOT NULL AND t.last_customer_message_at >= COALESCE(t.last_agent_reply_at, 0)
  AND NOT EXISTS (SELECT 1 FROM ticket_tags g WHERE g.ticket_id = t.id AND g.tag = 'do-not-follow-up')
  AND NOT EXISTS (SELECT 1 FROM rule_fires f WHERE f.rule_id = 1 AND f.ticket_id = t.id
      AND f.episode >= MAX(t.created_at, COALESCE(t.last_customer_message_at, 0), COALESCE(t.last_agent_reply_at, 0)))
  ORDER BY t.id LIMIT 5000;
SQL
