#!/usr/bin/env python3
"""Soak with faults: runs `postern serve` for a set time under mixed load while injecting
faults, then checks that nothing was lost, duplicated or corrupted.

    make soak                          # 30 minutes (SOAK_MINUTES=30)
    SOAK_MINUTES=3 make soak           # a short try
    build/venv/bin/python scripts/soak/soak.py --minutes 5 [--binary target/release/postern]

Load, all through real sockets on loopback: SMTP intake from many sessions (each from its
own 127.0.0.x address; unique Message-IDs, some replies to earlier messages, some that fire
rules), agents on the HTTP API (listings, details, notes, tags, status, replies to customers),
mailbox imports uploaded as API jobs, outbound delivery through a relay that flaps (Postfix's
smtp-sink, stopped and started, sometimes answering 4xx or 421), two rules (tag and note;
automated reply with a macro) and a DNS server on loopback (SPF, DMARC, iprev, DKIM of the
brand's sending domain).

Faults, one at a time at random intervals, in shuffled rounds: SIGKILL of postern and
restart, disk full (the data directory is on a small loop-mounted ext4 file system, filled
with a ballast file, then freed), DNS down (refused or silent), slowloris and idle-connection
floods on the SMTP and HTTP ports from many loopback addresses.

Then, after a drain: every Message-ID answered 250 is stored exactly once and byte for byte,
no honest message got a 5xx, replies join their parent's ticket, the rules ran once per
message, every reply the API acknowledged is delivered to the relay at least once and
duplicated only where a kill (or the peer's stop) fell in the delivery window, the queue is
drained, no ticket seen through the API is lost (also checked right after each restart),
acknowledged notes and tags are there, every import job completed with consistent counts,
PRAGMA integrity_check says ok, postern never died on its own and stopped cleanly on SIGTERM,
and its peak RSS stayed under the bound. Prints a summary, writes soak-result.json in the run
directory; exit status 1 when an invariant fails (2 when the soak itself could not run).
"""

import argparse
import glob
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
REPO = os.path.dirname(os.path.dirname(HERE))

import checks  # noqa: E402
from api_load import END_MARK, ApiClient, ApiLoad, Imports  # noqa: E402
from common import Journal, Log, Pacer, free_port, percentile, write_json  # noqa: E402
from faults import FaultInjector, FaultPlan, SinkFlapper  # noqa: E402
from procs import DataDisk, DnsServer, PosternServer, SmtpSink  # noqa: E402
from smtp_load import CUSTOMER_DOMAIN, SmtpLoad  # noqa: E402

BRAND_DOMAIN = "brand.soak.test"
SUPPORT = f"support@{BRAND_DOMAIN}"


def env_default(name, default, cast=str):
    v = os.environ.get(name)
    return cast(v) if v not in (None, "") else default


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=env_default("SOAK_MINUTES", 30.0, float),
                    help="length of the load and fault phase (SOAK_MINUTES, default 30)")
    ap.add_argument("--rate", type=float, default=env_default("SOAK_RATE", 20.0, float),
                    help="new SMTP messages per second, all sessions together (default 20)")
    ap.add_argument("--sessions", type=int, default=16, help="concurrent SMTP senders (default 16)")
    ap.add_argument("--api-rate", type=float, default=5.0, help="API requests per second (default 5)")
    ap.add_argument("--api-clients", type=int, default=3)
    ap.add_argument("--import-messages", type=int, default=2000,
                    help="messages per imported mailbox (default 2000)")
    ap.add_argument("--import-every", type=float, default=10.0,
                    help="minutes between import uploads; the first at 10%% of the run (default 10)")
    ap.add_argument("--import-rate", type=int, default=25,
                    help="imports.max_rate, messages per second, so that jobs live long enough to be hit (default 25)")
    ap.add_argument("--max-rss-mb", type=float, default=env_default("SOAK_MAX_RSS_MB", 400.0, float),
                    help="bound on postern's peak RSS (SOAK_MAX_RSS_MB, default 400)")
    ap.add_argument("--smtp-flood", type=int, default=600, help="connections per SMTP flood (default 600)")
    ap.add_argument("--http-flood", type=int, default=3000, help="connections per HTTP flood (default 3000)")
    ap.add_argument("--flood-per-ip", type=int, default=20,
                    help="flood connections per source address (default 20 = smtp.max_connections_per_ip)")
    ap.add_argument("--drip-seconds", type=float, default=10.0, help="slowloris: one byte per connection this often")
    ap.add_argument("--faults", default="kill,disk_full,dns_down,slowloris,idle_flood",
                    help="kinds of fault to inject, comma-separated (default: all; empty: none)")
    ap.add_argument("--warmup", type=float, default=20.0, help="seconds of load before the first fault")
    ap.add_argument("--fault-gap-min", type=float, default=10.0)
    ap.add_argument("--fault-gap-max", type=float, default=30.0)
    ap.add_argument("--disk-mb", type=int, default=2048, help="size of the data file system (default 2048)")
    ap.add_argument("--retry-grace", type=float, default=90.0,
                    help="seconds the senders keep retrying unacknowledged messages after the load (default 90)")
    ap.add_argument("--drain-seconds", type=float, default=300.0,
                    help="longest wait for the queue, the rules and the imports to finish (default 300)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--dir", default=None, help="run directory (default build/soak/<time>)")
    ap.add_argument("--binary", default=os.environ.get("POSTERN_BIN"),
                    help="postern binary to test (default: cargo build --release)")
    ap.add_argument("--extra-config", default=os.environ.get("SOAK_EXTRA_CONFIG"),
                    help="TOML appended to the soak's configuration (settings of newer builds)")
    ap.add_argument("--keep", action="store_true", help="keep the relay's dumps and the disk image")
    return ap.parse_args()


def build(log):
    log("cargo build --release")
    subprocess.run(["cargo", "build", "--release"], cwd=REPO, check=True)
    meta = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=REPO,
                          check=True, capture_output=True)
    return os.path.join(json.loads(meta.stdout)["target_directory"], "release", "postern")


def git_rev():
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "src", "migrations", "config"],
                               cwd=REPO).returncode != 0
        return rev + (" + uncommitted changes" if dirty else "")
    except OSError:
        return "unknown"


def write_config(path, a, ports, data_dir, extra):
    text = f"""# Written by scripts/soak/soak.py for one soak run.
data_dir = "{data_dir}"

[smtp]
listen = "127.0.0.1:{ports['smtp']}"
hostname = "mx.soak.test"

[smtp.tls]
enabled = true

[http]
listen = "127.0.0.1:{ports['http']}"

[inbound]
domain = "in.soak.test"

[dns]
nameservers = ["127.0.0.1:{ports['dns']}"]
timeout = "3s"

[rules]
poll_interval = "1s"

[imports]
max_rate = {a.import_rate}

[outbound]
mode = "relay"
workers = 4
# Short, so that the queue drains within the run: a killed worker's rows come back after
# the lease, deferred ones are retried within seconds.
lease = "45s"
attempt_timeout = "30s"
connect_timeout = "5s"
command_timeout = "20s"
poll_interval = "1s"
retry_schedule = ["2s", "5s", "10s", "15s"]

[outbound.relay]
host = "127.0.0.1"
port = {ports['sink']}
tls = "none"
"""
    if extra:
        text += "\n# --extra-config " + extra + "\n" + open(extra).read()
    with open(path, "w") as f:
        f.write(text)


def cli(binary, config, *args):
    r = subprocess.run([binary, "--config", config, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"postern {' '.join(args)}: {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout


def cli_json(binary, config, *args):
    return json.loads(cli(binary, config, *args, "--json"))


def setup_account(binary, config, run_dir, dns, log):
    acc = cli_json(binary, config, "account", "create", "--name", "Soak Shop",
                   "--support-address", SUPPORT)
    account, rcpt = acc["id"], acc["forwarding_address"]
    admin = cli_json(binary, config, "token", "create", "--account", str(account), "--role", "admin",
                     "--name", "soak-admin")["token"]
    agent = cli_json(binary, config, "token", "create", "--account", str(account), "--role", "agent",
                     "--name", "soak-agent")["token"]
    dom = cli_json(binary, config, "domain", "add", "--account", str(account), BRAND_DOMAIN)
    records = [
        {"name": CUSTOMER_DOMAIN, "type": "TXT", "value": "v=spf1 ip4:127.0.0.0/8 -all"},
        {"name": f"_dmarc.{CUSTOMER_DOMAIN}", "type": "TXT", "value": "v=DMARC1; p=none"},
    ]
    for r in dom["records"]:
        value = r["expected"]
        if r["kind"] == "spf":
            value = value if value.startswith("v=spf1") else f"v=spf1 {value} ~all"
        records.append({"name": r["name"], "type": "TXT", "value": value})
    with open(dns.zone_path, "w") as f:
        json.dump({"records": records, "reverse_suffix": CUSTOMER_DOMAIN}, f, indent=1)
    dns.start()
    check = cli_json(binary, config, "domain", "check", "--account", str(account), BRAND_DOMAIN)
    if not check.get("verified"):
        raise RuntimeError(f"the sending domain did not verify against the soak's DNS: {check}")
    macro = os.path.join(run_dir, "ack.j2")
    with open(macro, "w") as f:
        f.write("Hello {{ customer.email }},\n\nWe received your message about ticket "
                "{{ ticket.id }} and will answer soon.\n\n" + END_MARK + " automated --\n")
    cli(binary, config, "macros", "add", "--account", str(account), "--name", "soak-ack", "--file", macro)
    rules = {}
    for name, spec in (
        ("urgent", {"name": "soak: urgent", "trigger": "message_received", "enabled": True,
                    "conditions": {"field": "subject", "operator": "contains", "value": "urgent"},
                    "actions": [{"type": "add_tag", "tag": "urgent"},
                                {"type": "add_note", "text": "Urgent mail from {{ customer.email }}"}]}),
        ("auto", {"name": "soak: acknowledge", "trigger": "message_received", "enabled": True,
                  "conditions": {"field": "subject", "operator": "contains", "value": "[autoreply]"},
                  "actions": [{"type": "reply_with_macro", "macro": "soak-ack"}]}),
    ):
        path = os.path.join(run_dir, f"rule-{name}.json")
        with open(path, "w") as f:
            json.dump(spec, f)
        rules[name] = cli_json(binary, config, "rules", "add", "--account", str(account), "--file", path)["id"]
    log(f"account {account}, forwarding address {rcpt}, rules {rules}, domain {BRAND_DOMAIN} verified")
    return account, rcpt, admin, agent, rules


class Sampler:
    """Postern's RSS and open descriptors, once a second, across restarts."""

    def __init__(self, server, stop):
        self.server = server
        self.stop = stop
        self.samples = []  # (t, pid, rss kB, fds)
        self.thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def _run(self):
        while not self.stop.wait(1.0):
            self.server.check_alive()
            pid = self.server.pid
            if not pid:
                continue
            try:
                rss = next(int(line.split()[1]) for line in open(f"/proc/{pid}/status")
                           if line.startswith("VmRSS:"))
                fds = len(os.listdir(f"/proc/{pid}/fd"))
            except (OSError, StopIteration, ValueError):
                continue
            self.samples.append((time.time(), pid, rss, fds))


def wait_drained(db_path, account, deadline, imports, log):
    """Until the queue is empty, the rules worker caught up and the imports ended."""
    last_note = 0
    while time.monotonic() < deadline:
        try:
            db = checks.open_ro(db_path)
            q = db.execute("SELECT count(*) FROM outbound_queue WHERE account_id = ? AND status IN "
                           "('queued', 'deferred')", (account,)).fetchone()[0]
            cursor = db.execute("SELECT last_id FROM rule_cursors WHERE name = 'messages'").fetchone()
            newest = db.execute("SELECT max(id) FROM messages WHERE account_id = ? AND source = 'smtp'",
                                (account,)).fetchone()[0] or 0
            db.close()
        except Exception as e:  # the database is busy or being checkpointed: look again
            log(f"drain: {e}")
            time.sleep(2)
            continue
        rules_done = cursor is not None and cursor[0] >= newest
        imports_done = imports.all_done
        if q == 0 and rules_done and imports_done:
            return True
        if time.monotonic() - last_note > 15:
            log(f"drain: {q} queued or deferred, rules cursor {cursor[0] if cursor else None}/{newest}, "
                f"imports {'done' if imports_done else 'running'}")
            last_note = time.monotonic()
        time.sleep(2)
    return False


def load_figures(a, load, api, faults, t_start, t_end):
    mails = list(load.mails.values())
    acked = [m for m in mails if m.acked_at]
    minutes = {}
    for m in mails:
        k = int((m.created - t_start) // 60)
        minutes.setdefault(k, {"new": 0, "acked": 0})["new"] += 1
        if m.acked_at:
            minutes[k]["acked"] += 1
    full = [v for k, v in sorted(minutes.items()) if (k + 1) * 60 <= (t_end - t_start)]
    acked_by_minute = Counter(int((m.acked_at - t_start) // 60) for m in acked)
    target = a.rate * 60
    lat = [m.latency for m in acked if m.latency is not None]
    sessions = Counter(o for _, _, o in load.session_log)
    windows = []
    for f in faults.done:
        s = [o for t, _, o in load.session_log if f["start"] <= t <= f["end"]]
        acked_in = sum(1 for m in acked if f["start"] <= m.acked_at <= f["end"])
        windows.append({"fault": f["kind"], "seconds": round(f["end"] - f["start"], 1),
                        "sessions": len(s), "sessions_ok": s.count("ok"),
                        "sessions_refused": sum(1 for o in s if o != "ok"),
                        "messages_acked": acked_in})
    return {
        "smtp": {
            "target_per_minute": target, "messages_created": len(mails), "messages_acked": len(acked),
            "per_minute_created": [v["new"] for v in full],
            "per_minute_acked": [acked_by_minute.get(k, 0) for k in range(max(acked_by_minute, default=-1) + 1)],
            "per_minute_min_share_of_target": round(min((v["new"] / target for v in full), default=0), 3),
            "latency_250_seconds": {"p50": percentile(lat, 50), "p99": percentile(lat, 99),
                                    "max": max(lat) if lat else None},
            "sessions": dict(sessions),
            "attempt_outcomes": dict(Counter(o.split(" ")[0] if not o.startswith("conn") else "conn"
                                             for m in mails for _, o in m.attempts)),
            "kinds": dict(Counter(m.kind for m in mails)),
        },
        "api": api.summary(),
        "fault_windows": windows,
    }


def scan_log(path):
    panics, errors = [], Counter()
    with open(path, "rb") as f:
        for raw in f:
            line = raw.decode(errors="replace")
            if "panicked" in line or "stack overflow" in line:
                panics.append(line.strip()[:300])
            if " ERROR " in line or '"level":"ERROR"' in line:
                msg = re.sub(r"\d+", "N", line.split("ERROR", 1)[-1].strip())[:160]
                errors[msg] += 1
    return panics, errors


def main():
    a = parse_args()
    seed = a.seed if a.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = os.path.abspath(a.dir or os.path.join(REPO, "build", "soak", stamp))
    os.makedirs(run_dir, exist_ok=True)
    log = Log(os.path.join(run_dir, "soak.log"))
    journal = Journal()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    log(f"run directory {run_dir}, seed {seed}, {a.minutes} minutes, descriptors {hard}")

    binary_copy = binary = os.path.join(run_dir, "postern")
    binary_src = a.binary or build(log)
    shutil.copy2(binary_src, binary)  # a private copy: the shared target dir may be rebuilt meanwhile
    rev = git_rev() if not a.binary else f"binary {a.binary}"

    disk = DataDisk(os.path.join(run_dir, "mnt"), os.path.join(run_dir, "data.img"), a.disk_mb, journal, log)
    sink = dns = server = None
    stop_faults, stop_new, stop_all, stop_api, stop_bg = (threading.Event() for _ in range(5))
    result = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seed": seed,
              "build": rev, "args": vars(a), "run_dir": run_dir}
    interrupted = []
    status = 2
    signal.signal(signal.SIGTERM, lambda *_: interrupted.append(1) or stop_faults.set())
    try:
        disk.setup()
        result["disk"] = {"kind": disk.kind, "why_not": disk.why_not, "size_mb": a.disk_mb}
        log(f"data file system: {disk.kind}" + (f" ({disk.why_not})" if disk.why_not else ""))
        data_dir = os.path.join(disk.mount_point, "data")
        ports = {"smtp": free_port(), "http": free_port(), "sink": free_port(), "dns": free_port()}
        config = os.path.join(run_dir, "soak.toml")
        write_config(config, a, ports, data_dir, a.extra_config)
        dns = DnsServer(sys.executable, os.path.join(HERE, "dns_server.py"),
                        os.path.join(run_dir, "zone.json"), os.path.join(run_dir, "dns.port"),
                        os.path.join(run_dir, "dns.log"), journal)
        dns.port = ports["dns"]
        account, rcpt, admin, agent, rules = setup_account(binary, config, run_dir, dns, log)
        sink = SmtpSink(ports["sink"], os.path.join(run_dir, "sink"), os.path.join(run_dir, "sink.log"), journal)
        sink.set_mode("accept")
        server = PosternServer(binary, config, os.path.join(run_dir, "postern.log"), ports["smtp"],
                               ports["http"], journal, log)
        server.start()
        log(f"postern serving SMTP on {ports['smtp']}, HTTP on {ports['http']}; relay on {ports['sink']}, "
            f"DNS on {ports['dns']}")

        sampler = Sampler(server, stop_bg)
        sampler.thread.start()
        load = SmtpLoad(ports["smtp"], rcpt, a.sessions, Pacer(a.rate, stop_new), stop_new, stop_all,
                        run_id=f"{stamp}-{seed}", seed=rng.random(), log=log)
        api = ApiLoad(ports["http"], agent, a.api_clients, Pacer(a.api_rate, stop_api), stop_api,
                      seed=rng.random(), log=log)
        total = a.minutes * 60
        starts, t = [], 0.1 * total
        while t < total * 0.8 or not starts:
            starts.append(t)
            t += a.import_every * 60
        imports = Imports(ports["http"], admin, sys.executable, os.path.join(REPO, "bench", "gen_mailbox.py"),
                          run_dir, a.import_messages, starts, stop_bg, log, journal)
        faults = FaultInjector(FaultPlan(a), server, disk, dns, api, agent, rcpt, journal, log,
                               rng.random(), stop_faults)
        flapper = SinkFlapper(sink, rng.random(), stop_faults, log)

        t_start = time.time()
        t0 = time.monotonic()
        load.start()
        api.start()
        imports.start(t0)
        faults.start()
        flapper.start()
        log(f"load and faults for {a.minutes} minutes")
        next_note = 60
        while time.monotonic() - t0 < total and not interrupted:
            time.sleep(1)
            elapsed = time.monotonic() - t0
            if elapsed >= next_note:
                next_note += 60
                acked = len(load.acked)
                log(f"{elapsed / 60:.0f} min: {len(load.mails)} messages sent, {acked} answered 250, "
                    f"{len(faults.done)} faults, RSS {sampler.samples[-1][2] // 1024 if sampler.samples else '?'} MB")
        t_end = time.time()

        log("load phase over: stopping faults, then new mail; retrying what is unacknowledged")
        stop_faults.set()
        faults.join(180)
        flapper.join(30)
        if disk.can_fill:
            disk.free()
        if dns.state != "up":
            dns.up()
        server.check_alive()
        stop_new.set()
        grace_end = time.monotonic() + a.retry_grace
        while load.unfinished() and time.monotonic() < grace_end:
            time.sleep(1)
        stop_all.set()
        load.join(30)
        stop_api.set()
        api.join(30)
        imports.no_more_uploads.set()

        log("draining: queue, rules, imports")
        db_path = os.path.join(data_dir, "postern.db")
        drained = wait_drained(db_path, account, time.monotonic() + a.drain_seconds, imports, log)
        report = checks.Report()
        checks.check_api_writes(report, api, ApiClient(ports["http"], agent, "127.0.0.202"))

        log("stopping postern with SIGTERM")
        rc, took = server.stop()
        stop_bg.set()
        sink.stop()
        dns.stop()
        report.invariant("clean_shutdown", rc == 0, f"exit status {rc} after SIGTERM, {took:.1f} s")
        report.invariant("drained_in_time", drained,
                         f"queue, rules and imports {'finished' if drained else 'NOT finished'} "
                         f"within {a.drain_seconds:.0f} s after the load")

        log("checking the database")
        db = checks.open_ro(db_path)
        checks.check_integrity(report, db)
        rows = checks.check_intake(report, db, account, load)
        merged = checks.check_threading(report, db, account, load, rows)
        checks.check_rules(report, db, account, load, rows, merged, rules["urgent"], rules["auto"])
        checks.check_outbound(report, db, account, api, sink.dump_dir, journal)
        checks.check_tickets(report, db, account, api, faults)
        checks.check_imports(report, db, account, imports)
        db.close()

        panics, errors = scan_log(server.log_path)
        report.invariant("never_died_on_its_own", not server.crashes and not panics,
                         f"{len(server.crashes)} unexpected exits, {len(panics)} panics in the log",
                         crashes=server.crashes, panics=panics[:10])
        peak = max((s[2] for s in sampler.samples), default=0) / 1024
        report.invariant("rss_bounded", 0 < peak < a.max_rss_mb,
                         f"peak RSS {peak:.1f} MB (bound {a.max_rss_mb:.0f} MB), "
                         f"{len(sampler.samples)} samples; peak open descriptors "
                         f"{max((s[3] for s in sampler.samples), default=0)}")
        kinds = Counter(f["kind"] for f in faults.done)
        report.measure("faults", f"{len(faults.done)} faults: {dict(kinds)}; relay flaps: {flapper.counts}")

        result.update({
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "account": account, "ports": ports,
            "load": load_figures(a, load, api, faults, t_start, t_end),
            "faults": faults.done, "relay_flaps": flapper.counts,
            "imports": {"uploads": imports.uploads, "resumes": dict(imports.resumes),
                        "resume_answers": dict(imports.resume_answers)},
            "rss_mb": {"peak": round(peak, 1),
                       "per_minute_max": per_minute_max(sampler.samples, t_start)},
            "server": {"starts": server.starts, "crashes": server.crashes},
            "log_errors": dict(errors.most_common(15)),
            "checks": report.checks,
            "journal": journal.snapshot(),
        })
        write_json(os.path.join(run_dir, "soak-result.json"), result)
        print_summary(result, report)
        status = 1 if report.failed else 0
    except Exception as e:
        log(f"the soak could not run: {type(e).__name__}: {e}")
        import traceback
        traceback.print_exc()
        result["error"] = f"{type(e).__name__}: {e}"
        write_json(os.path.join(run_dir, "soak-result.json"), result)
        status = 2
    finally:
        for ev in (stop_faults, stop_new, stop_all, stop_api, stop_bg):
            ev.set()
        for thing in (server, sink, dns):
            try:
                if thing is not None:
                    thing.stop()
            except Exception as e:
                log(f"cleanup: {e}")
        keep_image = a.keep or status == 1
        disk.teardown(keep_image=keep_image)
        if keep_image and disk.can_fill and disk.kind != "tmpfs":
            log(f"the data file system is kept for inspection: mount -o loop {disk.image_path} {disk.mount_point}")
        if not keep_image and sink is not None:
            shutil.rmtree(sink.dump_dir, ignore_errors=True)
        if not a.keep:
            # The binary's copy and the generated mailboxes (bench/gen_mailbox.py makes them
            # again, byte for byte, from their seed).
            if os.path.exists(binary_copy):
                os.unlink(binary_copy)
            for d in glob.glob(os.path.join(run_dir, "mailbox-*")):
                shutil.rmtree(d, ignore_errors=True)
    log(f"results: {os.path.join(run_dir, 'soak-result.json')}")
    sys.exit(status)


def per_minute_max(samples, t_start):
    out = {}
    for t, _, rss, _ in samples:
        k = int((t - t_start) // 60)
        out[k] = max(out.get(k, 0), rss)
    return [round(out[k] / 1024, 1) for k in sorted(out)]


def print_summary(result, report):
    load = result["load"]["smtp"]
    print()
    print(f"Soak with faults: {result['args']['minutes']} minutes, build {result['build']}, seed {result['seed']}")
    print(f"SMTP: {load['messages_created']} messages sent, {load['messages_acked']} answered 250; "
          f"target {load['target_per_minute']:.0f}/min, lowest minute {load['per_minute_min_share_of_target']:.0%} "
          f"of it; 250 latency p50 {fmt(load['latency_250_seconds']['p50'])} s, "
          f"p99 {fmt(load['latency_250_seconds']['p99'])} s, max {fmt(load['latency_250_seconds']['max'])} s")
    print(f"sessions: {load['sessions']}")
    print(f"API: {result['load']['api']}")
    print(f"peak RSS {result['rss_mb']['peak']} MB; postern started {result['server']['starts']} times")
    print()
    print("honest SMTP during the faults (sessions that got through / all, messages answered 250):")
    per_kind = {}
    for w in result["load"]["fault_windows"]:
        k = per_kind.setdefault(w["fault"], [0, 0, 0, 0, 0.0])
        k[0] += 1
        k[1] += w["sessions_ok"]
        k[2] += w["sessions"]
        k[3] += w["messages_acked"]
        k[4] += w["seconds"]
    for kind, (n, ok, total, acked, secs) in sorted(per_kind.items()):
        print(f"  {kind:11} x{n}, {secs:5.0f} s: sessions {ok}/{total}, {acked} messages answered 250")
    print()
    for c in report.checks:
        mark = "PASS" if c["ok"] else ("FAIL" if c["kind"] == "invariant" else "    ")
        print(f"{mark}  {c['name']}: {c['summary']}")
    print()
    print("RESULT: " + ("all invariants hold" if not report.failed else
                        f"{len(report.failed)} invariant(s) FAILED: " + ", ".join(c["name"] for c in report.failed)))


def fmt(v):
    return "-" if v is None else f"{v:.3f}"


if __name__ == "__main__":
    main()
