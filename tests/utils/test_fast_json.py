from __future__ import annotations

import ctypes
import ctypes.util
import json

import orjson
import pytest

from pixtill.utils import fast_json


def test_same_bytes_as_orjson_and_the_same_errors() -> None:
    value = {"text": 'é "quoted"', "n": [1, 2.5, None, True], "nested": {"k": "v"}}
    assert fast_json.dumps(value) == orjson.dumps(value)
    assert json.loads(fast_json.dumps({1: "a"}, option=orjson.OPT_NON_STR_KEYS)) == {"1": "a"}
    with pytest.raises(TypeError):
        fast_json.dumps({"x": object()})


def test_the_result_holds_no_more_memory_than_its_length() -> None:
    name = ctypes.util.find_library("c")
    if not name:
        pytest.skip("no C library to ask for allocation sizes")
    libc = ctypes.CDLL(name)
    usable = libc.malloc_usable_size
    usable.argtypes, usable.restype = [ctypes.c_void_p], ctypes.c_size_t
    body = fast_json.dumps({"url": "data:image/png;base64," + "QUJD" * 13_000})
    assert len(body) > 52_000
    assert usable(id(body)) < 2 * len(body)  # orjson's own buffer is ~10x the length


def test_loads_reads_what_only_the_stdlib_reads_and_refuses_bad_json() -> None:
    assert fast_json.loads(b'{"a": [1, "x", null]}') == {"a": [1, "x", None]}
    assert fast_json.loads('{"lp": -Infinity}') == {"lp": float("-inf")}
    with pytest.raises(ValueError, match="line 1"):
        fast_json.loads(b'{"choices": [')
