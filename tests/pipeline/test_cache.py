from __future__ import annotations

import base64
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pydantic import BaseModel, Field

from doubles import DescribingLLM
from pixtill.images import ImageRef
from pixtill.steps.tasks import TextGeneration
from pixtill.store.cache import (
    ResponseCache,
    decode_value,
    encode_value,
    row_key,
    step_signature,
)
from sample_images import image_bytes

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def cache(tmp_path: Path) -> Any:
    c = ResponseCache(tmp_path / "nested" / "cache.sqlite")
    yield c
    c.close()


def _count_rows(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
    finally:
        conn.close()


# -- the codec ------------------------------------------------------------------------------


def test_codec_round_trip_of_plain_values() -> None:
    value = {
        "text": "héllo",
        "n": 3,
        "x": 1.5,
        "flag": True,
        "none": None,
        "nested": {"list": [1, {"deep": [None, "a"]}], "empty": {}},
        "blob": b"\x00\x01\xff",
        "tricky": {"__bytes__": "not really bytes"},
        "path": Path("/tmp/some/file.png"),
    }
    decoded = decode_value(encode_value(value))
    assert decoded == value


def test_codec_images_come_back_as_image_refs() -> None:
    png = image_bytes(5, 4)
    pil = Image.new("RGB", (3, 2), (1, 2, 3))
    decoded = decode_value(
        encode_value(
            {
                "ref": ImageRef.from_value(png),
                "pil": pil,
                "url": ImageRef.from_value("https://example.com/a.png"),
            }
        )
    )
    assert isinstance(decoded["ref"], ImageRef)
    assert decoded["ref"].get_bytes() == png
    assert decoded["ref"].format == "PNG"
    assert decoded["pil"].to_pil().size == (3, 2)
    assert decoded["url"].url == "https://example.com/a.png"


def test_codec_refuses_unknown_types() -> None:
    with pytest.raises(TypeError, match="object"):
        encode_value({"x": object()})
    with pytest.raises(TypeError, match="int key"):
        encode_value({1: "a"})


def test_codec_keeps_what_plain_json_fast_path_would_lose() -> None:
    # NaN and infinities (orjson would write null), None beside them, a tag-like key.
    value = [{"score": float("nan"), "hi": float("inf"), "none": None, "text": "null"}]
    decoded = decode_value(encode_value(value))
    assert math.isnan(decoded[0]["score"]) and decoded[0]["hi"] == float("inf")
    assert decoded[0]["none"] is None and decoded[0]["text"] == "null"
    plain = {"generation": "a cat", "meta": {"tokens": [1, 2], "ok": True}}
    assert encode_value(plain) == json.dumps(plain, separators=(",", ":")).encode()
    assert decode_value(encode_value(plain)) == plain
    assert decode_value(encode_value({"__image__": "x"})) == {"__image__": "x"}


# -- the cache ------------------------------------------------------------------------------


def test_put_get_round_trip(cache: ResponseCache) -> None:
    png = image_bytes(6, 6)
    rows = [
        {
            "generation": "a caption",
            "raw": b"\x89raw",
            "image": ImageRef.from_value(png),
            "meta": {"stats": {"input_tokens": 3}, "list": [1, [2, {"k": None}]]},
            "none": None,
        },
        {"generation": None},
    ]
    cache.put("sig", "key", rows)
    got = cache.get("sig", "key")  # visible before the commit, from memory
    cache.flush()
    assert got == cache.get("sig", "key")
    assert got is not None
    assert got[0]["raw"] == b"\x89raw"
    assert got[0]["image"].get_bytes() == png
    assert got[0]["meta"] == rows[0]["meta"]
    assert got[0]["none"] is None
    assert got[1] == {"generation": None}
    assert cache.get("sig", "other") is None
    assert cache.get("other-sig", "key") is None
    assert cache.stats() == {"hits": 2, "misses": 2, "puts": 1}


def test_put_replaces(cache: ResponseCache) -> None:
    cache.put("s", "k", [{"v": 1}])
    cache.flush()
    cache.put("s", "k", [{"v": 2}])
    cache.flush()
    assert cache.get("s", "k") == [{"v": 2}]
    assert _count_rows(cache.path) == 1


def test_get_many_chunks_the_query(cache: ResponseCache) -> None:
    for i in range(1200):
        cache.put("s", f"k{i}", [{"i": i}])
    cache.flush()
    keys = [f"k{i}" for i in range(0, 1300, 1)]
    got = cache.get_many("s", keys)
    assert len(got) == 1200
    assert got["k1199"] == [{"i": 1199}]
    assert "k1250" not in got
    assert cache.get_many("s", []) == {}


def test_persists_across_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    first = ResponseCache(path)
    first.put("s", "k", [{"generation": "kept"}])
    first.close()
    first.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        first.put("s", "k2", [])
    with pytest.raises(RuntimeError, match="closed"):
        first.get("s", "k")
    second = ResponseCache(path)
    try:
        assert second.get("s", "k") == [{"generation": "kept"}]
        assert second.size_bytes() > 0
    finally:
        second.close()


def test_wal_mode_is_on(cache: ResponseCache) -> None:
    conn = sqlite3.connect(cache.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_flush_makes_puts_visible_to_another_connection(cache: ResponseCache) -> None:
    for i in range(50):
        cache.put("s", f"k{i}", [{"i": i}])
    cache.flush()
    assert _count_rows(cache.path) == 50


def test_puts_commit_without_flush(cache: ResponseCache) -> None:
    cache.put("s", "k", [{"i": 1}])
    deadline = time.monotonic() + 5
    while _count_rows(cache.path) == 0:
        assert time.monotonic() < deadline, "the writer thread never committed"
        time.sleep(0.01)


def test_reads_from_several_threads(cache: ResponseCache) -> None:
    for i in range(20):
        cache.put("s", f"k{i}", [{"i": i}])
    cache.flush()
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for i in range(20):
                assert cache.get("s", f"k{i}") == [{"i": i}]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_flushed_rows_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "killed.sqlite"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(SRC)!r})
        from pathlib import Path
        from pixtill.store.cache import ResponseCache

        cache = ResponseCache(Path({str(path)!r}))
        for i in range(300):
            cache.put("s", f"k{{i}}", [{{"i": i, "blob": b"x" * 100}}])
        cache.flush()
        print("flushed", flush=True)
        i = 300
        while True:  # keep writing until killed
            cache.put("s", f"k{{i}}", [{{"i": i}}])
            i += 1
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "flushed"
        time.sleep(0.3)  # mid-stream: puts queued, transactions being committed
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    reopened = ResponseCache(path)
    try:
        got = reopened.get_many("s", [f"k{i}" for i in range(300)])
        assert len(got) == 300
        assert got["k299"] == [{"i": 299, "blob": b"x" * 100}]
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            conn.close()
    finally:
        reopened.close()


def test_a_failed_write_is_reported(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    conn = sqlite3.connect(cache.path)
    conn.execute("DROP TABLE responses")
    conn.commit()
    conn.close()
    cache.put("s", "k", [{"i": 1}])
    with pytest.raises(RuntimeError, match="writing the response cache"):
        cache.flush()
    with pytest.raises(RuntimeError, match="writing the response cache"):
        cache.close()


# -- row keys -------------------------------------------------------------------------------


def test_row_key_is_the_same_for_every_form_of_one_image() -> None:
    png = image_bytes(7, 5)
    data_url = "data:image/png;base64," + base64.b64encode(png).decode()
    forms = [
        png,
        data_url,
        ImageRef.from_value(png),
        ImageRef.from_value(data_url),
        {"bytes": png, "path": None},
    ]
    keys = {
        row_key({"image": form, "instruction": "what?"}, ["image", "instruction"]) for form in forms
    }
    assert len(keys) == 1


def test_row_key_depends_on_listed_columns_only() -> None:
    row = {"instruction": "what?", "image": image_bytes(), "extra": 1}
    key = row_key(row, ["instruction", "image"])
    assert row_key({**row, "extra": 2}, ["instruction", "image"]) == key
    assert row_key(dict(reversed(list(row.items()))), ["image", "instruction"]) == key
    assert row_key({**row, "instruction": "why?"}, ["instruction", "image"]) != key
    other = image_bytes(color=(0, 0, 0))
    assert row_key({**row, "image": other}, ["instruction", "image"]) != key


def test_row_key_missing_is_not_none() -> None:
    assert row_key({"a": None}, ["a"]) != row_key({}, ["a"])
    assert row_key({"a": "x"}, ["a", "b"]) != row_key({"a": "x", "b": None}, ["a", "b"])


def test_row_key_urls_and_paths_stay_strings(tmp_path: Path) -> None:
    url = "https://example.com/cat.png"
    assert row_key({"image": url}, ["image"]) == row_key(
        {"image": ImageRef.from_value(url)}, ["image"]
    )  # nothing fetched
    path = tmp_path / "a.png"
    path.write_bytes(image_bytes())
    # A path string is hashed as a string; an ImageRef (what the executor passes for image
    # columns) by content.
    assert row_key({"image": str(path)}, ["image"]) != row_key({"image": image_bytes()}, ["image"])
    assert row_key({"image": ImageRef.from_value(path)}, ["image"]) == row_key(
        {"image": image_bytes()}, ["image"]
    )


def test_row_key_of_nested_and_odd_values() -> None:
    messages = [{"role": "user", "content": [{"type": "image", "image": image_bytes()}]}]
    same = [
        {
            "role": "user",
            "content": [{"type": "image", "image": ImageRef.from_value(image_bytes())}],
        }
    ]
    assert row_key({"messages": messages}, ["messages"]) == row_key(
        {"messages": same}, ["messages"]
    )
    assert row_key({"t": (1, 2)}, ["t"]) == row_key({"t": [1, 2]}, ["t"])
    assert len(row_key({"p": Path("x"), "o": 1.5}, ["p", "o"])) == 64


def test_row_key_tells_nan_and_infinity_from_none() -> None:
    keys = {row_key({"x": value}, ["x"]) for value in (None, math.nan, math.inf, -math.inf)}
    assert len(keys) == 4
    assert row_key({"x": [math.nan]}, ["x"]) != row_key({"x": [None]}, ["x"])


def test_row_key_of_values_orjson_cannot_write() -> None:
    big = 2**70  # beyond 64 bits: the stdlib encoder takes over
    assert row_key({"x": big}, ["x"]) == row_key({"x": big}, ["x"])
    assert row_key({"x": big}, ["x"]) != row_key({"x": big + 1}, ["x"])


def test_step_signature_tells_nan_from_none() -> None:
    from pixtill.steps import LoadDataFromDicts

    nan_step = LoadDataFromDicts(name="load", data=[{"x": math.nan}])
    none_step = LoadDataFromDicts(name="load", data=[{"x": None}])
    assert step_signature(nan_step) != step_signature(none_step)


# -- step signatures ------------------------------------------------------------------------


class FakeLLM(BaseModel):
    model_id: str = "m"
    generation_kwargs: dict[str, Any] = Field(default_factory=dict)
    timeout: float = 30
    max_retries: int = 3
    api_key: str | None = None


class FakeStep(BaseModel):
    name: str = "step"
    input_batch_size: int = 50
    template: str = "{{ instruction }}"
    llm: FakeLLM = Field(default_factory=FakeLLM)
    helpers: list[FakeLLM] = Field(default_factory=list)
    handle: Any = None


def test_step_signature_follows_outputs_not_run_settings() -> None:
    base = step_signature(FakeStep())
    assert step_signature(FakeStep(input_batch_size=3)) == base
    # Cached rows carry the step's name (metadata keys), so a renamed step recomputes.
    assert step_signature(FakeStep(name="other")) != base
    assert step_signature(FakeStep(llm=FakeLLM(timeout=1, max_retries=9, api_key="k"))) == base
    assert step_signature(FakeStep(helpers=[FakeLLM(timeout=1)])) == step_signature(
        FakeStep(helpers=[FakeLLM()])
    )
    assert step_signature(FakeStep(template="{{ instruction }}!")) != base
    assert step_signature(FakeStep(llm=FakeLLM(model_id="n"))) != base
    assert step_signature(FakeStep(llm=FakeLLM(generation_kwargs={"temperature": 0.2}))) != base
    assert step_signature(FakeStep(), exclude=set()) != base  # input_batch_size counts now


def test_step_signature_of_unserializable_fields() -> None:
    class Handle:
        def __repr__(self) -> str:
            return "Handle()"

    assert step_signature(FakeStep(handle=Handle())) == step_signature(FakeStep(handle=Handle()))

    class Opaque:  # default repr, with a memory address that differs per process
        pass

    assert step_signature(FakeStep(handle=Opaque())) == step_signature(FakeStep(handle=Opaque()))


def test_step_signature_of_a_real_task() -> None:
    def task(**kwargs: Any) -> TextGeneration:
        llm_kwargs = kwargs.pop("llm_kwargs", {})
        return TextGeneration(llm=DescribingLLM(**llm_kwargs), **kwargs)

    base = step_signature(task(name="a"))
    assert step_signature(task(name="a", input_batch_size=7, replicas=2)) == base
    # The model is part of the signature by its runtime class and settings, though the field
    # is declared as the `LLM` base class.
    assert step_signature(task(name="a", llm_kwargs={"model_id": "other/model"})) != base
    assert step_signature(task(name="a", output_mappings={"generation": "answer"})) != base
    assert step_signature(task(name="a", template="Q: {{ instruction }}")) != base
    assert (
        step_signature(task(name="a", llm_kwargs={"generation_kwargs": {"temperature": 1}})) != base
    )
