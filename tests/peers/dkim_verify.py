#!/usr/bin/env python3
"""Checks every DKIM signature of a delivered message with dkimpy (independent of Postern),
looking the keys up on the given DNS server (the tests' loopback server).

  dkim_verify.py --dns 127.0.0.1:5353 < message  ->  JSON list of {"d", "s", "a", "ok"}

Lines before the message that smtp-sink -d adds (X-Client-Addr...) are unsigned headers and
do not matter to DKIM; bare LF line ends are turned into CRLF first.
"""
import argparse
import json
import re
import sys

import dkim
import dns.resolver


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dns", required=True)
    a = p.parse_args()
    host, port = a.dns.rsplit(":", 1)
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = [host]
    r.port = int(port)
    r.timeout = r.lifetime = 3

    def txt(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        try:
            ans = r.resolve(name.rstrip(".") + ".", "TXT")
        except Exception:
            return None
        for rr in ans:
            return b"".join(rr.strings)
        return None

    msg = sys.stdin.buffer.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    head = msg.split(b"\r\n\r\n", 1)[0]
    sigs = re.findall(rb"(?im)^dkim-signature:((?:.*)(?:\r\n[ \t].*)*)", head)
    out = []
    d = dkim.DKIM(msg)
    for i, sig in enumerate(sigs):
        tags = dict(
            (k.strip().decode(), v.strip().decode())
            for k, v in (t.split(b"=", 1) for t in re.sub(rb"\s+", b"", sig).split(b";") if b"=" in t)
        )
        ok = bool(d.verify(idx=i, dnsfunc=txt))
        out.append({"d": tags.get("d"), "s": tags.get("s"), "a": tags.get("a"), "ok": ok})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
