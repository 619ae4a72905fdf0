#!/usr/bin/env bash
# Intake with sender authentication on vs off (issue: Sender authentication).
# DKIM-signed 10 KB messages, 32 sessions with connection reuse, a real DNS server on loopback
# (dnslib's zone resolver) publishing the sender's SPF, DKIM key, DMARC policy and PTR.
# Prints messages per second for both runs and their ratio. MESSAGES=N to change the count.
set -euo pipefail
cd "$(dirname "$0")/.."
MESSAGES="${MESSAGES:-20000}"
SESSIONS="${SESSIONS:-32}"
scripts/install-deps.sh test >/dev/null
py=build/venv/bin/python
"$py" -c 'import dnslib' 2>/dev/null || build/venv/bin/pip install -q dnslib
cargo build --release --quiet
cargo build --release --quiet --example smtp_load

work="$(mktemp -d /tmp/postern-authbench.XXXXXX)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; [ -n "${KEEP:-}" ] || rm -rf "$work"; }
[ -n "${KEEP:-}" ] && echo "work dir: $work"
trap cleanup EXIT

free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The sender's key and a 10 KB message signed with it (dkimpy; h= leaves Message-ID out so
# the load generator can give every copy its own).
openssl genrsa -out "$work/key.pem" 2048 2>/dev/null
pub="$(openssl rsa -in "$work/key.pem" -pubout -outform DER 2>/dev/null | base64 -w0)"
"$py" - "$work" <<'PY'
import sys, dkim
work = sys.argv[1]
body = "".join("Line %04d of a realistic customer message about order 1234, with some text.\r\n" % i for i in range(128))
msg = ("From: Ana <ana@customer.bench.test>\r\nTo: support@acme.test\r\nSubject: Order 1234\r\n"
       "Date: Mon, 16 Nov 2026 10:00:00 +0000\r\n\r\n" + body).encode()
key = open(work + "/key.pem", "rb").read()
sig = dkim.sign(msg, b"s1", b"customer.bench.test", key, include_headers=[b"from", b"to", b"subject", b"date"])
open(work + "/message.eml", "wb").write(sig + msg)
PY
chunks="$(echo "$pub" | fold -w 200 | sed 's/.*/"&"/' | tr '\n' ' ')"
cat > "$work/zone.txt" <<ZONE
customer.bench.test. 300 IN TXT "v=spf1 ip4:127.0.0.1 -all"
_dmarc.customer.bench.test. 300 IN TXT "v=DMARC1; p=reject"
s1._domainkey.customer.bench.test. 300 IN TXT "v=DKIM1; k=rsa; p=" $chunks
load.bench.test. 300 IN TXT "v=spf1 ip4:127.0.0.1 -all"
1.0.0.127.in-addr.arpa. 300 IN PTR load.bench.test.
load.bench.test. 300 IN A 127.0.0.1
ZONE
dns_port="$(free_port)"
"$py" -m dnslib.zoneresolver --zone "$work/zone.txt" --port "$dns_port" --address 127.0.0.1 --tcp --log=-request,-reply,-truncated >>"$work/dns.log" 2>&1 &
pids+=($!)
"$py" -m dnslib.zoneresolver --zone "$work/zone.txt" --port "$dns_port" --address 127.0.0.1 --log=-request,-reply,-truncated >>"$work/dns.log" 2>&1 &
pids+=($!)
sleep 1

run() { # $1 = true|false (verification)
  local data="$work/data-$1" port http
  port="$(free_port)"; http="$(free_port)"
  export POSTERN__DATA_DIR="$data" POSTERN__SMTP__LISTEN="127.0.0.1:$port" POSTERN__HTTP__LISTEN="127.0.0.1:$http" \
         POSTERN__INBOUND__DOMAIN=in.bench.test POSTERN__SMTP__MAX_CONNECTIONS_PER_IP=100 \
         POSTERN__AUTH__ENABLED="$1" POSTERN__DNS__NAMESERVERS="127.0.0.1:$dns_port" POSTERN__DNS__TIMEOUT=2s \
         POSTERN__LOG__LEVEL=warn
  local rcpt
  rcpt="$(target/release/postern account create --name Bench --support-address support@acme.test --json | "$py" -c 'import json,sys; print(json.load(sys.stdin)["forwarding_address"])')"
  target/release/postern serve >"$work/serve-$1.log" 2>&1 &
  local pid=$!
  for _ in $(seq 50); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  local out
  out="$(target/release/examples/smtp_load "127.0.0.1:$port" "$rcpt" "$work/message.eml" "$SESSIONS" "$MESSAGES")"
  local rss
  rss="$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")"
  kill -TERM "$pid"; wait "$pid" || true
  # One stored message, to show what verification concluded.
  local verdict=""
  if [ "$1" = true ]; then
    verdict="$(target/release/postern ticket show 1 --json | "$py" -c 'import json,sys; m=json.load(sys.stdin)["messages"][0]; v=m["auth_results"]["verdicts"]; print("dkim=%s spf=%s dmarc=%s iprev=%s" % (v["dkim"][0]["result"], v["spf_mail_from"]["result"], v["dmarc"]["result"], v["iprev"]["result"]))')"
  fi
  echo "$out $rss $verdict"
}

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  messages: $MESSAGES  sessions: $SESSIONS  cores: $(nproc)"
# ORDER=on-first measures verification first, to see how much the order matters.
if [ "${ORDER:-off-first}" = on-first ]; then
  on=($(run true)); off=($(run false))
else
  off=($(run false)); on=($(run true))
fi
printf '%-22s %10s %10s %12s\n' "verification" "messages" "msg/s" "peak RSS KB"
printf '%-22s %10s %10s %12s\n' "off" "${off[0]}" "${off[2]}" "${off[3]}"
printf '%-22s %10s %10s %12s   %s\n' "on (DNS on loopback)" "${on[0]}" "${on[2]}" "${on[3]}" "${on[*]:4}"
"$py" -c "print('ratio on/off: %.2f' % (${on[2]} / ${off[2]}))"
