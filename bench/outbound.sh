#!/usr/bin/env bash
# Outbound benchmark (issue "Outbound: agents' replies leave from the brand's own address"):
# enqueues REPLIES replies (compose, DKIM-sign with RSA 2048 + Ed25519, store, queue) and
# lets the queue workers deliver them through a relay, Postfix's smtp-sink; measures DKIM
# signatures per second on their own too. The peer, in the same run: Postfix's smtp-source
# sending the same number of messages to the same smtp-sink with as many sessions as
# Postern has workers, one connection per message (as Postern's workers do).
#
#   bench/outbound.sh                  # 10,000 replies, 4 workers
#   REPLIES=1000 bench/outbound.sh     # quick run
#
# Environment: REPLIES (10000), WORKERS (4), SIZE (payload bytes for smtp-source, 400: about
# the size of a signed short reply).
set -euo pipefail
cd "$(dirname "$0")/.."
REPLIES="${REPLIES:-10000}"
WORKERS="${WORKERS:-4}"
SIZE="${SIZE:-400}"
sink=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
source_bin=$(command -v smtp-source || echo /usr/sbin/smtp-source)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
user_opt=()
[ "$(id -u)" -ne 0 ] || user_opt=(-u nobody)
"$sink" "${user_opt[@]}" "127.0.0.1:$port" 256 &
sink_pid=$!
trap 'kill $sink_pid 2>/dev/null || true' EXIT
sleep 0.5
nice cargo build --release --example outbound_bench >/dev/null 2>&1 || cargo build --release --example outbound_bench
postern=$(target/release/examples/outbound_bench "$port" "$REPLIES" "$WORKERS")
start=$(date +%s.%N)
"$source_bin" -s "$WORKERS" -m "$REPLIES" -l "$SIZE" -f support@brand.test -t customer@example.test "127.0.0.1:$port"
end=$(date +%s.%N)
peer=$(python3 -c "print(round($REPLIES / ($end - $start)))")
rev="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo '+uncommitted')"
echo "$postern" | python3 -c "
import json, sys
p = json.load(sys.stdin)
peer = $peer
print(f'build {\"$rev\"}, {p[\"replies\"]} replies, {p[\"workers\"]} workers, {$(nproc)} CPUs')
print('| measure | per second |')
print('|---|---|')
print(f'| DKIM, RSA 2048 signature alone | {p[\"dkim_rsa_signatures_per_sec\"]:.0f} |')
print(f'| DKIM, RSA + Ed25519 (what each reply gets) | {p[\"dkim_rsa_plus_ed25519_messages_per_sec\"]:.0f} |')
print(f'| replies enqueued (compose + sign + store + queue rows) | {p[\"enqueue_per_sec\"]:.0f} |')
print(f'| Postern deliveries to smtp-sink ({p[\"delivered\"]} delivered in {p[\"deliver_secs\"]} s) | {p[\"deliveries_per_sec\"]:.0f} |')
print(f'| peer: smtp-source to the same smtp-sink, {p[\"workers\"]} sessions, one connection per message | {peer} |')
print(f'| Postern / peer | {p[\"deliveries_per_sec\"] / peer:.0%} |')
"
