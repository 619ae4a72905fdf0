"""HTTP API load: agents reading and working on tickets (listings, details, notes, tags,
status, replies to customers), and an admin importing mailboxes as background jobs. Every
answer that promises something (201 note, 200 tag, 202 reply, 202 import) is recorded, to be
checked at the end."""

import http.client
import json
import os
import random
import subprocess
import threading
import time
import uuid
from collections import Counter

from common import loopback

END_MARK = "-- soak end"


class ApiClient:
    """One keep-alive connection from one source address; reconnects after errors."""

    def __init__(self, port, token, source):
        self.port = port
        self.token = token
        self.source = source
        self.conn = None

    def request(self, method, path, body=None, content_type="application/json", timeout=60):
        """Returns (status, parsed JSON or None); status is a string for connection errors."""
        headers = {"Authorization": f"Bearer {self.token}"}
        if body is not None:
            if not isinstance(body, (bytes, bytearray)) and not hasattr(body, "read"):
                body = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout,
                                                       source_address=(self.source, 0))
            try:
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                try:
                    return resp.status, json.loads(data) if data else None
                except ValueError:
                    return resp.status, None
            except (OSError, http.client.HTTPException) as e:
                self.close()
                # A stale keep-alive connection fails at once: retry once, only for reads.
                if attempt == 0 and method == "GET" and isinstance(e, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)):
                    continue
                return f"conn: {type(e).__name__}", None
        return "conn: retries", None

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
        self.conn = None


class ApiLoad:
    """Agents at `rate` requests per second over `clients` connections."""

    def __init__(self, port, token, clients, rate_pacer, stop, seed, log, source_net=0, source_first=100):
        self.port = port
        self.token = token
        self.clients = clients
        self.pacer = rate_pacer
        self.stop = stop
        self.rng = random.Random(seed)
        self.log = log
        self.source_net = source_net
        self.source_first = source_first
        self.lock = threading.Lock()
        self.tickets_seen = {}     # ticket id -> first time seen
        self.reply_targets = []    # ticket ids with a customer
        self.notes = []            # (ticket, marker)
        self.tags = []             # (ticket, tag)
        self.replies = []          # dict(ticket, message_id, marker, t)
        self.statuses = Counter()  # "METHOD endpoint status" -> count
        self.latencies = []        # (t, seconds) of successful reads
        self.threads = []

    def start(self):
        for i in range(self.clients):
            t = threading.Thread(target=self._worker, args=(i,), name=f"api-{i}", daemon=True)
            t.start()
            self.threads.append(t)

    def join(self, timeout):
        end = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, end - time.monotonic()))

    def _count(self, method, endpoint, status):
        with self.lock:
            self.statuses[f"{method} {endpoint} {status}"] += 1

    def _pick(self, rng, with_customer=False):
        with self.lock:
            pool = self.reply_targets if with_customer else list(self.tickets_seen)
            if not pool:
                return None
            return pool[rng.randrange(len(pool))]

    def _worker(self, i):
        rng = random.Random(self.rng.random())
        api = ApiClient(self.port, self.token, loopback(self.source_net, self.source_first + i - 1))
        actions = [("list", 30), ("detail", 25), ("note", 12), ("tag", 10), ("status", 8),
                   ("reply", 10), ("events", 3), ("metrics", 2)]
        names = [a for a, _ in actions]
        weights = [w for _, w in actions]
        while self.pacer.wait():
            action = rng.choices(names, weights)[0]
            try:
                getattr(self, "_" + action)(api, rng)
            except Exception as e:  # a bug in the load must not end the soak silently
                self.log(f"api load {action}: {type(e).__name__}: {e}")
        api.close()

    def _list(self, api, rng):
        path = "/api/v1/tickets?limit=50"
        if rng.random() < 0.3:
            path += "&status=open"
        for _ in range(rng.randint(1, 3)):
            t0 = time.monotonic()
            status, body = api.request("GET", path)
            self._count("GET", "/tickets", status)
            if status != 200 or not body:
                return
            self.latencies.append((time.time(), time.monotonic() - t0))
            now = time.time()
            with self.lock:
                for item in body.get("items", []):
                    if item["id"] not in self.tickets_seen:
                        self.tickets_seen[item["id"]] = now
                        if item.get("customer"):
                            self.reply_targets.append(item["id"])
            cursor = body.get("next_cursor")
            if not cursor:
                return
            path = f"/api/v1/tickets?limit=50&cursor={cursor}"

    def _detail(self, api, rng):
        tid = self._pick(rng)
        if tid is None:
            return
        t0 = time.monotonic()
        status, _ = api.request("GET", f"/api/v1/tickets/{tid}")
        self._count("GET", "/tickets/{id}", status)
        if status == 200:
            self.latencies.append((time.time(), time.monotonic() - t0))

    def _events(self, api, rng):
        tid = self._pick(rng)
        if tid is not None:
            status, _ = api.request("GET", f"/api/v1/tickets/{tid}/events")
            self._count("GET", "/tickets/{id}/events", status)

    def _metrics(self, api, rng):
        status, _ = api.request("GET", "/metrics")
        self._count("GET", "/metrics", status)

    def _note(self, api, rng):
        tid = self._pick(rng)
        if tid is None:
            return
        marker = f"soak-note-{uuid.uuid4().hex}"
        status, _ = api.request("POST", f"/api/v1/tickets/{tid}/notes",
                                {"body": f"Checked with the carrier. {marker}"})
        self._count("POST", "/tickets/{id}/notes", status)
        if status == 201:
            with self.lock:
                self.notes.append((tid, marker))

    def _tag(self, api, rng):
        tid = self._pick(rng)
        if tid is None:
            return
        tag = f"soak-{rng.randrange(20)}"
        status, _ = api.request("POST", f"/api/v1/tickets/{tid}/tags", {"tag": tag})
        self._count("POST", "/tickets/{id}/tags", status)
        if status == 200:
            with self.lock:
                self.tags.append((tid, tag))

    def _status(self, api, rng):
        tid = self._pick(rng)
        if tid is None:
            return
        new = rng.choice(["open", "pending", "closed"])
        status, _ = api.request("PATCH", f"/api/v1/tickets/{tid}", {"status": new})
        self._count("PATCH", "/tickets/{id}", status)

    def _reply(self, api, rng):
        tid = self._pick(rng, with_customer=True)
        if tid is None:
            return
        marker = uuid.uuid4().hex
        text = (f"Hello,\n\nYour parcel left our warehouse this morning.\n"
                f"Reference soak-reply-{marker}\n\n{END_MARK} {marker} --\n")
        t = time.time()
        status, body = api.request("POST", f"/api/v1/tickets/{tid}/replies", {"text": text})
        self._count("POST", "/tickets/{id}/replies", status)
        if status == 202 and body:
            with self.lock:
                self.replies.append({"ticket": tid, "message_id": body.get("message_id", "").strip("<>"),
                                     "marker": marker, "t": t})

    def summary(self):
        with self.lock:
            return {"statuses": dict(sorted(self.statuses.items())),
                    "tickets_seen": len(self.tickets_seen), "notes_acknowledged": len(self.notes),
                    "tags_acknowledged": len(self.tags), "replies_acknowledged": len(self.replies)}


class Imports:
    """Uploads generated mailboxes (bench/gen_mailbox.py) as import jobs at the given times,
    and resumes every job of the account that a fault stopped (interrupted by a kill, failed
    on a full disk), as an admin would."""

    def __init__(self, port, admin_token, python, generator, work_dir, messages, start_times,
                 stop, log, journal, source="127.0.0.200"):
        self.api = ApiClient(port, admin_token, source)
        self.python = python
        self.generator = generator
        self.work_dir = work_dir
        self.messages = messages
        self.start_times = sorted(start_times)
        self.stop = stop
        self.log = log
        self.journal = journal
        self.uploads = []          # dict(seed, job id, expected, attempts)
        self.resumes = Counter()   # job id -> resumes asked
        self.resume_answers = Counter()
        self.jobs = {}             # job id -> last view
        self.thread = None
        self.no_more_uploads = threading.Event()
        self.all_done = False      # every job completed (set by watch())

    def start(self, t0):
        self.t0 = t0
        self.thread = threading.Thread(target=self._run, name="imports", daemon=True)
        self.thread.start()

    def _mailbox(self, seed):
        out = os.path.join(self.work_dir, f"mailbox-{seed}")
        if not os.path.exists(os.path.join(out, "expected.json")):
            subprocess.run([self.python, self.generator, "--out", out, "--seed", str(seed),
                            "--messages", str(self.messages), "--quiet"], check=True)
        expected = json.load(open(os.path.join(out, "expected.json")))
        return os.path.join(out, "mailbox.mbox"), expected

    def _run(self):
        """Uploads on schedule (until told to stop uploading), and watches the jobs."""
        pending = list(self.start_times)
        seed = 100
        while not self.stop.is_set():
            if self.no_more_uploads.is_set():
                pending = []
            if pending and time.monotonic() - self.t0 >= pending[0]:
                pending.pop(0)
                seed += 1
                self._upload(seed)
            self.all_done = self.watch() and not pending
            self.stop.wait(2)

    def _upload(self, seed):
        path, expected = self._mailbox(seed)
        record = {"seed": seed, "job": None, "expected_messages": expected["messages"],
                  "attempts": []}
        self.uploads.append(record)
        for _ in range(30):
            with open(path, "rb") as f:
                status, body = self.api.request(
                    "POST", f"/api/v1/imports/upload?kind=mbox&name=soak-{seed}.mbox", body=f,
                    content_type="application/octet-stream", timeout=300)
            record["attempts"].append(status)
            if status == 202 and body:
                record["job"] = body["id"]
                self.journal.add("import_started", job=body["id"], seed=seed)
                self.log(f"import job {body['id']} started ({expected['messages']} messages)")
                return
            if self.stop.wait(3):
                return
        self.log(f"import of mailbox {seed}: upload refused 30 times: {record['attempts'][-5:]}")

    def watch(self):
        """Looks at every job; resumes the stopped ones. Returns True when none is left to run."""
        status, body = self.api.request("GET", "/api/v1/imports?limit=100")
        if status != 200 or not body:
            return False
        done = True
        for job in body.get("items", []):
            self.jobs[job["id"]] = job
            st = job.get("status")
            if st in ("queued", "running"):
                done = False
            elif st in ("interrupted", "failed", "cancelled") and not job.get("discarded_at"):
                done = False
                if self.resumes[job["id"]] >= 50:
                    continue
                self.resumes[job["id"]] += 1
                rs, rb = self.api.request("POST", f"/api/v1/imports/{job['id']}/resume", body=b"",
                                          content_type="application/json")
                self.resume_answers[str(rs)] += 1
                self.journal.add("import_resume", job=job["id"], was=st, answer=rs,
                                 error=(job.get("error") or "")[:200])
                self.log(f"import job {job['id']} was {st} ({(job.get('error') or '')[:100]}): resume -> {rs}")
        return done
