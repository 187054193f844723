"""A working copy of a kept seed, opened as the server's writer opens SQLite, for the bench/
scripts that measure what a write costs. Python's own SQLite, not the one built into the server."""
import os
import shutil
import sqlite3
import tempfile


def writer_copy(seed, name):
    """(folder, connection): a copy of `seed` in a new temporary folder (remove it when done),
    in write-ahead-log mode without automatic checkpoints, with the writer's page cache (16 MB,
    or CACHE_KIB)."""
    work = tempfile.mkdtemp(prefix=f"userkeys-{name}.")
    path = os.path.join(work, f"{name}.sqlite3")
    shutil.copy(seed, path)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("PRAGMA wal_autocheckpoint = 0")
    db.execute(f"PRAGMA cache_size = -{int(os.environ.get('CACHE_KIB', '16384'))}")
    return work, db
