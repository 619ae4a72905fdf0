"""The invariants, checked at the end of the run on the database (read-only), the relay's
dumps and what the clients recorded. Each check is an invariant (fails the run) or a
measurement (reported)."""

import glob
import json
import os
import re
import sqlite3
from collections import Counter, defaultdict

from api_load import END_MARK

MID_HEADER = re.compile(rb"(?im)^Message-ID:[ \t]*<([^>\r\n]+)>")


class Report:
    def __init__(self):
        self.checks = []

    def invariant(self, name, ok, summary, **detail):
        self.checks.append({"name": name, "kind": "invariant", "ok": bool(ok), "summary": summary,
                            **detail})

    def measure(self, name, summary, **detail):
        self.checks.append({"name": name, "kind": "measurement", "ok": None, "summary": summary,
                            **detail})

    @property
    def failed(self):
        return [c for c in self.checks if c["kind"] == "invariant" and not c["ok"]]


def open_ro(db_path):
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


def check_integrity(report, db):
    rows = [r[0] for r in db.execute("PRAGMA integrity_check")]
    report.invariant("integrity_check", rows == ["ok"], f"PRAGMA integrity_check: {rows[:5]}")
    fk = db.execute("PRAGMA foreign_key_check").fetchall()
    report.invariant("foreign_key_check", not fk,
                     f"PRAGMA foreign_key_check: {len(fk)} violation(s)",
                     sample=[tuple(r) for r in fk[:10]])


def resolve_ticket(merged, tid):
    seen = set()
    while tid in merged and merged[tid] is not None and tid not in seen:
        seen.add(tid)
        tid = merged[tid]
    return tid


def check_intake(report, db, account, load):
    mails = list(load.mails.values())
    acked = [m for m in mails if m.acked_at is not None]
    rows = defaultdict(list)
    for r in db.execute("SELECT id, message_id, ticket_id, raw_sha256, subject FROM messages "
                        "WHERE account_id = ? AND source = 'smtp' AND direction = 'inbound'",
                        (account,)):
        rows[r["message_id"]].append(r)
    quarantined = Counter()
    for r in db.execute("SELECT raw_sha256 FROM quarantine WHERE account_id = ? OR account_id IS NULL",
                        (account,)):
        quarantined[r[0]] += 1
    missing, duplicated, altered, in_quarantine = [], [], [], []
    for m in acked:
        found = rows.get(m.mid, [])
        digest = m.digest
        if not found:
            if quarantined.get(digest):
                in_quarantine.append(m.mid)
            else:
                missing.append({"mid": m.mid, "acked_at": m.acked_at, "queued_as": m.queued_as,
                                "attempts": m.attempts[-5:]})
        elif len(found) > 1:
            duplicated.append({"mid": m.mid, "rows": [r["id"] for r in found]})
        elif found[0]["raw_sha256"] != digest:
            altered.append(m.mid)
    unacked_stored = [mid for mid in rows if mid in load.mails and load.mails[mid].acked_at is None]
    strangers = [mid for mid in rows if mid not in load.mails]
    report.invariant(
        "every_250_stored_exactly_once",
        not missing and not duplicated and not in_quarantine and not strangers,
        f"{len(acked)} messages answered 250: {len(acked) - len(missing) - len(in_quarantine)} stored, "
        f"{len(missing)} missing, {len(duplicated)} stored twice or more, "
        f"{len(in_quarantine)} quarantined, {len(strangers)} stored rows nobody sent",
        missing=missing[:20], duplicated=duplicated[:20], quarantined=in_quarantine[:20],
        strangers=strangers[:20])
    report.invariant("stored_bytes_as_sent", not altered,
                     f"{len(altered)} stored messages whose raw bytes differ from what was sent",
                     sample=altered[:20])
    refused = [{"mid": m.mid, "final": m.final} for m in mails if m.final]
    report.invariant("no_honest_message_refused", not refused,
                     f"{len(refused)} honest messages refused with a 5xx", sample=refused[:20])
    never = [m for m in mails if m.acked_at is None and not m.final]
    report.measure("unacknowledged_at_end",
                   f"{len(never)} messages never answered 250 before the senders gave up "
                   f"({len([m for m in never if m.mid in rows])} of them stored anyway: a commit "
                   f"whose 250 was lost to a kill; a retry would get 250 as a duplicate)",
                   stored_without_250=len(unacked_stored))
    return rows


def check_threading(report, db, account, load, rows):
    merged = {r[0]: r[1] for r in db.execute(
        "SELECT id, merged_into FROM tickets WHERE account_id = ?", (account,))}
    wrong, checked = [], 0
    for m in load.mails.values():
        if m.kind != "reply" or m.acked_at is None or m.mid not in rows or m.parent not in rows:
            continue
        checked += 1
        mine = resolve_ticket(merged, rows[m.mid][0]["ticket_id"])
        theirs = resolve_ticket(merged, rows[m.parent][0]["ticket_id"])
        if mine != theirs:
            wrong.append({"mid": m.mid, "ticket": mine, "parent": m.parent, "parent_ticket": theirs})
    report.invariant("replies_join_their_ticket", not wrong,
                     f"{checked} replies (In-Reply-To a stored message of the same customer): "
                     f"{len(wrong)} in another ticket than their parent", sample=wrong[:20])
    return merged


def _actions(run):
    try:
        return [(a.get("action", {}).get("type"), a.get("outcome"))
                for a in json.loads(run["actions"] or "[]")]
    except (ValueError, AttributeError):
        return []


def check_rules(report, db, account, load, rows, merged, urgent_rule, auto_rule):
    runs = defaultdict(list)
    for r in db.execute("SELECT * FROM rule_runs WHERE account_id = ? AND rule_id IN (?, ?)",
                        (account, urgent_rule, auto_rule)):
        runs[(r["rule_id"], r["message_id"])].append(r)
    tags = defaultdict(set)
    for r in db.execute("SELECT t.ticket_id, t.tag FROM ticket_tags t JOIN tickets k ON k.id = t.ticket_id "
                        "WHERE k.account_id = ?", (account,)):
        tags[r[0]].add(r[1])
    rule_notes = Counter(r[0] for r in db.execute(
        "SELECT ticket_id FROM messages WHERE account_id = ? AND direction = 'note' AND source = 'rule'",
        (account,)))
    notes_done = Counter()
    bad_urgent, untagged, errors = [], [], []
    urgent = [(mid, rs[0]) for mid, rs in rows.items() if "urgent" in (rs[0]["subject"] or "").lower()]
    for mid, row in urgent:
        all_runs = runs.get((urgent_rule, row["id"]), [])
        matched = [r for r in all_runs if r["matched"]]
        if len(matched) != 1:
            bad_urgent.append({"mid": mid, "message": row["id"], "matched_runs": len(matched)})
        errors += [{"message": row["id"], "error": r["error"][:200]} for r in all_runs if r["error"]]
        for r in matched:
            if ("add_note", "done") in _actions(r):
                notes_done[r["ticket_id"]] += 1
        if "urgent" not in tags.get(resolve_ticket(merged, row["ticket_id"]), set()) and \
                "urgent" not in tags.get(row["ticket_id"], set()):
            untagged.append(row["ticket_id"])
    note_mismatch = [{"ticket": t, "notes": rule_notes.get(t, 0), "runs_with_note": n}
                     for t, n in notes_done.items() if rule_notes.get(t, 0) != n]
    note_mismatch += [{"ticket": t, "notes": n, "runs_with_note": 0}
                      for t, n in rule_notes.items() if t not in notes_done]
    report.invariant(
        "rule_ran_once_per_message",
        not bad_urgent and not untagged and not note_mismatch and not errors,
        f"{len(urgent)} stored messages matching the tag-and-note rule: {len(bad_urgent)} without "
        f"exactly one matched run, {len(untagged)} tickets without the tag, {len(note_mismatch)} "
        f"tickets whose rule notes differ from the runs that wrote one, {len(errors)} runs with an error",
        not_once=bad_urgent[:20], untagged=untagged[:20], notes=note_mismatch[:20], errors=errors[:20])

    auto_replies = Counter(r[0] for r in db.execute(
        "SELECT ticket_id FROM messages WHERE account_id = ? AND direction = 'outbound' AND author_rule_id = ?",
        (account, auto_rule)))
    bad_auto = []
    autos = [(mid, rs[0]) for mid, rs in rows.items()
             if mid in load.mails and load.mails[mid].kind == "autoreply"]
    for mid, row in autos:
        matched = [r for r in runs.get((auto_rule, row["id"]), []) if r["matched"]]
        replies = auto_replies.get(row["ticket_id"], 0)
        if len(matched) != 1 or replies != 1:
            bad_auto.append({"mid": mid, "message": row["id"], "matched_runs": len(matched),
                             "automated_replies_in_ticket": replies,
                             "actions": [_actions(r) for r in matched]})
    report.invariant("automated_reply_once_per_message", not bad_auto,
                     f"{len(autos)} stored messages matching the auto-reply rule: {len(bad_auto)} "
                     f"without exactly one run and one automated reply", sample=bad_auto[:20])


def read_sink(dump_dir):
    """Message-ID -> [(time received, complete)] from smtp-sink's dump files."""
    got = defaultdict(list)
    partial = 0
    for path in glob.glob(os.path.join(dump_dir, "*")):
        if not os.path.isfile(path):
            continue
        data = open(path, "rb").read()
        m = MID_HEADER.search(data)
        complete = END_MARK.encode() in data
        if not complete:
            partial += 1
        if m:
            got[m.group(1).decode(errors="replace")].append((os.path.getmtime(path), complete))
    return got, partial


def check_outbound(report, db, account, api, sink_dir, journal):
    rows = db.execute(
        "SELECT m.id, m.message_id, m.ticket_id, m.author_rule_id, q.id AS qid, q.status, "
        "q.attempts, q.last_error FROM messages m LEFT JOIN outbound_queue q ON q.message_id = m.id "
        "WHERE m.account_id = ? AND m.direction = 'outbound' AND m.source != 'import'",
        (account,)).fetchall()
    by_mid = {r["message_id"]: r for r in rows}
    lost = [r for r in api.replies if r["message_id"] not in by_mid]
    report.invariant("acknowledged_replies_kept", not lost,
                     f"{len(api.replies)} replies answered 202 by the API: {len(lost)} not in the database",
                     sample=lost[:20])
    statuses = Counter(r["status"] or "no queue row" for r in rows)
    undelivered = [dict(r) for r in rows if r["status"] != "delivered"]
    attempts = Counter(r["attempts"] for r in rows if r["status"])
    report.invariant("queue_drained", not undelivered,
                     f"{len(rows)} outbound messages ({sum(1 for r in rows if r['author_rule_id'])} "
                     f"automated): {dict(statuses)}", undelivered=undelivered[:20],
                     attempts_histogram=dict(sorted(attempts.items())))
    got, partial = read_sink(sink_dir)
    complete = {mid: [t for t, c in v if c] for mid, v in got.items()}
    never = [r["message_id"] for r in rows if r["status"] == "delivered" and not complete.get(r["message_id"])]
    phantom = [mid for mid, ts in complete.items() if ts and mid not in by_mid]
    kills = [e["t"] for e in journal.of("kill")]
    sink_stops = [e["t"] for e in journal.of("sink_stop")]
    fills = [e["t"] for e in journal.of("disk_full")]
    frees = [e["t"] for e in journal.of("disk_freed")]
    full_windows = [(a, min([b for b in frees if b >= a] or [a + 3600])) for a in fills]
    explained, unexplained = [], []
    for mid, ts in complete.items():
        if len(ts) < 2:
            continue
        ts = sorted(ts)
        # Legitimate: Postern killed after the peer's 250 and before it recorded the delivery,
        # or the peer stopped after taking the data and before answering.
        by_kill = any(ts[0] - 1 <= k <= ts[-1] + 1 for k in kills)
        by_peer = any(ts[0] - 1 <= s <= ts[0] + 2 for s in sink_stops)
        # Not legitimate, but named: the delivery could not be recorded on a full disk, so
        # the row's lease ran out and another attempt sent it again.
        in_full = any(a - 1 <= ts[0] <= b + 1 for a, b in full_windows)
        (explained if by_kill or by_peer else unexplained).append(
            {"mid": mid, "copies": len(ts), "by_kill": by_kill, "by_peer_stop": by_peer,
             "first_copy_while_disk_full": in_full, "received_at": ts})
    report.invariant("delivered_exactly_once", not never and not phantom and not unexplained,
                     f"relay received {sum(len(v) for v in complete.values())} complete messages "
                     f"({len(complete)} distinct, {partial} partial transfers cut by the peer's stops); "
                     f"{len(never)} marked delivered but never received, {len(phantom)} received but unknown, "
                     f"{len(explained)} duplicated after a kill or a peer stop in the delivery window, "
                     f"{len(unexplained)} duplicated without one "
                     f"({sum(1 for u in unexplained if u['first_copy_while_disk_full'])} of them "
                     f"first delivered while the disk was full)",
                     never_received=never[:20], phantom=phantom[:20], duplicates_explained=explained[:50],
                     duplicates_unexplained=unexplained[:20])


def check_tickets(report, db, account, api, faults):
    existing = {r[0] for r in db.execute("SELECT id FROM tickets WHERE account_id = ?", (account,))}
    gone = [t for t in api.tickets_seen if t not in existing]
    after_kill = [m for f in faults.done if f["kind"] == "kill" for m in f.get("tickets_missing", [])]
    checked = sum(f.get("tickets_checked", 0) for f in faults.done if f["kind"] == "kill")
    report.invariant("no_ticket_lost", not gone and not after_kill,
                     f"{len(api.tickets_seen)} tickets seen through the API: {len(gone)} missing at the end; "
                     f"{checked} looked up again after kills: {len(after_kill)} not found",
                     missing=gone[:20], missing_after_kill=after_kill[:20])


def check_imports(report, db, account, imports):
    jobs = db.execute("SELECT * FROM import_jobs WHERE account_id = ?", (account,)).fetchall()
    per_job = Counter(r[0] for r in db.execute(
        "SELECT import_job_id FROM messages WHERE account_id = ? AND import_job_id IS NOT NULL", (account,)))
    expected = {u["job"]: u["expected_messages"] for u in imports.uploads if u["job"]}
    bad = []
    for j in jobs:
        problems = []
        if j["status"] != "completed":
            problems.append(f"status {j['status']} ({(j['error'] or '')[:120]})")
        if j["imported"] + j["duplicates"] + j["quarantined"] + j["skipped"] != j["seen"]:
            problems.append("imported + duplicates + quarantined + skipped != seen")
        if j["id"] in expected and j["seen"] != expected[j["id"]]:
            problems.append(f"seen {j['seen']}, the mailbox has {expected[j['id']]}")
        if per_job.get(j["id"], 0) != j["imported"]:
            problems.append(f"{per_job.get(j['id'], 0)} messages in the database, imported says {j['imported']}")
        if problems:
            bad.append({"job": j["id"], "problems": problems})
    uploads_failed = [u for u in imports.uploads if not u["job"]]
    report.invariant("imports_complete_exactly_once", not bad and not uploads_failed and jobs,
                     f"{len(jobs)} import jobs, {sum(imports.resumes.values())} resumes asked: "
                     f"{len(bad)} incomplete or inconsistent, {len(uploads_failed)} uploads never accepted",
                     jobs=[{k: j[k] for k in ('id', 'status', 'seen', 'imported', 'duplicates', 'quarantined')}
                           for j in jobs], problems=bad[:20], resumes=dict(imports.resumes))


def check_api_writes(report, api, client):
    """Notes and tags the API acknowledged are on their tickets (read back through the API)."""
    by_ticket = defaultdict(lambda: {"notes": set(), "tags": set()})
    for tid, marker in api.notes:
        by_ticket[tid]["notes"].add(marker)
    for tid, tag in api.tags:
        by_ticket[tid]["tags"].add(tag)
    missing_notes, missing_tags, unreadable = [], [], []
    for tid, want in by_ticket.items():
        status, body = None, None
        for _ in range(3):
            status, body = client.request("GET", f"/api/v1/tickets/{tid}")
            if status == 200:
                break
        if status != 200 or not body:
            unreadable.append((tid, status))
            continue
        texts = " ".join((m.get("text") or "") for m in body.get("messages", []) if m.get("direction") == "note")
        missing_notes += [(tid, n) for n in want["notes"] if n not in texts]
        missing_tags += [(tid, t) for t in want["tags"] if t not in set(body.get("tags", []))]
    report.invariant("acknowledged_notes_and_tags_kept", not missing_notes and not missing_tags and not unreadable,
                     f"{len(api.notes)} notes (201) and {len(api.tags)} tags (200) acknowledged: "
                     f"{len(missing_notes)} notes and {len(missing_tags)} tags missing, "
                     f"{len(unreadable)} tickets unreadable",
                     notes=missing_notes[:20], tags=missing_tags[:20], unreadable=unreadable[:20])
