#!/usr/bin/env python3
"""Fills fuzz/corpus/<target>/ with seed inputs: the hand-made ones in fuzz/seeds/<target>/
and inputs made at run time from the corpora in ../shared/corpora (never copied into the
repository: some are GPL/LGPL test fixtures). Each file is named by the SHA-1 of its
content, as libFuzzer names what it adds, so that the same seed is never stored twice and
run.sh can tell a crashing seed from a crash found by mutation.

Usage: fuzz/seed.py [TARGET...]   (all targets when none is given)
Environment: POSTERN_CORPORA, the corpora folder (default: ../shared/corpora from the
project root).
"""

import hashlib
import os
import re
import sys
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
ROOT = FUZZ.parent
CORPORA = Path(os.environ.get("POSTERN_CORPORA", ROOT.parent / "shared" / "corpora"))
TARGETS = ["smtp_session", "parse_inbound", "tnef", "mbox", "maildir", "auth_records", "rules"]
# Seeds larger than this are left out: libFuzzer would cut them to its -max_len anyway.
MAX_SEED = 1 << 20


def files(*parts, pattern="*"):
    base = CORPORA.joinpath(*parts)
    if not base.is_dir():
        sys.exit(f"seed.py: {base} is missing: the corpora folder is incomplete")
    return sorted(p for p in base.rglob(pattern) if p.is_file() and p.stat().st_size <= MAX_SEED)


def read(path):
    return path.read_bytes()


def smtp_conversation(setup, message, sender=b"a@b.example"):
    """A client's whole session delivering `message` (dot-stuffed, CRLF)."""
    lines = message.replace(b"\r\n", b"\n").split(b"\n")
    body = b"\r\n".join(b"." + l if l.startswith(b".") else l for l in lines)
    return (bytes([setup]) + b"EHLO client.example\r\nMAIL FROM:<" + sender + b">\r\n"
            b"RCPT TO:<support-abc@in.postern.test>\r\nDATA\r\n" + body + b"\r\n.\r\nQUIT\r\n")


def seeds_for(target):
    """Yields seed inputs (bytes) for `target` from the shared corpora."""
    if target == "parse_inbound":
        for p in files("stalwart-mail-parser", "resources", pattern="*.eml"):
            yield read(p)
        for p in files("cpython-email-testdata", pattern="msg_*.txt"):
            yield read(p)
        for d in ["spamscope-mail-parser", "nodemailer-mailparser-fixtures", "hyperkitty-testdata"]:
            for p in files(d):
                if p.name not in ("SOURCE.txt", "LICENSE", "COPYING"):
                    yield read(p)
        for p in files("mimekit-testdata", "UnitTests", "TestData", "messages"):
            yield read(p)
    elif target == "smtp_session":
        for i, p in enumerate(files("cpython-email-testdata", pattern="msg_*.txt")[:20]):
            yield smtp_conversation(i % 4, read(p))
        # Envelope addresses of every syntax, good and bad.
        for p in files("isemail-address-tests", "test"):
            for m in re.finditer(rb"<address>(.*?)</address>", read(p)):
                addr = m.group(1).replace(b"&lt;", b"<").replace(b"&gt;", b">").replace(b"&amp;", b"&")
                if b"\n" not in addr and len(addr) < 300:
                    yield smtp_conversation(0, b"Subject: x\r\n\r\nhi\r\n", sender=addr)
    elif target == "tnef":
        for p in files("tnefparse-examples", pattern="*.tnef"):
            yield read(p)
        for p in files("mimekit-testdata", "UnitTests", "TestData", "tnef"):
            if p.suffix.lower() in (".tnef", ".dat"):
                yield read(p)
    elif target == "mbox":
        sources = files("mimekit-testdata", "UnitTests", "TestData", "mbox")
        sources += files("cpython-email-testdata", pattern="*.mbox")
        sources += files("perl-mail-box-threads", "t", "folders", pattern="mbox.*")
        sources += files("dkimpy-testdata", pattern="*.mbox")
        for p in sources:
            data = read(p)
            for setup in (0x00, 0x01, 0x02, 0x03, 0x04, 0x18):  # each dialect; a small cap
                yield bytes([setup]) + data
    elif target == "maildir":
        base = CORPORA / "mu-testdata" / "testdata"
        for p in files("mu-testdata", "testdata"):
            rel = p.relative_to(base).as_posix().encode()
            yield b"\x00" + rel + b"\n" + read(p)
    elif target == "auth_records":
        sources = files("stalwart-mail-auth", "resources")
        sources += files("perl-mail-dkim", "t")
        sources += files("dkimpy-testdata")
        sources += files("spf-suites")
        record = re.compile(rb"v=(?:spf1|DKIM1|DMARC1|DKIM2|TLSRPTv1|STSv1)[^\"'\n]*", re.I)
        for p in sources:
            data = read(p)
            if len(data) <= 64 * 1024:
                yield data
            for m in record.finditer(data):
                yield m.group(0).strip()
    elif target == "rules":
        return  # hand-made seeds only (fuzz/seeds/rules)


def main():
    wanted = sys.argv[1:] or TARGETS
    if not CORPORA.is_dir():
        sys.exit(f"seed.py: the shared corpora are missing at {CORPORA}; "
                 "set POSTERN_CORPORA to the folder that holds them (see its README.md)")
    for target in wanted:
        if target not in TARGETS:
            sys.exit(f"seed.py: unknown target {target!r}; targets: {' '.join(TARGETS)}")
        out = FUZZ / "corpus" / target
        out.mkdir(parents=True, exist_ok=True)
        hand = FUZZ / "seeds" / target
        inputs = [read(p) for p in sorted(hand.iterdir()) if p.is_file()] if hand.is_dir() else []
        inputs += list(seeds_for(target))
        added = 0
        for data in inputs:
            name = out / hashlib.sha1(data).hexdigest()
            if not name.exists():
                name.write_bytes(data)
                added += 1
        print(f"{target}: {len(inputs)} seeds, {added} new in {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
