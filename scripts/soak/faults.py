"""The faults: one at a time, in shuffled rounds so that every kind comes up in a short run,
at random intervals; and, all along, the relay peer that flaps."""

import random
import threading
import time

from api_load import ApiClient
from floods import Flood


class FaultPlan:
    def __init__(self, args):
        self.warmup = args.warmup
        self.gap = (args.fault_gap_min, args.fault_gap_max)
        self.smtp_flood = args.smtp_flood
        self.http_flood = args.http_flood
        self.flood_per_ip = args.flood_per_ip
        self.drip = args.drip_seconds
        self.kinds = [k.strip() for k in args.faults.split(",") if k.strip()]


class FaultInjector:
    # A round: every kind once, kills twice (the fault that tests the most promises).
    KINDS = ["kill", "kill", "disk_full", "dns_down", "slowloris", "idle_flood"]

    def __init__(self, plan, server, disk, dns, api_load, token, rcpt, journal, log, seed, stop):
        self.plan = plan
        self.server = server
        self.disk = disk
        self.dns = dns
        self.api_load = api_load
        self.token = token
        self.rcpt = rcpt
        self.journal = journal
        self.log = log
        self.rng = random.Random(seed)
        self.stop = stop
        self.done = []            # dict(kind, start, end, details)
        self.checker = ApiClient(server.http_port, token, "127.0.0.201")
        self.thread = None
        self.flood_net = 1        # floods come from 127.1.x.y, 127.2.x.y, ...

    def start(self):
        self.thread = threading.Thread(target=self._run, name="faults", daemon=True)
        self.thread.start()

    def join(self, timeout):
        if self.thread:
            self.thread.join(timeout)

    def _run(self):
        if self.stop.wait(self.plan.warmup):
            return
        bag = []
        while not self.stop.is_set():
            if not bag:
                bag = [k for k in self.KINDS if k in self.plan.kinds
                       and (k != "disk_full" or self.disk.can_fill)]
                if not bag:
                    return
                self.rng.shuffle(bag)
            kind = bag.pop()
            start = time.time()
            self.log(f"fault: {kind}")
            try:
                details = getattr(self, "_" + kind)()
            except Exception as e:  # record it; the run goes on
                details = {"error": f"{type(e).__name__}: {e}"}
                self.log(f"fault {kind} failed: {details['error']}")
            self.done.append({"kind": kind, "start": start, "end": time.time(), **details})
            self.log(f"fault {kind} over: {details}")
            if self.stop.wait(self.rng.uniform(*self.plan.gap)):
                return

    # ----- the faults ---------------------------------------------------------------------

    def _kill(self):
        with self.api_load.lock:
            seen_before = list(self.api_load.tickets_seen)
        pid = self.server.kill()
        down = self.rng.uniform(0.2, 3.0)
        time.sleep(down)
        startup = self.server.start()
        lost = self._tickets_still_there(seen_before)
        return {"pid": pid, "down_seconds": round(down, 2), "restart_seconds": round(startup, 2),
                "tickets_checked": lost["checked"], "tickets_missing": lost["missing"]}

    def _tickets_still_there(self, seen):
        """Tickets seen through the API before the kill answer 200 after the restart."""
        sample = self.rng.sample(seen, min(30, len(seen)))
        missing = []
        for tid in sample:
            for _ in range(5):
                status, _ = self.checker.request("GET", f"/api/v1/tickets/{tid}")
                if status in (200, 404):
                    break
                time.sleep(1)
            if status != 200:
                missing.append((tid, status))
        if missing:
            self.log(f"TICKETS SEEN BEFORE THE KILL NOT FOUND AFTER IT: {missing}")
        return {"checked": len(sample), "missing": missing}

    def _disk_full(self):
        hold = self.rng.uniform(10, 30)
        self.disk.fill()
        free_after = self.disk.free_bytes()
        self.stop.wait(hold)
        self.disk.free()
        return {"hold_seconds": round(hold, 1), "free_bytes_while_full": free_after}

    def _dns_down(self):
        how = self.rng.choice(["silent", "refused"])
        hold = self.rng.uniform(10, 40)
        self.dns.down(how)
        self.stop.wait(hold)
        self.dns.up()
        return {"how": how, "hold_seconds": round(hold, 1)}

    def _floods(self, kind, hold):
        floods = []
        for target, port, count in (("smtp", self.server.smtp_port, self.plan.smtp_flood),
                                    ("http", self.server.http_port, self.plan.http_flood)):
            if count <= 0:
                continue
            f = Flood(kind, target, port, count, self.plan.flood_per_ip, self.flood_net,
                      rcpt=self.rcpt, drip=self.plan.drip)
            self.flood_net = self.flood_net % 200 + 1
            floods.append(f)
        t_open = time.monotonic()
        for f in floods:
            f.open(self.stop)
        opened = time.monotonic() - t_open
        end = time.monotonic() + hold
        first = True
        while time.monotonic() < end and not self.stop.is_set():
            for f in floods:
                f.tick(first)
            first = False
            self.stop.wait(min(self.plan.drip, max(0.0, end - time.monotonic())))
        stats = [f.close() for f in floods]
        return {"hold_seconds": round(hold, 1), "open_seconds": round(opened, 1), "floods": stats}

    def _slowloris(self):
        return self._floods("slowloris", self.rng.uniform(30, 60))

    def _idle_flood(self):
        return self._floods("idle", self.rng.uniform(30, 60))


class SinkFlapper:
    """The relay peer: accepting for a while, then down or answering 4xx for a while."""

    BAD = ["down", "tempfail_rcpt", "tempfail_data", "close_421"]

    def __init__(self, sink, seed, stop, log):
        self.sink = sink
        self.rng = random.Random(seed)
        self.stop = stop
        self.log = log
        self.thread = None
        self.counts = {}

    def start(self):
        self.thread = threading.Thread(target=self._run, name="sink-flapper", daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            if self.stop.wait(self.rng.uniform(15, 45)):
                break
            bad = self.rng.choice(self.BAD)
            self.counts[bad] = self.counts.get(bad, 0) + 1
            try:
                self.sink.set_mode(bad)
            except RuntimeError as e:
                self.log(f"sink: {e}")
            self.stop.wait(self.rng.uniform(5, 20))
            try:
                self.sink.set_mode("accept")
            except RuntimeError as e:
                self.log(f"sink: {e}")

    def join(self, timeout):
        if self.thread:
            self.thread.join(timeout)
        self.sink.set_mode("accept")
