#!/usr/bin/env python3
"""Authoritative DNS server on loopback for the soak (scripts/soak/soak.py).

    dns_server.py ZONE.json PORT_FILE [--port N]

Serves, over UDP and TCP on 127.0.0.1, the records of ZONE.json:

    {"records": [{"name": "brand.soak.test", "type": "TXT", "value": "v=spf1 -all"}, ...],
     "reverse_suffix": "customers.soak.test"}

plus, for every IPv4 address a.b.c.d, a PTR record d.c.b.a.in-addr.arpa ->
host-a-b-c-d.<reverse_suffix> and the matching A record, so that iprev passes for the soak's
loopback clients. Every other name is NXDOMAIN with an SOA (negative TTL 60 s). Writes the
port it listens on to PORT_FILE (atomically), then serves until killed. The soak takes DNS
down by killing it (queries are refused: ICMP port unreachable) or by stopping it with
SIGSTOP (queries go unanswered until the resolver's timeout).
"""

import argparse
import json
import os
import re
import socket
import struct
import threading

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

TTL = 60
SOA_TEXT = "ns.soak.test. hostmaster.soak.test. 1 3600 600 86400 60"
REVERSE = re.compile(r"^(\d+)\.(\d+)\.(\d+)\.(\d+)\.in-addr\.arpa\.$")
HOST = re.compile(r"^host-(\d+)-(\d+)-(\d+)-(\d+)\.(.+)$")


class Zone:
    def __init__(self, path):
        spec = json.load(open(path))
        self.suffix = spec.get("reverse_suffix", "customers.soak.test").rstrip(".") + "."
        self.records = {}
        for r in spec.get("records", []):
            name = r["name"].rstrip(".").lower() + "."
            self.records.setdefault((name, r["type"].upper()), []).append(r["value"])

    def answer(self, qname, qtype):
        """The rdata texts for (name, type), or None when the name does not exist."""
        name = qname.lower()
        m = REVERSE.match(name)
        if m:
            d, c, b, a = m.groups()
            return [f"host-{a}-{b}-{c}-{d}.{self.suffix}"] if qtype == "PTR" else []
        m = HOST.match(name)
        if m and m.group(5) == self.suffix:
            return [".".join(m.groups()[:4])] if qtype == "A" else []
        if (name, qtype) in self.records:
            return [self._text(qtype, v) for v in self.records[(name, qtype)]]
        if any(n == name for (n, _) in self.records):
            return []  # the name exists with other types: NOERROR, no data
        return None

    @staticmethod
    def _text(qtype, value):
        if qtype != "TXT":
            return value
        # TXT strings are at most 255 bytes: split long values (DKIM keys) into several.
        chunks = [value[i:i + 250] for i in range(0, len(value), 250)] or [""]
        return " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)


def respond(zone, wire):
    try:
        query = dns.message.from_wire(wire)
    except Exception:
        return None
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    if not query.question:
        response.set_rcode(dns.rcode.FORMERR)
        return response
    q = query.question[0]
    qtype = dns.rdatatype.to_text(q.rdtype)
    texts = zone.answer(q.name.to_text(), qtype)
    if texts is None:
        response.set_rcode(dns.rcode.NXDOMAIN)
    if texts:
        rrset = dns.rrset.from_text(q.name, TTL, dns.rdataclass.IN, q.rdtype, *texts)
        response.answer.append(rrset)
    else:
        soa = dns.rrset.from_text(dns.name.from_text("soak.test."), TTL, "IN", "SOA", SOA_TEXT)
        response.authority.append(soa)
    return response


def serve_udp(zone, sock):
    while True:
        wire, addr = sock.recvfrom(4096)
        response = respond(zone, wire)
        if response is None:
            continue
        try:
            query = dns.message.from_wire(wire)
            limit = max(512, query.payload) if query.edns >= 0 else 512
        except Exception:
            limit = 512
        out = response.to_wire()
        if len(out) > limit:
            response.answer = []
            response.authority = []
            response.flags |= dns.flags.TC
            out = response.to_wire()
        sock.sendto(out, addr)


def serve_tcp_client(zone, conn):
    with conn:
        conn.settimeout(10)
        try:
            while True:
                head = conn.recv(2, socket.MSG_WAITALL)
                if len(head) < 2:
                    return
                (length,) = struct.unpack(">H", head)
                wire = conn.recv(length, socket.MSG_WAITALL)
                response = respond(zone, wire)
                if response is None:
                    return
                out = response.to_wire()
                conn.sendall(struct.pack(">H", len(out)) + out)
        except OSError:
            return


def serve_tcp(zone, sock):
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=serve_tcp_client, args=(zone, conn), daemon=True).start()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("zone")
    ap.add_argument("port_file")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    zone = Zone(args.zone)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    udp.bind(("127.0.0.1", args.port))
    port = udp.getsockname()[1]
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("127.0.0.1", port))
    tcp.listen(64)
    threading.Thread(target=serve_tcp, args=(zone, tcp), daemon=True).start()
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(port))
    os.rename(args.port_file + ".tmp", args.port_file)
    serve_udp(zone, udp)


if __name__ == "__main__":
    main()
