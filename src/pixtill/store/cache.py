"""A response cache: finished per-row step outputs, keyed by (step signature, row key).

Values live in SQLite (WAL mode) as tagged JSON (`pixtill.store.codec`): never pickle, so
opening a cache file runs no code. Reads happen on the caller's thread (one connection per
thread); writes go to one background thread that commits in transactions, so `put` never waits
on the disk. `flush` makes every earlier `put` durable and visible to other connections and
processes.

A cache may also read other cache files (``peers``), opened read-only: the ranks of a run on
several workers each write their own file and read every rank's, so a re-run with another
number of ranks finds every stored response.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pixtill.store.codec import decode_value, encode_value
from pixtill.store.keys import (
    NESTED_RUN_ONLY_FIELDS,
    RUN_ONLY_FIELDS,
    row_key,
    step_signature,
)
from pixtill.utils.thread_priority import lower_thread_priority

_COMMIT_INTERVAL = 0.05
_COMMIT_PUTS = 500
_IN_CHUNK = 500


def _connect_read_only(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0, check_same_thread=False
    )
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


class ResponseCache:
    """Finished per-row step outputs, keyed by (step signature, row key), in SQLite (WAL mode).

    `get`/`get_many` may be called from any thread; `put` only queues (a failed write is raised
    by the next `put`, `flush` or `close`). A `get` sees earlier `put`s at once, committed or not.
    """

    def __init__(
        self, path: Path, *, low_priority_writer: bool = False, peers: Sequence[Path] = ()
    ) -> None:
        """``low_priority_writer`` lowers the commit thread's priority (the opt-in process
        tuning of a run: commits can wait, the event loop cannot). ``peers``: other cache
        files to read (read-only) for the keys this one lacks; one that is missing or not yet
        a cache is skipped."""
        self.path = Path(path)
        self.peers = [Path(p) for p in peers if Path(p).resolve() != self.path.resolve()]
        self._low_priority = low_priority_writer
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = _connect(self.path)
        self._writer.execute("PRAGMA journal_mode=WAL")
        self._writer.execute(
            "CREATE TABLE IF NOT EXISTS responses (step TEXT NOT NULL, row_key TEXT NOT NULL, "
            "value BLOB NOT NULL, PRIMARY KEY (step, row_key)) WITHOUT ROWID"
        )
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], bytes] = {}
        self._queue: queue.Queue[tuple[str, str, bytes] | threading.Event | None] = queue.Queue()
        self._error: BaseException | None = None
        self._closed = False
        self._stats = {"hits": 0, "misses": 0, "puts": 0}
        self._hurry = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pixtill-cache", daemon=True)
        self._thread.start()

    # -- reads ---------------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError(f"the response cache {self.path} is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            self._local.conn = conn
            with self._lock:
                self._readers.append(conn)
        return conn

    def _peer_readers(self) -> list[sqlite3.Connection]:
        conns: list[sqlite3.Connection] | None = getattr(self._local, "peers", None)
        if conns is None:
            conns = []
            for peer in self.peers:
                try:
                    conns.append(_connect_read_only(peer))
                except sqlite3.Error:  # gone, or not a database: nothing to read there
                    continue
            self._local.peers = conns
            with self._lock:
                self._readers.extend(conns)
        return conns

    @staticmethod
    def _select(
        conn: sqlite3.Connection, step: str, keys: list[str], raw: dict[str, bytes]
    ) -> None:
        for start in range(0, len(keys), _IN_CHUNK):
            chunk = keys[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT row_key, value FROM responses WHERE step = ? AND row_key IN ({marks})"
            raw.update(conn.execute(query, [step, *chunk]).fetchall())

    def get(self, step: str, row_key: str) -> list[dict[str, Any]] | None:
        return self.get_many(step, [row_key]).get(row_key)

    def get_many(self, step: str, row_keys: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        conn = self._reader()
        keys = list(dict.fromkeys(row_keys))
        raw: dict[str, bytes] = {}
        self._select(conn, step, keys, raw)
        for peer in self._peer_readers():
            missing = [key for key in keys if key not in raw]
            if not missing:
                break
            try:
                self._select(peer, step, missing, raw)
            except sqlite3.DatabaseError:  # not a cache (yet): no table, or not a database
                continue
        with self._lock:
            raw.update((k, v) for k in keys if (v := self._pending.get((step, k))) is not None)
            self._stats["hits"] += len(raw)
            self._stats["misses"] += len(keys) - len(raw)
        return {key: decode_value(value) for key, value in raw.items()}

    # -- writes --------------------------------------------------------------------------
    def _check(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"writing the response cache {self.path} failed") from self._error
        if self._closed:
            raise RuntimeError(f"the response cache {self.path} is closed")

    def put(self, step: str, row_key: str, rows: list[dict[str, Any]]) -> None:
        self._check()
        value = encode_value(rows)  # encoded here: a bad value fails the caller
        with self._lock:
            self._pending[(step, row_key)] = value
            self._stats["puts"] += 1
        self._queue.put((step, row_key, value))

    def flush(self) -> None:
        """Block until everything `put` so far is committed."""
        if self._closed:
            return
        done = threading.Event()
        self._queue.put(done)
        self._hurry.set()
        done.wait()
        self._check()

    def _run(self) -> None:
        """Commit what was put, a batch every ``_COMMIT_INTERVAL`` at most.

        After the first put of a batch the thread sleeps instead of waking on every put: each
        wake-up takes the GIL from the event loop, which then waits to get it back, and per
        row that cost the loop more than the insert itself.
        """
        if self._low_priority:
            lower_thread_priority()
        stop = False
        while not stop:
            item = self._queue.get()
            if item is not None and not isinstance(item, threading.Event):
                self._hurry.wait(_COMMIT_INTERVAL)  # `flush` and `close` cut the wait short
                self._hurry.clear()
            batch: list[tuple[str, str, bytes]] = []
            waiters: list[threading.Event] = []
            while True:
                if item is None:
                    stop = True
                elif isinstance(item, threading.Event):
                    waiters.append(item)
                else:
                    batch.append(item)
                if len(batch) >= _COMMIT_PUTS:
                    self._commit(batch)
                    batch = []
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            self._commit(batch)
            for event in waiters:
                event.set()

    def _commit(self, batch: list[tuple[str, str, bytes]]) -> None:
        if not batch or self._error is not None:
            return
        try:
            self._writer.execute("BEGIN IMMEDIATE")
            self._writer.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)", batch)
            self._writer.execute("COMMIT")
        except BaseException as exc:
            self._error = exc
            if self._writer.in_transaction:
                self._writer.execute("ROLLBACK")
            return
        with self._lock:
            for step, key, value in batch:
                if self._pending.get((step, key)) is value:
                    del self._pending[(step, key)]

    def close(self) -> None:
        """Flush, stop the writer thread and close every connection. Idempotent."""
        if self._closed:
            return
        self._queue.put(None)
        self._hurry.set()
        self._thread.join()
        self._closed = True
        with self._lock:
            readers, self._readers = self._readers, []
        for conn in [*readers, self._writer]:
            conn.close()
        if self._error is not None:
            raise RuntimeError(f"writing the response cache {self.path} failed") from self._error

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- inspection ----------------------------------------------------------------------
    def size_bytes(self) -> int:
        """Bytes on disk: the database file and its write-ahead log."""
        files = (self.path, self.path.with_name(self.path.name + "-wal"))
        return sum(f.stat().st_size for f in files if f.exists())

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._stats)


__all__ = [
    "NESTED_RUN_ONLY_FIELDS",
    "RUN_ONLY_FIELDS",
    "ResponseCache",
    "decode_value",
    "encode_value",
    "row_key",
    "step_signature",
]
