"""The hub's state in SQLite under its state dir: enrolled agents, issued tokens, revocations.

One short-lived connection per call: the serving process and `bridge hub token/revoke` (run beside
it) share the file, and SQLite's own locking keeps them consistent.
"""
from __future__ import annotations

import sqlite3
from contextlib import contextmanager
import time
from pathlib import Path
from typing import Iterator, NamedTuple

SCHEMA = """
CREATE TABLE IF NOT EXISTS agents (name TEXT PRIMARY KEY, public_key TEXT NOT NULL, enrolled_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (jti TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL,
                                   issued_at REAL NOT NULL, used_at REAL);
CREATE TABLE IF NOT EXISTS revoked (name TEXT PRIMARY KEY, at REAL NOT NULL);
"""


class Agent(NamedTuple):
    """An enrolled agent: the public key its tokens are checked with."""

    name: str
    public_key: str
    enrolled_at: float


class Store:
    """The hub's SQLite file; every method opens, commits and closes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")  # one fsync per write, readers never wait: 1,000 agents enrolling at once
            db.executescript(SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """A connection closed on leaving (sqlite3's own `with` only commits: the file stays open until GC)."""
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            yield db
        finally:
            db.close()

    def add_token(self, jti: str, kind: str, name: str) -> None:
        with self._db() as db:
            db.execute("INSERT INTO tokens VALUES (?, ?, ?, ?, NULL)", (jti, kind, name, time.time()))

    def use_token(self, jti: str) -> bool:
        """Mark a one-time token used; False if it is unknown or was used already."""
        with self._db() as db:
            cursor = db.execute("UPDATE tokens SET used_at = ? WHERE jti = ? AND used_at IS NULL", (time.time(), jti))
            return cursor.rowcount == 1

    def enrol(self, name: str, public_key: str) -> None:
        """Record (or replace) an agent's key and lift an earlier revocation of its name."""
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO agents VALUES (?, ?, ?)", (name, public_key, time.time()))
            db.execute("DELETE FROM revoked WHERE name = ?", (name,))

    def agent(self, name: str) -> Agent | None:
        with self._db() as db:
            row = db.execute("SELECT name, public_key, enrolled_at FROM agents WHERE name = ?", (name,)).fetchone()
        return Agent(*row) if row else None

    def agents(self) -> list[Agent]:
        with self._db() as db:
            return [Agent(*row) for row in db.execute("SELECT name, public_key, enrolled_at FROM agents ORDER BY name")]

    def revoke(self, name: str) -> bool:
        """Revoke a name (agent or user): its key is dropped and tokens issued until now stop working.

        False when the hub never issued a token to that name.
        """
        with self._db() as db:
            known = db.execute("SELECT 1 FROM tokens WHERE name = ? UNION SELECT 1 FROM agents WHERE name = ?",
                               (name, name)).fetchone()
            if not known:
                return False
            db.execute("DELETE FROM agents WHERE name = ?", (name,))
            db.execute("INSERT OR REPLACE INTO revoked VALUES (?, ?)", (name, time.time()))
            return True

    def revoked_at(self, name: str) -> float | None:
        with self._db() as db:
            row = db.execute("SELECT at FROM revoked WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def revoked_since(self, since: float) -> list[tuple[str, float]]:
        """Names revoked after `since`, oldest first: the serving hub polls this to close live connections."""
        with self._db() as db:
            return list(db.execute("SELECT name, at FROM revoked WHERE at > ? ORDER BY at", (since,)))
