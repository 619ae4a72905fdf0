#!/usr/bin/env python3
"""A mail hop for tests, built on dkimpy (an implementation independent of Postern's).

  mail_hop.py sign  --domain D --selector S --key KEY.pem  < in.eml > out.eml
      DKIM-signs the message as the sender's domain would.
  mail_hop.py forward --domain D --selector S --key KEY.pem --authserv-id ID
                      [--dmarc pass|fail] [--footer TEXT]  < in.eml > out.eml
      Acts as a forwarder: records what it saw in Authentication-Results, optionally
      appends a footer (which breaks the original DKIM body hash, as list software does),
      then adds an ARC set sealed by D.
  --algorithm rsa-sha1 signs or seals with SHA-1 instead of SHA-256 (RFC 8301 forbids it:
  for checking that the receiver refuses it).
"""
import argparse
import sys

import dkim


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["sign", "forward"])
    p.add_argument("--domain", required=True)
    p.add_argument("--selector", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--authserv-id", default="mx.forwarder.test")
    p.add_argument("--dmarc", default="pass")
    p.add_argument("--footer", default="")
    p.add_argument("--algorithm", default="rsa-sha256", choices=["rsa-sha256", "rsa-sha1"])
    a = p.parse_args()
    msg = sys.stdin.buffer.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    key = open(a.key, "rb").read()
    if a.mode == "sign":
        sig = dkim.sign(msg, a.selector.encode(), a.domain.encode(), key,
                        signature_algorithm=a.algorithm.encode(),
                        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
        sys.stdout.buffer.write(sig + msg)
        return
    head, _, body = msg.partition(b"\r\n\r\n")
    if a.footer:
        body = body + a.footer.encode() + b"\r\n"
    from_domain = b"unknown"
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"from:") and b"@" in line:
            from_domain = line.split(b"@")[-1].strip(b"> \t")
    ar = (b"Authentication-Results: " + a.authserv_id.encode() + b"; dkim=pass header.d="
          + from_domain + b"; dmarc=" + a.dmarc.encode() + b" header.from=" + from_domain + b"\r\n")
    msg = ar + head + b"\r\n\r\n" + body
    # dkim.arc_sign always seals with rsa-sha256, whatever it is given: use the ARC class.
    arc = dkim.ARC(msg, signature_algorithm=a.algorithm.encode())
    sealed = arc.sign(a.selector.encode(), a.domain.encode(), key, a.authserv_id.encode(),
                      include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    sys.stdout.buffer.write(b"".join(sealed) + msg)


if __name__ == "__main__":
    main()
