#!/usr/bin/env python3
"""Compares the tickets of an import with the conversations the generator wrote.

    bench/compare_grouping.py EXPECTED_JSON POSTERN_DB ACCOUNT_ID [--json]

Reads the database read-only (table messages: message_id without angle brackets, ticket_id)
and prints, over the conversations of expected.json:
  exact     conversations whose messages are all in one ticket that holds nothing else
  split     conversations spread over more than one ticket
  merged    tickets holding messages of more than one conversation
  missing   expected messages not found in the account
  extra     messages of the account that expected.json does not list (malformed entries
            an importer kept instead of quarantining, for instance)
Exit status 0 whatever the figures (it measures, the caller judges); 2 when the database
cannot be read.
"""

import collections
import json
import sqlite3
import sys


def main():
    args = [a for a in sys.argv[1:] if a != "--json"]
    if len(args) != 3:
        sys.exit(__doc__.split("\n\n")[1])
    expected_path, db_path, account = args
    conversations = json.load(open(expected_path))["conversations"]
    try:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        rows = db.execute("SELECT message_id, ticket_id FROM messages WHERE account_id = ?",
                          (int(account),)).fetchall()
    except sqlite3.Error as e:
        print(f"cannot read the messages of account {account} in {db_path}: {e}", file=sys.stderr)
        sys.exit(2)
    ticket_of = {}
    extra = 0
    for mid, ticket in rows:
        if mid is None:
            extra += 1
            continue
        ticket_of["<" + mid.strip("<>") + ">"] = ticket
    conv_of = {m: i for i, conv in enumerate(conversations) for m in conv}
    extra += sum(1 for m in ticket_of if m not in conv_of)
    convs_in_ticket = collections.defaultdict(set)
    for m, t in ticket_of.items():
        if m in conv_of:
            convs_in_ticket[t].add(conv_of[m])
    exact = split = missing = 0
    for i, conv in enumerate(conversations):
        tickets = {ticket_of[m] for m in conv if m in ticket_of}
        missing += sum(1 for m in conv if m not in ticket_of)
        if len(tickets) > 1:
            split += 1
        elif len(tickets) == 1 and convs_in_ticket[next(iter(tickets))] == {i}:
            exact += 1
    merged = sum(1 for convs in convs_in_ticket.values() if len(convs) > 1)
    result = dict(conversations=len(conversations), exact=exact, split=split, merged=merged,
                  missing=missing, extra=extra, tickets=len({t for _, t in rows}))
    if "--json" in sys.argv:
        print(json.dumps(result))
    else:
        print(f"{exact} of {len(conversations)} conversations exactly one ticket; {split} split; "
              f"{merged} tickets merge conversations; {missing} messages missing; {extra} extra; "
              f"{result['tickets']} tickets")


if __name__ == "__main__":
    main()
