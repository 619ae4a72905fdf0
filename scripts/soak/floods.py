"""Connection floods against the SMTP and HTTP ports, from many loopback addresses:

- idle: connect and say nothing (SMTP: never read the greeting; HTTP: never send a request);
- slowloris: keep a command or a request always unfinished by sending one byte at a time
  (SMTP: half in a command line, half inside DATA; HTTP: half in the headers, half in a
  body announced by Content-Length).

Counts what the server did with them: connections refused or closed at once, closed later
(a timeout doing its job), still open when the flood ends."""

import errno
import socket

from common import loopback

SLOW_SMTP_COMMAND = b"EHLO slowloris.flood.test\r\nMAIL FROM:<slow@flood.test>\r\n"
SLOW_HTTP_HEADERS = b"X-Slowloris: " + b"a" * 64 + b"\r\n"


class Flood:
    def __init__(self, kind, target, port, count, per_ip, source_net, rcpt=None, drip=10.0):
        self.kind = kind          # idle or slowloris
        self.target = target      # smtp or http
        self.port = port
        self.count = count
        self.per_ip = max(1, per_ip)
        self.source_net = source_net
        self.rcpt = rcpt
        self.drip = drip
        self.socks = []           # [socket, mode, position]
        self.stats = {"kind": kind, "target": target, "wanted": count, "connected": 0,
                      "refused": 0, "closed_by_server_at_once": 0, "closed_by_server_later": 0,
                      "open_at_end": 0, "bytes_dripped": 0}

    def _source(self, i):
        return loopback(self.source_net, i // self.per_ip)

    def open(self, stop):
        failures_in_a_row = 0
        for i in range(self.count):
            if stop.is_set() or failures_in_a_row >= 50:
                break  # the server no longer accepts: holding more attempts proves nothing
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((self._source(i), 0))
                s.settimeout(2)
                s.connect(("127.0.0.1", self.port))
                failures_in_a_row = 0
            except OSError:
                self.stats["refused"] += 1
                failures_in_a_row += 1
                s.close()
                continue
            mode = "line"
            try:
                if self.kind == "slowloris":
                    mode = self._prime(s, i)
            except OSError:
                self.stats["closed_by_server_at_once"] += 1
                s.close()
                continue
            s.setblocking(False)
            self.stats["connected"] += 1
            self.socks.append([s, mode, 0])

    def _prime(self, s, i):
        """Brings a slowloris connection to where it will drip."""
        if self.target == "smtp":
            greeting = s.recv(512)
            if not greeting.startswith(b"220"):
                raise OSError("refused: " + greeting[:40].decode(errors="replace"))
            if i % 2 == 1 and self.rcpt:
                f = s.makefile("rb")
                for cmd in (b"EHLO slowloris.flood.test\r\n", b"MAIL FROM:<slow@flood.test>\r\n",
                            f"RCPT TO:<{self.rcpt}>\r\n".encode(), b"DATA\r\n"):
                    s.sendall(cmd)
                    while True:
                        line = f.readline()
                        if not line:
                            raise OSError("closed")
                        if line[3:4] != b"-":
                            break
                    if not line[:1] in (b"2", b"3"):
                        raise OSError("refused: " + line[:40].decode(errors="replace"))
                return "data"
            return "line"
        if i % 2 == 1:
            # The SAML ACS reads a form body before anyone is signed in.
            s.sendall(b"POST /saml/1/acs HTTP/1.1\r\nHost: soak\r\n"
                      b"Content-Type: application/x-www-form-urlencoded\r\n"
                      b"Content-Length: 100000\r\n\r\nSAMLResponse=")
            return "body"
        s.sendall(b"GET /api/v1/tickets HTTP/1.1\r\nHost: soak\r\n")
        return "headers"

    def _alive(self, entry):
        s = entry[0]
        try:
            while True:
                data = s.recv(4096)
                if not data:
                    return False
        except BlockingIOError:
            return True
        except OSError:
            return False

    def tick(self, first):
        """One pass: notices the connections the server closed, drips on the others."""
        alive = []
        for entry in self.socks:
            # Reading what the server sends (a greeting, a 421) changes nothing for it.
            ok = self._alive(entry)
            if ok and self.kind == "slowloris":
                ok = self._drip(entry)
            if ok:
                alive.append(entry)
            else:
                key = "closed_by_server_at_once" if first else "closed_by_server_later"
                self.stats[key] += 1
                entry[0].close()
        self.socks = alive

    def _drip(self, entry):
        s, mode, pos = entry
        if mode == "line":
            chunk = SLOW_SMTP_COMMAND[pos % len(SLOW_SMTP_COMMAND):][:1]
        elif mode == "data":
            chunk = b"x" if pos % 60 else b"\r\n"
        elif mode == "headers":
            chunk = SLOW_HTTP_HEADERS[pos % len(SLOW_HTTP_HEADERS):][:1]
        else:
            chunk = b"a"
        try:
            s.send(chunk)
        except BlockingIOError:
            pass
        except OSError as e:
            if e.errno not in (errno.EAGAIN,):
                return False
        entry[2] = pos + 1
        self.stats["bytes_dripped"] += 1
        return True

    def close(self):
        self.stats["open_at_end"] = len(self.socks)
        for entry in self.socks:
            try:
                entry[0].close()
            except OSError:
                pass
        self.socks = []
        return self.stats
