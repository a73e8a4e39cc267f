"""A response cache: finished per-row step outputs, keyed by (step signature, row key).

Values live in SQLite (WAL mode) as a small tagged JSON: never pickle, so opening a cache file
runs no code. Reads happen on the caller's thread (one connection per thread); writes go to one
background thread that commits in transactions, so `put` never waits on the disk. `flush` makes
every earlier `put` durable and visible to other connections and processes.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
import queue
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path, PurePath
from typing import Any

import orjson
import pybase64
from PIL import Image as PILImage
from pydantic import BaseModel

from pixtill.images import ImageError, ImageRef, is_image_value
from pixtill.utils import fast_json
from pixtill.utils.b64 import encode_b64
from pixtill.utils.thread_priority import lower_thread_priority

RUN_ONLY_FIELDS: frozenset[str] = frozenset(
    {"input_batch_size", "batch_size", "replicas", "input_mappings"}
)
"""Step fields that change how a step runs, never what it outputs (left out of signatures).

``name`` and ``output_mappings`` stay in: cached rows hold the step's output columns under their
mapped names and metadata keys named after the step."""
NESTED_RUN_ONLY_FIELDS: frozenset[str] = frozenset(
    {"max_concurrent_requests", "timeout", "max_retries", "requests_per_minute"}
    | {"tokens_per_minute", "api_key", "token"}
)
"""The same, for fields of nested models (the LLM, its transport) and of the step itself."""

_COMMIT_INTERVAL = 0.05
_COMMIT_PUTS = 500
_IN_CHUNK = 500
_TAGS = ("__bytes__", "__image__", "__image_url__", "__path__", "__dict__")
_TAG_BYTES = tuple(f'"{tag}"'.encode() for tag in _TAGS)


# -- the value codec -------------------------------------------------------------------------


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_encode(item) for item in value]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"cannot cache a dict with a {type(key).__name__} key {key!r}")
            out[key] = _encode(item)
        # A plain dict that happens to use a tag as a key is wrapped, so it decodes as itself.
        return {"__dict__": out} if any(tag in out for tag in _TAGS) else out
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"__bytes__": encode_b64(value)}
    if isinstance(value, (ImageRef, PILImage.Image)):
        ref = ImageRef.from_value(value)
        if ref.url is not None:  # never fetched: a URL is stored as the URL
            return {"__image_url__": ref.url}
        data = ref.get_bytes()
        return {"__image__": encode_b64(data), "format": ref.format}
    if isinstance(value, Path):
        return {"__path__": str(value)}
    raise TypeError(f"cannot cache a value of type {type(value).__name__}")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(item) for item in value]
    if not isinstance(value, dict):
        return value
    if "__dict__" in value and len(value) == 1:
        return {key: _decode(item) for key, item in value["__dict__"].items()}
    if "__bytes__" in value and len(value) == 1:
        return pybase64.b64decode(value["__bytes__"])
    if "__image__" in value:
        return ImageRef("bytes", data=pybase64.b64decode(value["__image__"]))
    if "__image_url__" in value and len(value) == 1:
        return ImageRef("url", url=value["__image_url__"])
    if "__path__" in value and len(value) == 1:
        return Path(value["__path__"])
    return {key: _decode(item) for key, item in value.items()}


def encode_value(value: Any) -> bytes:
    """Tagged JSON: JSON values as is, ``bytes`` and images (`ImageRef`, PIL) as base64."""
    try:
        # The usual value is plain JSON (text, numbers, metadata dicts): orjson encodes it in
        # one C pass, ~30x faster than walking it here. Anything else, a dict key that looks
        # like a tag, or a "null" (which may be a NaN that orjson writes as null) goes the
        # tagged way.
        data = fast_json.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: bytes, images, paths, non-str keys, ...
        pass
    else:
        if b"null" not in data and not any(tag in data for tag in _TAG_BYTES):
            return data
    return json.dumps(_encode(value), ensure_ascii=False, separators=(",", ":")).encode()


def decode_value(text: str | bytes) -> Any:
    """The inverse of `encode_value`; images come back as `ImageRef`."""
    data = text.encode() if isinstance(text, str) else text
    value = fast_json.loads(data)
    return _decode(value) if any(tag in data for tag in _TAG_BYTES) else value


# -- keys ------------------------------------------------------------------------------------


def _canonical(value: Any) -> Any:
    """A JSON-able stand-in for ``value``; images become their content hash."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, str):
        if value[:5].lower() == "data:":
            try:
                return {"\x00image": ImageRef.from_value(value).content_hash()}
            except ImageError:
                return value
        return value
    if isinstance(value, ImageRef) and value.url is not None:
        return value.url
    if isinstance(value, dict) and is_image_value(value) and not value.get("bytes"):
        return str(value["path"])  # a path-only image dict: hashed as its path string
    if is_image_value(value):
        try:
            return {"\x00image": ImageRef.from_value(value).content_hash()}
        except ImageError:  # e.g. a path that is gone: the row fails later, keep it distinct
            return {"\x00unreadable image": repr(value)}
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _canonical(item) for key, item in value.items()}
    if isinstance(value, Path):
        return str(value)
    return f"{type(value).__qualname__}:{value!r}"


def _finite(value: float) -> Any:
    """``value``, or a tagged stand-in for NaN and the infinities (which orjson writes as
    ``null``, the same as None)."""
    return value if math.isfinite(value) else {"\x00float": repr(value)}


def _digest(payload: Any) -> str:
    """sha256 of ``payload`` as canonical JSON (sorted keys; unknown types by their repr)."""
    try:  # orjson: ~10x the stdlib's speed on a row key
        data = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS, default=repr)
    except TypeError:  # e.g. an int beyond 64 bits, a non-str key
        text = json.dumps(
            payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=repr
        )
        data = text.encode()
    return hashlib.sha256(data).hexdigest()


def row_key(row: Mapping[str, Any], columns: Iterable[str]) -> str:
    """sha256 of the listed columns of ``row`` (only those), images by content hash."""
    names = sorted(set(columns))
    present = {name: _canonical(row[name]) for name in names if name in row}
    missing = [name for name in names if name not in row]
    return _digest({"columns": present, "missing": missing})


def step_signature(step: BaseModel, *, exclude: AbstractSet[str] = RUN_ONLY_FIELDS) -> str:
    """sha256 of the step's configuration: its class, and every field (recursing into nested
    models such as the step's `llm`, by their runtime class) except those that only change how
    it runs (``exclude`` at the top level, `NESTED_RUN_ONLY_FIELDS` at every level) and fields
    marked ``exclude=True`` (secrets). Stable across processes: an object without a
    serialization is represented by its class, never by a repr holding a memory address."""
    return _digest(_config_of(step, exclude))


def _config_of(value: Any, exclude: AbstractSet[str] = frozenset()) -> Any:
    if isinstance(value, BaseModel):
        cls = type(value)
        out: dict[str, Any] = {"__class__": f"{cls.__module__}.{cls.__qualname__}"}
        for name, field in cls.model_fields.items():
            if name in exclude or name in NESTED_RUN_ONLY_FIELDS or field.exclude:
                continue
            out[name] = _config_of(getattr(value, name, None))
        return out
    if isinstance(value, float):
        return _finite(value)
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): _config_of(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_config_of(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, enum.Enum):
        return _config_of(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            "__class__": type(value).__qualname__,
            **{f.name: _config_of(getattr(value, f.name)) for f in dataclasses.fields(value)},
        }
    text = repr(value)
    if " at 0x" in text:  # a default repr: the address differs in every process
        kind = type(value)
        return f"<{kind.__module__}.{kind.__qualname__}>"
    return text


# -- the cache -------------------------------------------------------------------------------


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

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
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

    def get(self, step: str, row_key: str) -> list[dict[str, Any]] | None:
        return self.get_many(step, [row_key]).get(row_key)

    def get_many(self, step: str, row_keys: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        conn = self._reader()
        keys = list(dict.fromkeys(row_keys))
        raw: dict[str, bytes] = {}
        for start in range(0, len(keys), _IN_CHUNK):
            chunk = keys[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT row_key, value FROM responses WHERE step = ? AND row_key IN ({marks})"
            raw.update(conn.execute(query, [step, *chunk]).fetchall())
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
        lower_thread_priority()  # commits can wait; the event loop cannot
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
