"""Datasets and a headless Chromium for the viewer's tests.

`make_rows` builds a small dataset the way pixtill writes one (image columns as
`datasets.Image`, a ``pixtill_metadata`` struct with errors and token counts), including a
caption that is an HTML injection attempt. `chrome` drives Debian's chromium through the
system chromedriver (no browser download); the tests that need it skip when it is missing.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"><b>bold</b>'
FAILED_ROWS = (1, 4)


def png(colour: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def make_rows(count: int = 6, *, hostile_row: int = 2) -> dict[str, list[Any]]:
    """Columns of ``count`` rows: ``image`` and ``generated`` (PNG bytes), ``caption``,
    ``score`` (a float, None for row 3), ``model_name``, ``pixtill_metadata``. Rows in
    `FAILED_ROWS` failed (an error, no caption, no generated image)."""
    rows: dict[str, list[Any]] = {
        k: [] for k in ("image", "generated", "caption", "score", "model_name", "pixtill_metadata")
    }
    for i in range(count):
        failed = i in FAILED_ROWS
        rows["image"].append({"bytes": png((30 * i % 255, 80, 160)), "path": f"{i}.png"})
        rows["generated"].append(
            None if failed else {"bytes": png((200, 40 * i % 255, 60), (64, 64)), "path": None}
        )
        caption = HOSTILE if i == hostile_row else f"caption number {i}"
        rows["caption"].append(None if failed else caption)
        rows["score"].append(None if i == 3 else [0.5, 0.9, 0.1, 0.0, 0.7, 0.3][i % 6] + i // 6)
        rows["model_name"].append("tiny-vlm")
        rows["pixtill_metadata"].append(
            {
                "error_caption": f"step 'caption': row {i}, column 'image': boom"
                if failed
                else None,
                "statistics_caption": {"input_tokens": 10 + i, "output_tokens": 5},
            }
        )
    return rows


def make_dataset(count: int = 6) -> Any:
    import datasets

    features = datasets.Features(
        {
            "image": datasets.Image(),
            "generated": datasets.Image(),
            "caption": datasets.Value("string"),
            "score": datasets.Value("float64"),
            "model_name": datasets.Value("string"),
            "pixtill_metadata": {
                "error_caption": datasets.Value("string"),
                "statistics_caption": {
                    "input_tokens": datasets.Value("int64"),
                    "output_tokens": datasets.Value("int64"),
                },
            },
        }
    )
    return datasets.Dataset.from_dict(make_rows(count), features=features)


def chromium_paths() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="session")
def chrome() -> Iterator[Any]:
    paths = chromium_paths()
    if paths is None:
        pytest.skip(
            "chromium and chromium-driver are not installed (scripts/setup.sh installs them)"
        )
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not look online
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--allow-file-access-from-files",
        "--disable-extensions",
        "--no-first-run",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=paths[1]))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, script: str, timeout: float = 20.0) -> Any:
    """Poll a JavaScript expression (``return ...``) until it is truthy; returns its value."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(
        lambda d: d.execute_script(script)
    )


SHOWN_ROWS = (
    "return Array.from(document.querySelectorAll('#rows tbody tr.row')).map(r => +r.dataset.row)"
)
IMAGES_DECODED = """
const imgs = Array.from(document.querySelectorAll('#rows tbody img'));
if (!imgs.length || !imgs.every(i => i.complete)) return null;
return imgs.map(i => i.naturalWidth);
"""


def open_page(driver: Any, url: str) -> None:
    driver.get(url)
    wait_for(driver, "return document.body.dataset.ready !== undefined")


__all__ = [
    "FAILED_ROWS",
    "HOSTILE",
    "IMAGES_DECODED",
    "SHOWN_ROWS",
    "Path",
    "chrome",
    "make_dataset",
    "make_rows",
    "open_page",
    "png",
    "wait_for",
]
