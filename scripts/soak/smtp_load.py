"""SMTP intake load: many concurrent sessions from different loopback addresses, each message
with a unique Message-ID, some of them replies to earlier ones (threading), some that fire
the soak's rules. The senders behave like an MTA: a 4xx or a broken connection means "try
again later" with the same bytes, until the run ends. Every attempt is recorded."""

import base64
import hashlib
import random
import smtplib
import ssl
import threading
import time
from collections import deque
from email.utils import format_datetime

from common import loopback

CUSTOMER_DOMAIN = "customers.soak.test"
WORDS = ("order parcel delivery refund invoice size colour return exchange tracking address "
         "payment card voucher discount shoes jacket remboursement commande livraison colis "
         "taille retour facture").split()


class Mail:
    __slots__ = ("mid", "customer", "subject", "raw", "digest", "parent", "refs", "kind",
                 "created", "attempts", "acked_at", "queued_as", "latency", "final")

    def __init__(self, mid, customer, subject, raw, parent, refs, kind):
        self.mid = mid
        self.customer = customer
        self.subject = subject
        self.raw = raw            # dropped once answered 250 (long runs send a lot)
        self.digest = hashlib.sha256(raw).hexdigest()
        self.parent = parent
        self.refs = refs
        self.kind = kind          # new, reply, urgent, autoreply, large
        self.created = time.time()
        self.attempts = []        # (time, outcome), outcome "250", "451 4.3.0", "conn: ..."
        self.acked_at = None
        self.queued_as = None
        self.latency = None       # seconds from the end of data to the 250
        self.final = None         # a 5xx that ended it


class SmtpLoad:
    def __init__(self, port, rcpt, sessions, pacer, stop_new, stop_all, run_id, seed, log,
                 source_net=0, source_first=10, tls_share=0.2, large_share=0.005):
        self.port = port
        self.rcpt = rcpt
        self.sessions = sessions
        self.pacer = pacer
        self.stop_new = stop_new
        self.stop_all = stop_all
        self.run_id = run_id
        self.rng = random.Random(seed)
        self.log = log
        self.source_net = source_net
        self.source_first = source_first
        self.tls_share = tls_share
        self.large_share = large_share
        self.lock = threading.Lock()
        self.mails = {}           # Message-ID (no brackets) -> Mail
        self.acked = []           # Message-IDs answered 250, in order, for replies
        self.seq = 0
        self.auto_seq = 0
        self.session_log = []     # (start time, source, outcome) of every session
        self.threads = []
        self.pending = [deque() for _ in range(sessions)]

    # ----- messages -------------------------------------------------------------------------

    def _next_mail(self, rng):
        with self.lock:
            self.seq += 1
            seq = self.seq
            parent = None
            roll = rng.random()
            if roll < 0.30 and len(self.acked) > 20:
                cand = self.mails[self.acked[rng.randrange(len(self.acked))]]
                if cand.kind != "autoreply":
                    parent = cand
            if parent is None and roll > 0.97:
                self.auto_seq += 1
                auto = self.auto_seq
        mid = f"soak.{self.run_id}.{seq}.{rng.getrandbits(32):08x}@{CUSTOMER_DOMAIN}"
        topic = " ".join(rng.choice(WORDS) for _ in range(3))
        extra_headers = []
        body_extra = ""
        if parent is not None:
            kind = "reply"
            customer = parent.customer
            base = parent.subject[4:] if parent.subject.startswith("Re: ") else parent.subject
            subject = "Re: " + base
            refs = (parent.refs + [parent.mid])[-10:]
            extra_headers.append(f"In-Reply-To: <{parent.mid}>")
            extra_headers.append("References: " + " ".join(f"<{r}>" for r in refs))
        elif roll > 0.97:
            kind = "autoreply"
            customer = f"auto{auto}.{self.run_id}@{CUSTOMER_DOMAIN}"
            subject = f"[autoreply] question about my {topic} #{seq}"
            refs = []
        else:
            customer = f"cust{rng.randrange(400)}@{CUSTOMER_DOMAIN}"
            refs = []
            if roll > 0.88:
                kind = "urgent"
                subject = f"[urgent] problem with my {topic} #{seq}"
            else:
                kind = "new"
                subject = f"About my {topic} #{seq}"
        if rng.random() < self.large_share and kind != "autoreply":
            kind = kind if kind != "new" else "large"
            body_extra = "large"
        lines = [
            f"From: Customer <{customer}>",
            "To: Brand Support <support@brand.soak.test>",
            f"Subject: {subject}",
            f"Date: {format_datetime(_now_utc())}",
            f"Message-ID: <{mid}>",
            *extra_headers,
            "MIME-Version: 1.0",
        ]
        text = "\r\n".join(
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 12)))
            for _ in range(rng.randint(3, 40)))
        text = f"Hello,\r\n\r\n{text}\r\n\r\nMessage {mid}\r\n"
        if body_extra:
            boundary = f"=_soak_{seq}"
            blob = base64.encodebytes(rng.randbytes(rng.randint(150_000, 600_000))).decode()
            blob = blob.replace("\n", "\r\n")
            lines.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
            body = (f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
                    f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
                    f'Content-Disposition: attachment; filename="photo-{seq}.bin"\r\n'
                    f"Content-Transfer-Encoding: base64\r\n\r\n{blob}--{boundary}--\r\n")
        else:
            lines.append("Content-Type: text/plain; charset=utf-8")
            body = text
        raw = ("\r\n".join(lines) + "\r\n\r\n" + body).encode()
        mail = Mail(mid, customer, subject, raw, parent.mid if parent else None, refs, kind)
        with self.lock:
            self.mails[mid] = mail
        return mail

    # ----- sessions -------------------------------------------------------------------------

    def start(self):
        for i in range(self.sessions):
            t = threading.Thread(target=self._worker, args=(i,), name=f"smtp-{i}", daemon=True)
            t.start()
            self.threads.append(t)

    def join(self, timeout):
        end = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, end - time.monotonic()))

    def unfinished(self):
        return sum(len(q) for q in self.pending)

    def _worker(self, i):
        rng = random.Random(self.rng.random())
        source = loopback(self.source_net, self.source_first + i - 1)
        pending = self.pending[i]
        while not self.stop_all.is_set():
            batch = []
            now = time.monotonic()
            while pending and pending[0][0] <= now and len(batch) < 5:
                batch.append(pending.popleft()[1])
            want = rng.randint(1, 5)
            while len(batch) < want and not self.stop_new.is_set():
                if not self.pacer.wait():
                    break
                batch.append(self._next_mail(rng))
            if not batch:
                if self.stop_new.is_set() and not pending:
                    return
                self.stop_all.wait(0.2)
                continue
            try:
                self._session(rng, source, batch, pending)
            except Exception as e:  # a bug of the load must show, not silently stop a sender
                self.log(f"smtp sender {i}: {type(e).__name__}: {e}")
                for mail in batch:
                    if mail.acked_at is None and not mail.final:
                        self._retry(pending, mail, rng)

    def _retry(self, pending, mail, rng):
        pending.append((time.monotonic() + rng.uniform(1.0, 5.0), mail))

    def _session(self, rng, source, batch, pending):
        started = time.time()
        todo = list(batch)
        outcome = "ok"
        smtp = None
        try:
            # Connects, and raises SMTPConnectError when the greeting is not 220.
            smtp = smtplib.SMTP("127.0.0.1", self.port, timeout=120, source_address=(source, 0))
            smtp.ehlo(f"host-{source.replace('.', '-')}.{CUSTOMER_DOMAIN}")
            if rng.random() < self.tls_share and smtp.has_extn("starttls"):
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                smtp.starttls(context=ctx)
                smtp.ehlo(f"host-{source.replace('.', '-')}.{CUSTOMER_DOMAIN}")
            while todo:
                # A broken connection raises with the message still in `todo`: it is retried.
                action = self._send_one(smtp, todo[0], pending, rng)
                todo.pop(0)
                if action == "closed":
                    outcome = "closed by server"
                    break
            if outcome == "ok":
                try:
                    smtp.quit()
                except (smtplib.SMTPException, OSError):
                    pass
        except smtplib.SMTPConnectError as e:
            outcome = f"greeting {e.smtp_code}"
        except (smtplib.SMTPException, OSError, ssl.SSLError) as e:
            outcome = f"conn: {type(e).__name__}"
        finally:
            if smtp is not None:
                try:
                    smtp.close()
                except OSError:
                    pass
        if todo:
            t = time.time()
            for mail in todo:
                mail.attempts.append((t, outcome if outcome != "ok" else "conn: lost"))
                self._retry(pending, mail, rng)
        with self.lock:
            self.session_log.append((started, source, outcome))

    def _send_one(self, smtp, mail, pending, rng):
        """Sends one message; returns "closed" when the server hung up with 421, else "next".
        Raises on a broken connection before any answer was recorded for the message."""
        try:
            opts = [f"SIZE={len(mail.raw)}"] if smtp.has_extn("size") else []
            code, resp = smtp.mail(f"<{mail.customer}>", opts)
            if code == 250:
                code, resp = smtp.rcpt(f"<{self.rcpt}>")
            if code in (250, 251):
                t0 = time.monotonic()
                code, resp = smtp.data(mail.raw)
                self._answer(mail, code, resp, pending, rng, time.monotonic() - t0)
            else:
                self._answer(mail, code, resp, pending, rng, None)
        except smtplib.SMTPServerDisconnected:
            raise
        except smtplib.SMTPResponseException as e:  # DATA not answered 354
            code = e.smtp_code
            self._answer(mail, code, e.smtp_error, pending, rng, None)
        if code == 421:
            return "closed"
        if code not in (250, 251):
            try:
                smtp.rset()
            except (smtplib.SMTPException, OSError):
                return "closed"
        return "next"

    def _answer(self, mail, code, resp, pending, rng, latency):
        text = resp.decode(errors="replace") if isinstance(resp, bytes) else str(resp)
        now = time.time()
        if code == 250:
            mail.attempts.append((now, "250"))
            first = mail.acked_at is None
            if first:
                mail.acked_at = now
                mail.raw = None
                mail.latency = latency
                mail.queued_as = text.rsplit(" ", 1)[-1]
                with self.lock:
                    self.acked.append(mail.mid)
            return
        mail.attempts.append((now, f"{code} {text[:80]}"))
        if 400 <= code < 500:
            self._retry(pending, mail, rng)
        else:
            mail.final = f"{code} {text[:120]}"


def _now_utc():
    import datetime
    return datetime.datetime.now(datetime.timezone.utc)
