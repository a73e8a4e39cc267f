"""Every spelling of a missing value (None, NaN of any float type, pandas NA/NaT, numpy NaT,
Decimal NaN) in a text column fails the row naming the column; none reaches the model as the
text "<NA>", "NaT" or "nan"."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest

from doubles import DescribingLLM
from pixtill.prompts import is_missing
from pixtill.steps.tasks import METADATA_COLUMN, ChatGeneration, TextGeneration

MISSING: dict[str, tuple[Any, str]] = {
    "None": (None, "None"),
    "float nan": (float("nan"), "nan"),
    "pd.NA": (pd.NA, "<NA>"),
    "pd.NaT": (pd.NaT, "NaT"),
    "np.float64 nan": (np.float64("nan"), "nan"),
    "np.float32 nan": (np.float32("nan"), "nan"),
    "np.float16 nan": (np.float16("nan"), "nan"),
    "np.longdouble nan": (np.longdouble("nan"), "nan"),
    "np.datetime64 NaT": (np.datetime64("NaT"), "NaT"),
    "np.datetime64 NaT ns": (np.datetime64("NaT", "ns"), "NaT"),
    "np.timedelta64 NaT": (np.timedelta64("NaT", "s"), "NaT"),
    "Decimal NaN": (Decimal("NaN"), "NaN"),
    "Decimal sNaN": (Decimal("sNaN"), "sNaN"),
    "complex nan": (complex(float("nan"), 0.0), "(nan+0j)"),
}
PRESENT: list[Any] = [
    "",
    "text",
    0,
    0.0,
    float("inf"),
    np.float64(1.5),
    np.int64(3),
    np.datetime64("2024-01-01"),
    pd.Timestamp("2024-01-01"),
    Decimal("1.5"),
    np.array([np.nan, np.nan]),
    [None],
    False,
]


@pytest.mark.parametrize("name", list(MISSING))
def test_every_missing_value_is_missing(name: str) -> None:
    assert is_missing(MISSING[name][0])


@pytest.mark.parametrize("value", PRESENT, ids=repr)
def test_values_are_not_missing(value: Any) -> None:
    assert not is_missing(value)


@pytest.mark.parametrize("template", [None, "Q: {{ instruction }}"])
@pytest.mark.parametrize("name", list(MISSING))
def test_text_generation_fails_the_row_for_every_missing_value(
    name: str, template: str | None
) -> None:
    value, shown = MISSING[name]
    llm = DescribingLLM()
    options = {} if template is None else {"template": template}
    task = TextGeneration(name="t", llm=llm, **options)
    task.load()
    try:
        rows = next(task.process([{"instruction": "fine"}, {"instruction": value}]))
    finally:
        task.unload()
    assert rows[0]["generation"] is not None
    assert rows[1]["generation"] is None
    error = rows[1][METADATA_COLUMN]["error_t"]
    assert error.startswith(
        f"step 't': row 1, column 'instruction': expected text, got {shown} (a missing value)"
    )
    assert len(llm.calls) == 1  # only the good row reached the model


@pytest.mark.parametrize("name", list(MISSING))
def test_chat_generation_fails_the_row_for_missing_text_and_content(name: str) -> None:
    value, shown = MISSING[name]
    llm = DescribingLLM()
    task = ChatGeneration(name="chat", llm=llm)
    task.load()
    try:
        rows = next(
            task.process(
                [
                    {"messages": [{"role": "user", "content": [{"type": "text", "text": value}]}]},
                    {"messages": [{"role": "user", "content": value}]},
                ]
            )
        )
    finally:
        task.unload()
    for position, row in enumerate(rows):
        assert row["generation"] is None
        error = row[METADATA_COLUMN]["error_chat"]
        assert error.startswith(f"step 'chat': row {position}, column 'messages': message 0: ")
        assert f"{shown} " in error
    assert llm.calls == []


def test_the_check_imports_neither_pandas_nor_numpy() -> None:
    code = (
        "import sys, pixtill.prompts as p; assert p.is_missing(float('nan'));"
        "assert 'pandas' not in sys.modules, 'pandas imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
