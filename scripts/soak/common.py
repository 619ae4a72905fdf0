"""Shared pieces of the soak: the log, the event journal, pacing and small helpers."""

import json
import os
import random
import socket
import sys
import threading
import time


class Log:
    """Timestamped lines on stderr and in the run directory's soak.log."""

    def __init__(self, path=None):
        self.start = time.monotonic()
        self.lock = threading.Lock()
        self.file = open(path, "a", buffering=1) if path else None

    def __call__(self, msg):
        line = f"[soak {time.monotonic() - self.start:7.1f}s] {msg}"
        with self.lock:
            print(line, file=sys.stderr, flush=True)
            if self.file:
                self.file.write(line + "\n")


class Journal:
    """What happened when: faults, kills, peer flaps, restarts (wall-clock seconds, so that
    they compare with file times such as the sink's dumps)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.events = []

    def add(self, kind, **detail):
        event = {"t": time.time(), "kind": kind, **detail}
        with self.lock:
            self.events.append(event)
        return event

    def of(self, kind):
        with self.lock:
            return [e for e in self.events if e["kind"] == kind]

    def snapshot(self):
        with self.lock:
            return list(self.events)


class Pacer:
    """A shared rate limit: `wait()` returns when the caller may do one more unit of work,
    at most `rate` per second over all callers. Returns False once `stop` is set."""

    def __init__(self, rate, stop):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.stop = stop
        self.lock = threading.Lock()
        self.next = time.monotonic()

    def wait(self):
        with self.lock:
            now = time.monotonic()
            # Never bank more than one second of credit after a pause (a kill, a flood).
            self.next = max(self.next, now - 1.0)
            slot = self.next
            self.next += self.interval
        delay = slot - time.monotonic()
        if delay > 0:
            return not self.stop.wait(delay)
        return not self.stop.is_set()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def port_open(port, host="127.0.0.1", timeout=0.3):
    try:
        socket.create_connection((host, port), timeout).close()
        return True
    except OSError:
        return False


def write_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
    os.replace(tmp, path)


def percentile(values, p):
    if not values:
        return None
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]


def jitter(lo, hi, rng=random):
    return rng.uniform(lo, hi)


def loopback(net, i):
    """The i-th address of a /16 of loopback: loopback(1, 0) = 127.1.0.1. Linux answers on
    all of 127.0.0.0/8, so clients can look like many hosts."""
    i += 1
    return f"127.{net}.{(i >> 8) & 255}.{i & 255}"
