#!/usr/bin/env python3
"""Checks a mailbox written by gen_mailbox.py against its expected.json.

    bench/check_mailbox.py DIR

- the mbox (read as mboxrd) and the Maildir hold the same messages, byte for byte, as many as
  expected.json says;
- every well-formed message parses with Python's email package (policy.default) without a
  single defect, in its headers or any MIME part, and every text part decodes in its charset;
- every malformed entry is one an importer cannot use (no sender address);
- the duplicates are exact copies, the conversations of expected.json cover every unique
  well-formed message once, and threading headers only point inside their conversation
  (or, for the few first messages that answer an order confirmation, outside the mailbox);
- reports the shares the generator promises (subject fallback, replies before their parent,
  Date order, average size).
Exits non-zero with the list of problems when anything is off.
"""

import collections
import email.policy
import email.utils
import hashlib
import json
import os
import re
import sys
from email.parser import BytesParser

UNESCAPE = re.compile(rb"^>(>*From )", re.M)
ID = re.compile(r"<[^<>\s]+>")


def mbox_messages(path):
    """Yields the messages of an mboxrd file, unescaped, with the separator blank line removed."""
    cur = None
    with open(path, "rb") as f:
        prev_blank = True
        for line in f:
            if line.startswith(b"From ") and prev_blank:
                if cur is not None:
                    yield finish(cur)
                cur = []
            elif cur is not None:
                cur.append(line)
            prev_blank = line in (b"\n", b"\r\n")
    if cur is not None:
        yield finish(cur)


def finish(lines):
    if lines and lines[-1] == b"\n":
        lines = lines[:-1]
    return UNESCAPE.sub(rb"\1", b"".join(lines))


def maildir_messages(path):
    for sub in ("cur", "new"):
        d = os.path.join(path, sub)
        for name in sorted(os.listdir(d)):
            with open(os.path.join(d, name), "rb") as f:
                yield sub, name, f.read()


def defects_of(msg):
    found = []
    for part in msg.walk():
        found.extend(type(d).__name__ for d in part.defects)
        for name, value in part.items():
            found.extend(f"{name}: {type(d).__name__}" for d in getattr(value, "defects", ()))
        if part.get_content_maintype() == "text":
            try:
                part.get_content()
            except (LookupError, UnicodeError) as e:
                found.append(f"text part does not decode: {e}")
    return found


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.split("\n\n")[1])
    root = sys.argv[1]
    exp = json.load(open(os.path.join(root, "expected.json")))
    problems = []

    def problem(text):
        if len(problems) < 50:
            print("PROBLEM:", text, file=sys.stderr)
        problems.append(text)

    # 1. mbox and Maildir: the same bytes
    mbox_hashes = collections.Counter()
    for raw in mbox_messages(os.path.join(root, "mailbox.mbox")):
        mbox_hashes[hashlib.sha256(raw).digest()] += 1
    maildir_hashes = collections.Counter()
    flags = collections.Counter()
    parser = BytesParser(policy=email.policy.default)
    malformed_ids = {m["message_id"] for m in exp["malformed_messages"]}
    seen_ids = collections.Counter()
    refs_of, order = {}, {}
    dates, sizes, bounce_of = [], [], {}
    n_malformed = 0
    n = 0
    for sub, name, raw in maildir_messages(os.path.join(root, "Maildir")):
        n += 1
        maildir_hashes[hashlib.sha256(raw).digest()] += 1
        flags[(sub, name.rsplit(":2,", 1)[1] if ":2," in name else "")] += 1
        sizes.append(len(raw))
        msg = parser.parsebytes(raw)
        mid = msg.get("Message-ID")
        mid = str(mid).strip() if mid is not None else None
        sender = msg.get("From")
        addresses = [a for _, a in email.utils.getaddresses([str(sender)]) if "@" in a] if sender else []
        if not addresses:
            n_malformed += 1
            if mid is not None and mid not in malformed_ids:
                problem(f"{name}: no sender address but not listed as malformed")
            continue
        if mid in malformed_ids:
            problem(f"{name}: listed as malformed but has a sender address")
        d = defects_of(msg)
        if d:
            problem(f"{name}: defects {sorted(set(d))}")
        if not mid:
            problem(f"{name}: no Message-ID")
            continue
        seen_ids[mid] += 1
        irt = ID.findall(str(msg.get("In-Reply-To") or ""))
        refs = ID.findall(str(msg.get("References") or ""))
        if msg.get_content_type() == "multipart/report":
            for part in msg.walk():
                if part.get_content_type() == "text/rfc822-headers":
                    m = re.search(r"^Message-ID: (<[^>]+>)", part.get_content(), re.M | re.I)
                    if m:
                        bounce_of[mid] = m.group(1)
        refs_of[mid] = (irt, refs)
        when = email.utils.parsedate_to_datetime(str(msg["Date"]))
        if seen_ids[mid] == 1:
            dates.append((name, when, mid))
    if n != exp["messages"]:
        problem(f"Maildir holds {n} messages, expected.json says {exp['messages']}")
    if mbox_hashes != maildir_hashes:
        only_mbox = sum((mbox_hashes - maildir_hashes).values())
        only_md = sum((maildir_hashes - mbox_hashes).values())
        problem(f"mbox and Maildir differ: {only_mbox} messages only in the mbox, {only_md} only in the Maildir")
    if sum(mbox_hashes.values()) != exp["messages"]:
        problem(f"mbox holds {sum(mbox_hashes.values())} messages, expected {exp['messages']}")
    copies = sum(c - 1 for c in mbox_hashes.values() if c > 1)
    if copies != exp["duplicates"]:
        problem(f"{copies} exact copies, expected.json says {exp['duplicates']} duplicates")
    if n_malformed != exp["malformed"]:
        problem(f"{n_malformed} messages without a sender address, expected {exp['malformed']}")
    dup_ids = collections.Counter(exp["duplicate_message_ids"])
    for mid, c in seen_ids.items():
        if c != 1 + dup_ids.get(mid, 0):
            problem(f"{mid} appears {c} times")

    # 2. conversations
    conv_of = {}
    for i, conv in enumerate(exp["conversations"]):
        for mid in conv:
            if mid in conv_of:
                problem(f"{mid} in two conversations")
            conv_of[mid] = i
    if set(conv_of) != set(seen_ids):
        problem(f"conversations cover {len(conv_of)} ids, the mailbox holds {len(seen_ids)} unique well-formed ones")
    # File order of the Maildir (names start with the time the message was stored) = mbox order.
    position = {mid: i for i, (_, _, mid) in enumerate(sorted(dates, key=lambda d: int(d[0].split(".")[0])))}
    fallback = early = 0
    outside = collections.defaultdict(set)  # ids not in the mailbox -> conversations naming them
    for mid, (irt, refs) in refs_of.items():
        c = conv_of.get(mid)
        first = c is not None and exp["conversations"][c][0] == mid
        pointed = irt + refs
        if not pointed and not first and mid not in bounce_of:
            fallback += 1
        for r in pointed:
            if r not in conv_of:
                outside[r].add(c)
            elif conv_of[r] != c:
                problem(f"{mid} refers to {r} of another conversation")
        parent = irt[0] if irt else refs[-1] if refs else None
        if parent in position and position[parent] > position[mid]:
            early += 1
    for r, convs in outside.items():
        if len(convs) > 1:
            problem(f"{r}, not in the mailbox, is named by {len(convs)} conversations")
    if len(outside) != exp["stats"]["unknown_parent"]:
        problem(f"{len(outside)} ids named outside the mailbox, expected {exp['stats']['unknown_parent']}")
    for mid, orig in bounce_of.items():
        if conv_of.get(orig) != conv_of.get(mid):
            problem(f"bounce {mid} reports on {orig} of another conversation")
    if fallback != exp["stats"]["subject_fallback"]:
        problem(f"{fallback} replies without threading headers, expected {exp['stats']['subject_fallback']}")
    if len(bounce_of) != exp["stats"]["bounces"]:
        problem(f"{len(bounce_of)} delivery reports, expected {exp['stats']['bounces']}")
    ordered = sorted(dates, key=lambda d: int(d[0].split(".")[0]))
    backwards = sum(1 for a, b in zip(ordered, ordered[1:]) if b[1] < a[1])

    print(f"{n} messages in each of mbox and Maildir, identical; {len(seen_ids)} unique well-formed, "
          f"{copies} duplicates, {n_malformed} malformed")
    print(f"{len(exp['conversations'])} conversations; {fallback} subject-fallback replies; "
          f"{early} replies stored before their parent; {len(bounce_of)} bounces; "
          f"{len(outside)} conversations answer a message outside the mailbox")
    print(f"Date goes backwards between consecutive messages {backwards} times ({backwards / max(1, n):.1%}); "
          f"average size {sum(sizes) / max(1, n) / 1024:.1f} KiB, largest {max(sizes) / 1024:.0f} KiB")
    print("Maildir folders and flags:", dict(sorted(flags.items())))
    if problems:
        print(f"{len(problems)} problems", file=sys.stderr)
        sys.exit(1)
    print("OK")


if __name__ == "__main__":
    main()
