#!/usr/bin/env python3
"""What folding usage costs SQLite per row, by how many rows one fold merges and how many one
transaction folds: the fold's two upserts (key_usage, key_daily_uses) for uses of keys spread
over the whole site, as the server folds them: a fold's rows sorted by key, cut into pieces of
consecutive keys, a transaction each.

    python3 bench/fold_pieces.py SEED.sqlite3      # e.g. a site kept by bench/scale.sh's SEED_CACHE

Works on a copy of the file, first given one usage row per key for today and daily counts for
HISTORY earlier days (10 by default: a site whose keys have all been used for a while), then for
each fold size in FOLDS and each piece size in PIECES folds that many uses of random keys, with
a passive checkpoint between transactions as the server's checkpointer runs. Uses Python's own
SQLite, not the one built into the server, with the writer's page cache (16 MB, or CACHE_KIB).
Prints microseconds per folded row and the log's growth per row.
"""
import datetime
import os
import random
import shutil
import sqlite3
import sys
import time

from seed_copy import writer_copy

FOLDS = [int(f) for f in os.environ.get("FOLDS", "150000 320000 600000").split()]
PIECES = [int(p) for p in os.environ.get("PIECES", "20000 50000").split()]
HISTORY = int(os.environ.get("HISTORY", "10"))
PER_STATEMENT = 500
AGENT = 1
IP = "198.51.100.7"


def main(seed):
    work, db = writer_copy(seed, "fold")
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("INSERT OR IGNORE INTO user_agents (id, agent) VALUES (1, 'bench')")
    day = (datetime.date.today() - datetime.date(1970, 1, 1)).days
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    keys = [row[0] for row in db.execute("SELECT id FROM user_keys")]
    started = time.monotonic()
    db.execute("BEGIN")
    db.executemany("INSERT OR IGNORE INTO key_usage VALUES (?, ?, ?, ?, ?, 1)", ((k, AGENT, IP, stamp, stamp) for k in keys))
    for back in range(HISTORY + 1):
        db.executemany("INSERT OR IGNORE INTO key_daily_uses (key_id, day, hits) VALUES (?, ?, 1)", ((k, day - back) for k in keys))
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    print(f"{len(keys)} keys, each with a usage row and {HISTORY + 1} days of counts ({time.monotonic() - started:.0f} s); SQLite {sqlite3.sqlite_version}")
    usage = ("INSERT INTO key_usage (key_id, agent_id, ip, first_seen, last_seen, hits) "
             "SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6 FROM (VALUES {}) AS v "
             "WHERE EXISTS (SELECT 1 FROM user_keys k WHERE k.id = v.column1) "
             "ON CONFLICT (key_id, agent_id, ip) DO UPDATE SET hits = key_usage.hits + excluded.hits, "
             "first_seen = MIN(key_usage.first_seen, excluded.first_seen), "
             "last_seen = MAX(key_usage.last_seen, excluded.last_seen) RETURNING key_id")
    # Only for the keys the usage upsert returned, so without looking each key up again.
    daily = ("INSERT INTO key_daily_uses (key_id, day, hits) SELECT v.column1, v.column2, v.column3 FROM (VALUES {}) AS v "
             "WHERE true ON CONFLICT (key_id, day) DO UPDATE SET hits = key_daily_uses.hits + excluded.hits")
    for fold in FOLDS:
        for piece in PIECES:
            chosen = sorted(random.sample(keys, fold))
            spent, logged = 0.0, 0
            for at in range(0, fold, piece):
                rows = chosen[at:at + piece]
                t0 = time.monotonic()
                db.execute("BEGIN IMMEDIATE")
                for s in range(0, len(rows), PER_STATEMENT):
                    part = rows[s:s + PER_STATEMENT]
                    values = ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(part))
                    db.execute(usage.format(values), [x for k in part for x in (k, AGENT, IP, stamp, stamp, 1)]).fetchall()
                    values = ", ".join(["(?, ?, ?)"] * len(part))
                    db.execute(daily.format(values), [x for k in part for x in (k, day, 1)])
                db.execute("COMMIT")
                spent += time.monotonic() - t0
                logged += db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            print(f"folds of {fold:7d} rows in pieces of {piece:6d}: {spent / fold * 1e6:5.1f} µs a row, "
                  f"{logged * 4096 / fold / 1024:5.2f} KB of log a row", flush=True)
    shutil.rmtree(work)


if __name__ == "__main__":
    main(sys.argv[1])
