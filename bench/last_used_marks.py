#!/usr/bin/env python3
"""What moving keys' "last used" marks costs SQLite, a thousand to a transaction as the usage
writer moves them: the statement the server used before (time and address set together) against
the two it uses now (the time, then the address only where it changed), for keys marked for the
first time and for keys used again from the same address.

    python3 bench/last_used_marks.py SEED.sqlite3      # e.g. a site kept by bench/scale.sh's SEED_CACHE

Works on a copy of the file. Uses Python's own SQLite, not the one built into the server, with
the writer's page cache (16 MB). Prints milliseconds per thousand marks, the median of ROUNDS
transactions (a log checkpoint between them, as the server's checkpointer keeps the log short).
"""
import os
import random
import shutil
import sqlite3
import statistics
import sys
import time

from seed_copy import writer_copy

ROUNDS = int(os.environ.get("ROUNDS", "15"))
MARKS = 1000
SAME_IP = "0000000000000000000ffff7f000001"

TOGETHER = ["UPDATE key_last_use SET last_used_at = v.column2, last_used_ip = v.column3, last_used_ip_hex = v.column4 "
            "FROM (VALUES {}) AS v WHERE key_last_use.key_id = v.column1 "
            "AND (key_last_use.last_used_at IS NULL OR key_last_use.last_used_at < v.column2)"]
APART = ["UPDATE key_last_use SET last_used_at = v.column2 FROM (VALUES {}) AS v "
         "WHERE key_last_use.key_id = v.column1 "
         "AND (key_last_use.last_used_at IS NULL OR key_last_use.last_used_at < v.column2)",
         "UPDATE key_last_use SET last_used_ip = v.column3, last_used_ip_hex = v.column4 FROM (VALUES {}) AS v "
         "WHERE key_last_use.key_id = v.column1 AND key_last_use.last_used_at = v.column2 "
         "AND key_last_use.last_used_ip_hex IS NOT v.column4"]


def main(seed):
    work, db = writer_copy(seed, "marks")
    keys = [row[0] for row in db.execute("SELECT key_id FROM key_last_use WHERE last_used_at IS NULL")]
    random.shuffle(keys)
    print(f"{len(keys)} keys never marked, SQLite {sqlite3.sqlite_version}; ms per {MARKS} marks (median of {ROUNDS})")
    clock = [0]

    def stamp():
        clock[0] += 1
        s = clock[0]
        return f"2027-01-{1 + s // 86400:02d} {s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d}"

    def transaction(statements, batch):
        values = ",".join("(?,?,?,?)" for _ in batch)
        params = [p for key in batch for p in (key, stamp(), "127.0.0.1", SAME_IP)]
        started = time.perf_counter()
        db.execute("BEGIN")
        for sql in statements:
            db.execute(sql.format(values), params)
        db.execute("COMMIT")
        took = time.perf_counter() - started
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return took * 1000

    fresh = iter(range(0, len(keys), MARKS))
    first = {"together": [], "apart": []}
    for _ in range(ROUNDS):
        for name, statements in (("together", TOGETHER), ("apart", APART)):
            batch = sorted(keys[next(fresh):][:MARKS])
            first[name].append(transaction(statements, batch))
    # A site that has run a while: every key marked once, from the same address.
    db.execute("UPDATE key_last_use SET last_used_at = '2027-01-01 00:00:00', last_used_ip = '127.0.0.1', "
               "last_used_ip_hex = ? WHERE last_used_at IS NULL", (SAME_IP,))
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    everyone = [row[0] for row in db.execute("SELECT key_id FROM key_last_use")]
    again = {"together": [], "apart": []}
    for _ in range(ROUNDS):
        for name, statements in (("together", TOGETHER), ("apart", APART)):
            again[name].append(transaction(statements, sorted(random.sample(everyone, MARKS))))
    for name in ("together", "apart"):
        print(f"  {name:8}  first marks {statistics.median(first[name]):6.1f} ms | "
              f"every key marked, used again from the same address {statistics.median(again[name]):6.1f} ms")
    db.close()
    shutil.rmtree(work)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
