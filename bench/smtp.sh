#!/usr/bin/env bash
# SMTP intake benchmark: Postern (release build, durable group commit) against Postfix's
# smtp-sink (accepts and discards), both driven by Postfix's smtp-source with the same
# parameters. Prints messages per second for both, their ratio, and Postern's peak RSS.
#
#   bench/smtp.sh                      # full run: 20,000 messages per configuration
#   MESSAGES=2000 bench/smtp.sh        # quick run
#
# Environment (all optional):
#   MESSAGES   messages per run                                  (default 20000)
#   SIZE       payload bytes per message, smtp-source -l; smtp-source adds ~170 bytes
#              of headers (From, To, Date, Message-Id)             (default 10240)
#   SESSIONS   parallel session counts to try                    (default "1 8 32")
#   REUSE      connection reuse cases to try (smtp-source -d)     (default "yes no")
#   ROUNDS     runs per configuration; the table shows medians   (default 1)
#   BACKLOG    smtp-sink listen backlog                          (default 256)
#   KEEP_TMP   1 keeps the temp dir (databases, logs) for inspection
#   BENCH_DNS  where Postern's SPF/DKIM/DMARC/iprev lookups go  (default stub)
#              stub:   a local DNS stub started by this script that answers NXDOMAIN (with
#                      an SOA, negative TTL 300 s) at once: auth runs, figures do not depend
#                      on the machine's resolver
#              system: Postern's default, the resolvers of /etc/resolv.conf
#              off:    auth.enabled=false, storage path only
#   BENCH_REV  label for the build measured (default: git commit, "+ uncommitted changes"
#              when src/ differs from HEAD at build time)
#   POSTERN_BIN a postern binary to measure instead of building one (it is copied first):
#              bench/compare.sh uses it to measure two builds side by side
#   PERF       a file name: records a `perf record -g -F 999` profile of the postern server
#              while smtp-source drives it, into PERF.<run name> (perf must be installed)
#
# smtp-source's -d means "Don't disconnect after sending a message; send the next message
# over the same connection": -d is connection REUSE. Without it every message has its own
# connection (EHLO, MAIL, RCPT, DATA, QUIT).
#
# Each configuration gets a fresh Postern process and data dir, so the figures do not depend
# on the order of the runs; Postern runs with its defaults except the listen addresses, the
# data dir, the inbound domain and smtp.max_connections_per_ip (raised to 100 so that 32
# sessions from 127.0.0.1 fit). Every run is checked: smtp-source must exit 0 (it aborts on
# any reply other than the expected 2xx/3xx), and Postern must have logged one "message
# accepted" and opened one ticket per message.
#
# Targets (issue "SMTP intake that never loses a message"): Postern >= 50% of smtp-sink's
# rate with 32 sessions and reuse; Postern peak RSS (VmHWM) < 100 MB.
set -euo pipefail

MESSAGES=${MESSAGES:-20000}
SIZE=${SIZE:-10240}
SESSIONS=${SESSIONS:-"1 8 32"}
ROUNDS=${ROUNDS:-1}
BACKLOG=${BACKLOG:-256}
KEEP_TMP=${KEEP_TMP:-0}
BENCH_DNS=${BENCH_DNS:-stub}
REUSE=${REUSE:-"yes no"}
case "$BENCH_DNS" in
stub | system | off) ;;
*)
    echo "BENCH_DNS must be stub, system or off" >&2
    exit 2
    ;;
esac
SENDER=sender@customer.bench.test
INBOUND_DOMAIN=in.bench.test

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=bench/lib.sh
. bench/lib.sh

# --- tools -------------------------------------------------------------------------------
PATH=$PATH:/usr/sbin:/sbin
if ! command -v smtp-source >/dev/null || ! command -v smtp-sink >/dev/null; then
    log "smtp-source/smtp-sink not found: installing the postfix package"
    # No mail configuration: only the two test programs are needed.
    echo "postfix postfix/main_mailer_type select No configuration" | as_root debconf-set-selections || true
    apt_install "postfix (smtp-source, smtp-sink)" postfix
    command -v smtp-source >/dev/null || die "smtp-source still missing after installing postfix"
fi
for tool in python3 cargo; do
    command -v "$tool" >/dev/null || die "$tool is required"
done

# --- build -------------------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/postern-bench.XXXXXX")
postern_binary "$TMP/postern"
BIN="$TMP/postern"

SERVER_PID=""
SINK_PID=""
DNS_PID=""
cleanup() {
    local pid
    for pid in $SERVER_PID $SINK_PID $DNS_PID; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    remove_tmp
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # port pid: until something accepts on 127.0.0.1:port
    local i
    for i in $(seq 1 200); do
        kill -0 "$2" 2>/dev/null || return 1
        if python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1",int(sys.argv[1])),0.2).close()' "$1" 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    return 1
}

# Runs smtp-source against a server and prints one tab-separated line:
#   wall seconds, server CPU s, smtp-source CPU s, CPU s of every other process on the host,
#   server peak RSS (kB).
# The last two tell how loaded a shared machine was during the run.
cat >"$TMP/drive.py" <<'EOF'
import os, resource, subprocess, sys, time
server_pid, out, args = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
tck = os.sysconf("SC_CLK_TCK")
def proc_cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tck
def host_busy():
    f = [int(x) for x in open("/proc/stat").readline().split()[1:9]]
    return (sum(f) - f[3] - f[4]) / tck  # all but idle and iowait
c0, h0 = proc_cpu(server_pid), host_busy()
r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
t0 = time.monotonic()
with open(out, "wb") as o:
    rc = subprocess.call(["smtp-source"] + args, stdout=o, stderr=subprocess.STDOUT)
wall = time.monotonic() - t0
r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
c1, h1 = proc_cpu(server_pid), host_busy()
if rc != 0:
    sys.stderr.write(open(out, errors="replace").read())
    sys.exit(f"smtp-source exited with {rc}")
src = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
rss = next(l.split()[1] for l in open(f"/proc/{server_pid}/status") if l.startswith("VmHWM:"))
print(f"{wall:.3f}\t{c1-c0:.2f}\t{src:.2f}\t{max(0.0,(h1-h0)-(c1-c0)-src):.2f}\t{rss}")
EOF

# DNS stub: every name is NXDOMAIN, with an SOA in the authority section (negative TTL
# 300 s, RFC 2308) so that a resolver may cache the answer. Counts the queries it gets.
cat >"$TMP/dns_stub.py" <<'EOF'
import collections, os, signal, socket, struct, sys
port_file, stats_file = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
s.bind(("127.0.0.1", 0))
mname, rname = b"\x01a\x0croot-servers\x03net\x00", b"\x05nstld\x00"
rdata = mname + rname + struct.pack(">IIIII", 1, 1800, 900, 604800, 300)
soa = b"\x00" + struct.pack(">HHIH", 6, 1, 300, len(rdata)) + rdata
counts = collections.Counter()
def dump(*_):
    with open(stats_file, "w") as f:
        for (qtype, name), n in counts.most_common():
            f.write(f"{n}\t{qtype}\t{name}\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, dump)
with open(port_file + ".tmp", "w") as f:
    f.write(str(s.getsockname()[1]))
os.rename(port_file + ".tmp", port_file)
while True:
    q, addr = s.recvfrom(4096)
    if len(q) < 17:
        continue
    i, labels = 12, []
    while i < len(q) and q[i]:
        labels.append(q[i + 1:i + 1 + q[i]].decode("ascii", "replace"))
        i += 1 + q[i]
    if i + 5 > len(q):
        continue
    counts[(struct.unpack(">H", q[i + 1:i + 3])[0], ".".join(labels))] += 1
    flags = 0x8000 | 0x0400 | (q[2] & 0x01) << 8 | 0x0080 | 3  # QR AA RD RA, NXDOMAIN
    s.sendto(q[:2] + struct.pack(">HHHHH", flags, 1, 0, 1, 0) + q[12:i + 5] + soa, addr)
EOF

start_dns_stub() { # dir: sets DNS_PID, exports POSTERN__DNS__NAMESERVERS
    python3 "$TMP/dns_stub.py" "$1/dns.port" "$1/dns.stats" &
    DNS_PID=$!
    local i
    for i in $(seq 1 100); do
        [ -s "$1/dns.port" ] && break
        sleep 0.05
    done
    [ -s "$1/dns.port" ] || die "the DNS stub did not start"
    export POSTERN__DNS__NAMESERVERS="127.0.0.1:$(cat "$1/dns.port")"
}

stop_dns_stub() { # dir: sets DNS_QUERIES, the number of queries received
    kill -TERM "$DNS_PID"
    wait "$DNS_PID" || true
    DNS_PID=""
    DNS_QUERIES=$(awk '{n += $1} END {print n + 0}' "$1/dns.stats")
}

drive() { # server_pid port sessions reuse rcpt outfile
    local args=(-l "$SIZE" -m "$MESSAGES" -s "$3" -f "$SENDER" -t "$5" -M bench.test)
    [ "$4" = yes ] && args=(-d "${args[@]}")
    python3 "$TMP/drive.py" "$1" "$6" "${args[@]}" "127.0.0.1:$2"
}

# --- smtp-sink (one instance for all runs) ---------------------------------------------------
SINK_PORT=$(free_port)
SINK_USER=()
if [ "$(id -u)" -eq 0 ]; then SINK_USER=(-u nobody); fi # smtp-sink refuses root without -u
smtp-sink "${SINK_USER[@]}" "127.0.0.1:$SINK_PORT" "$BACKLOG" >"$TMP/sink.log" 2>&1 &
SINK_PID=$!
wait_port "$SINK_PORT" "$SINK_PID" || {
    cat "$TMP/sink.log" >&2
    die "smtp-sink did not start"
}

# --- runs ----------------------------------------------------------------------------------
RESULTS="$TMP/results.tsv"
: >"$RESULTS"
export POSTERN__HTTP__LISTEN="127.0.0.1:0"
export POSTERN__INBOUND__DOMAIN="$INBOUND_DOMAIN"
export POSTERN__SMTP__MAX_CONNECTIONS_PER_IP=100
if [ "$BENCH_DNS" = off ]; then export POSTERN__AUTH__ENABLED=false; fi

for sessions in $SESSIONS; do
    for reuse in $REUSE; do
        for round in $(seq 1 "$ROUNDS"); do
            name="s${sessions}-reuse-${reuse}-r${round}"
            data="$TMP/$name"
            mkdir -p "$data"
            port=$(free_port)
            export POSTERN__DATA_DIR="$data"
            export POSTERN__SMTP__LISTEN="127.0.0.1:$port"

            created=$("$BIN" account create --name Bench --support-address support@bench.test --json)
            account=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$created")
            rcpt=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["forwarding_address"])' <<<"$created")

            if [ "$BENCH_DNS" = stub ]; then start_dns_stub "$data"; fi
            "$BIN" serve >"$data/server.log" 2>&1 &
            SERVER_PID=$!
            wait_port "$port" "$SERVER_PID" || {
                cat "$data/server.log" >&2
                die "postern did not start"
            }

            log "$name: postern, $MESSAGES messages to $rcpt"
            PERF_PID=""
            if [ -n "${PERF:-}" ]; then
                perf record -g -F 999 -p "$SERVER_PID" -o "$PERF.$name" >/dev/null 2>&1 &
                PERF_PID=$!
                sleep 1
            fi
            p=$(drive "$SERVER_PID" "$port" "$sessions" "$reuse" "$rcpt" "$data/source.out") ||
                die "smtp-source against postern failed ($name)"
            if [ -n "$PERF_PID" ]; then
                kill -INT "$PERF_PID"
                wait "$PERF_PID" || true
                log "$name: profile in $PERF.$name"
            fi
            kill -TERM "$SERVER_PID"
            wait "$SERVER_PID" || die "postern exited with an error on SIGTERM ($name)"
            SERVER_PID=""
            queries=-
            if [ "$BENCH_DNS" = stub ]; then
                stop_dns_stub "$data"
                queries=$DNS_QUERIES
            fi

            accepted=$(grep -c 'message accepted' "$data/server.log" || true)
            tickets=$("$BIN" tickets list --account "$account" --json |
                python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
            if [ "$accepted" -ne "$MESSAGES" ] || [ "$tickets" -ne "$MESSAGES" ]; then
                log "$name: WARNING: $accepted accepted, $tickets tickets, expected $MESSAGES"
            fi

            log "$name: smtp-sink"
            s=$(drive "$SINK_PID" "$SINK_PORT" "$sessions" "$reuse" "sink@$INBOUND_DOMAIN" "$TMP/$name.sink.out") ||
                die "smtp-source against smtp-sink failed ($name)"

            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$sessions" "$reuse" "$p" "$s" "$accepted" "$tickets" "$queries" >>"$RESULTS"
            log "$name: postern $(cut -f1 <<<"$p") s, smtp-sink $(cut -f1 <<<"$s") s"
            if [ "$KEEP_TMP" != 1 ]; then rm -rf "$data"; fi
        done
    done
done

# --- report --------------------------------------------------------------------------------
echo
echo "SMTP intake: $MESSAGES messages per run, payload $SIZE bytes (smtp-source -l), 127.0.0.1"
echo "postern $BENCH_REV; DNS: $BENCH_DNS; $(nproc) CPUs; kernel $(uname -r); finished $(date -u +%Y-%m-%dT%H:%MZ)"
echo
python3 - "$RESULTS" "$MESSAGES" "$ROUNDS" <<'EOF'
import statistics, sys
messages, rounds = int(sys.argv[2]), int(sys.argv[3])
configs = {}
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    if len(f) < 15:
        continue
    key = (int(f[0]), f[1])
    p = dict(wall=float(f[2]), cpu=float(f[3]), src=float(f[4]), other=float(f[5]), rss=int(f[6]))
    s = dict(wall=float(f[7]), cpu=float(f[8]), src=float(f[9]), other=float(f[10]))
    p["dns"] = f[14]
    configs.setdefault(key, []).append((p, s, int(f[12]), int(f[13])))

med = statistics.median
print(("median of %d rounds; " % rounds if rounds > 1 else "") + "msg/s = messages / wall time of smtp-source")
print()
print("| sessions | reuse (-d) | postern msg/s | smtp-sink msg/s | postern / smtp-sink | postern peak RSS | accepted / tickets |")
print("|---:|:---:|---:|---:|---:|---:|---:|")
target, max_rss, all_ok = None, 0, True
for (sessions, reuse), runs in configs.items():
    pr = med(messages / p["wall"] for p, _, _, _ in runs)
    sr = med(messages / s["wall"] for _, s, _, _ in runs)
    rss = max(p["rss"] for p, _, _, _ in runs)
    max_rss = max(max_rss, rss)
    ok = all(a == messages and t == messages for _, _, a, t in runs)
    all_ok &= ok
    acc = ", ".join(f"{a} / {t}" for _, _, a, t in runs)
    if sessions == 32 and reuse == "yes":
        target = pr / sr
    print(f"| {sessions} | {reuse} | {pr:.0f} | {sr:.0f} | {pr/sr:.1%} | {rss/1024:.1f} MB | {acc} |")
print()
print("CPU seconds during each run (server = postern or smtp-sink; other = every other process on the host):")
print()
print("| sessions | reuse | postern: wall s | server CPU | smtp-source CPU | other CPU | DNS queries | smtp-sink: wall s | server CPU | smtp-source CPU | other CPU |")
print("|---:|:---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for (sessions, reuse), runs in configs.items():
    for p, s, _, _ in runs:
        print(f"| {sessions} | {reuse} | {p['wall']:.2f} | {p['cpu']:.2f} | {p['src']:.2f} | {p['other']:.2f} | {p['dns']} "
              f"| {s['wall']:.2f} | {s['cpu']:.2f} | {s['src']:.2f} | {s['other']:.2f} |")
print()
print(f"peak RSS of postern (VmHWM, max over runs): {max_rss/1024:.1f} MB")
if target is not None:
    print(f"target 1, postern >= 50% of smtp-sink with 32 sessions and reuse: {target:.1%} -> {'met' if target >= 0.5 else 'NOT met'}")
print(f"target 2, peak RSS < 100 MB: {max_rss/1024:.1f} MB -> {'met' if max_rss < 100 * 1024 else 'NOT met'}")
print(f"every message accepted and stored as its own ticket: {'yes' if all_ok else 'NO'}")
EOF
