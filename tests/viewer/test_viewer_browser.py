"""`pixtill view` in a real browser: headless Chromium (Debian's chromium + chromium-driver)
driven through Selenium. Images must decode, the failed-rows filter, search and sorting must
work, and a caption holding HTML must show as text and run nothing."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from local_models import tiny_models
from pixtill.distiset import Distiset
from pixtill.viewer import ViewerData, ViewerServer, export_static
from viewer_helpers import (
    FAILED_ROWS,
    HOSTILE,
    IMAGES_DECODED,
    SHOWN_ROWS,
    chrome,
    make_dataset,
    open_page,
    wait_for,
)

_FIXTURES = (chrome, tiny_models)  # imported for pytest; named here so linters see it used


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("viewer-site")
    Distiset({"caption": make_dataset(6), "more": make_dataset(120)}).save_to_disk(root / "ds")
    return root / "ds"


@pytest.fixture(scope="module")
def server(site: Path) -> Any:
    with ViewerServer(ViewerData.open(site)) as running:
        yield running


def _rows_after(driver: Any, action: Any, expected_count: int | None = None) -> list[int]:
    before = driver.execute_script("return document.body.dataset.ready")
    action()
    wait_for(
        driver, f"return document.body.dataset.ready && document.body.dataset.ready != {before!r}"
    )
    rows: list[int] = driver.execute_script(SHOWN_ROWS)
    if expected_count is not None:
        assert len(rows) == expected_count
    return rows


def test_images_decode_and_open_full_size(chrome: Any, server: ViewerServer) -> None:
    open_page(chrome, server.url)
    assert chrome.execute_script(SHOWN_ROWS) == list(range(6))
    widths = wait_for(chrome, IMAGES_DECODED)
    assert len(widths) == 6 + 4  # six sources, four generated (two rows failed)
    assert all(w > 0 for w in widths)
    chrome.find_element("css selector", "#rows tbody tr.row img").click()
    wait_for(
        chrome,
        "const i = document.getElementById('overlay-image');"
        "return !document.getElementById('overlay').hidden && i.complete"
        " && i.naturalWidth",
    )
    assert (
        chrome.execute_script("return document.getElementById('overlay-image').naturalWidth") == 40
    )
    chrome.find_element("id", "overlay").click()
    assert chrome.execute_script("return document.getElementById('overlay').hidden")


def test_a_caption_with_html_is_shown_as_text(chrome: Any, server: ViewerServer) -> None:
    open_page(chrome, server.url)
    wait_for(chrome, IMAGES_DECODED)
    cell = chrome.execute_script(
        "return document.querySelector('#rows tbody tr[data-row=\"2\"] .text').textContent"
    )
    assert cell == HOSTILE
    assert chrome.execute_script("return window.__pwned") is None
    assert (
        chrome.execute_script(
            "return document.querySelectorAll('#rows tbody b, "
            "#rows tbody script, #rows tbody img[src=x]').length"
        )
        == 0
    )


def test_failed_rows_filter_search_and_sort(chrome: Any, server: ViewerServer) -> None:
    open_page(chrome, server.url)
    failed = chrome.find_element("id", "failed")
    assert _rows_after(chrome, failed.click) == list(FAILED_ROWS)
    assert chrome.execute_script(
        "return Array.from(document.querySelectorAll('#rows tbody tr.row'))"
        ".every(r => r.classList.contains('failed') && r.querySelector('.error').textContent)"
    )
    assert _rows_after(chrome, failed.click) == list(range(6))

    from selenium.webdriver.support.ui import Select

    order = Select(chrome.find_element("id", "order"))
    sort = Select(chrome.find_element("id", "sort"))
    # Scores by row: 0.5, 0.9, 0.1, missing, 0.7, 0.3; the missing one stays last.
    assert _rows_after(chrome, lambda: sort.select_by_value("score")) == [2, 5, 0, 4, 1, 3]
    assert _rows_after(chrome, lambda: order.select_by_value("desc")) == [1, 4, 0, 5, 2, 3]

    search = chrome.find_element("id", "search")
    assert _rows_after(chrome, lambda: search.send_keys("number 5")) == [5]


def test_tabs_switch_leaves_and_pages_move_on(chrome: Any, server: ViewerServer) -> None:
    open_page(chrome, server.url)
    tabs = chrome.find_elements("css selector", "#tabs .tab")
    assert [t.text for t in tabs] == ["caption (6)", "more (120)"]
    assert _rows_after(chrome, tabs[1].click) == list(range(50))
    assert chrome.find_element("id", "status").text == "rows 1–50 of 120"
    nxt = chrome.find_element("id", "next")
    assert _rows_after(chrome, nxt.click) == list(range(50, 100))
    assert _rows_after(chrome, nxt.click) == list(range(100, 120))
    assert not nxt.is_enabled()
    # Thumbnails load lazily, as they scroll into view: load them all to check they decode.
    chrome.execute_script(
        "document.querySelectorAll('#rows img').forEach(i => i.loading = 'eager')"
    )
    widths = wait_for(chrome, IMAGES_DECODED)
    assert len(widths) == 40 and all(w > 0 for w in widths)


def test_the_exported_folder_works_from_disk(chrome: Any, site: Path, tmp_path: Path) -> None:
    index = export_static(ViewerData.open(site), tmp_path / "shared")
    open_page(chrome, index.as_uri())
    assert chrome.execute_script(SHOWN_ROWS) == list(range(6))
    assert all(w > 0 for w in wait_for(chrome, IMAGES_DECODED))
    assert chrome.execute_script("return window.__pwned") is None
    assert _rows_after(chrome, chrome.find_element("id", "failed").click) == list(FAILED_ROWS)

    from selenium.webdriver.support.ui import Select

    order = Select(chrome.find_element("id", "order"))
    sort = Select(chrome.find_element("id", "sort"))
    _rows_after(chrome, lambda: order.select_by_value("desc"))
    assert _rows_after(chrome, lambda: sort.select_by_value("score")) == [1, 4]


def test_the_demo_output_shows_its_images(
    chrome: Any, tiny_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pixtill import demo

    monkeypatch.setenv("PIXTILL_CACHE_DIR", str(tiny_models.cache))
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    assert demo.run(parser.parse_args(["--output", str(tmp_path), "--rows", "2"])) == 0
    for shown in (tmp_path / "dataset", tmp_path / "parquet"):
        with ViewerServer(ViewerData.open(shown)) as running:
            open_page(chrome, running.url)
            tabs = chrome.find_elements("css selector", "#tabs .tab")
            names = [t.text.split(" (")[0] for t in tabs]
            assert demo.LEAF in names
            for index, name in enumerate(names):  # every leaf's images decode
                tab = chrome.find_elements("css selector", "#tabs .tab")[index]  # re-rendered
                if tab.get_attribute("aria-selected") != "true":
                    _rows_after(chrome, tab.click)
                chrome.execute_script(
                    "document.querySelectorAll('#rows img').forEach(i => i.loading = 'eager')"
                )
                if chrome.execute_script("return document.querySelectorAll('#rows img').length"):
                    assert all(w > 0 for w in wait_for(chrome, IMAGES_DECODED)), name
                if name != demo.LEAF:
                    continue
                assert chrome.execute_script(SHOWN_ROWS) == [0, 1]
                assert len(wait_for(chrome, IMAGES_DECODED)) == 4  # source and generated
                headers = chrome.execute_script(
                    "return Array.from(document.querySelectorAll('#rows th'))"
                    ".map(t => t.textContent)"
                )
                assert headers[1:3] == ["image", "generated_image"]  # side by side
                assert {"caption", "caption_model", "image_model"} <= set(headers)


def test_the_readme_screenshot_script_writes_a_small_png(tmp_path: Path) -> None:
    import subprocess
    import sys

    from PIL import Image

    script = Path(__file__).parents[2] / "scripts" / "screenshot_viewer.py"
    out = tmp_path / "viewer.png"
    subprocess.run(
        [sys.executable, str(script), "--output", str(out)],
        check=True,
        timeout=120,
        capture_output=True,
    )
    with Image.open(out) as image:
        assert image.size[0] == 1180 and image.size[1] > 600
    assert out.stat().st_size < 100_000


def test_the_grid_layout_shows_cards(chrome: Any, server: ViewerServer) -> None:
    from selenium.webdriver.support.ui import Select

    open_page(chrome, server.url)
    layout = Select(chrome.find_element("id", "layout"))
    before = chrome.execute_script("return document.body.dataset.ready")
    layout.select_by_value("grid")
    wait_for(
        chrome, f"return document.body.dataset.ready && document.body.dataset.ready != {before!r}"
    )
    cards = chrome.execute_script(
        "return Array.from(document.querySelectorAll('#grid .card'))"
        ".map(c => [+c.dataset.row, c.classList.contains('failed')])"
    )
    assert cards == [[i, i in FAILED_ROWS] for i in range(6)]
    assert chrome.execute_script("return document.getElementById('rows').hidden")
    widths = wait_for(
        chrome,
        "const i = Array.from(document.querySelectorAll('#grid img'));"
        "return i.length && i.every(x => x.complete) && i.map(x => x.naturalWidth)",
    )
    assert len(widths) == 10 and all(w > 0 for w in widths)
    hostile = chrome.execute_script(
        "return document.querySelector('#grid .card[data-row=\"2\"] .text').textContent"
    )
    assert hostile == HOSTILE and chrome.execute_script("return window.__pwned") is None
    layout.select_by_value("table")


def test_hostile_leaf_and_column_names_are_text(chrome: Any, tmp_path: Path) -> None:
    import datasets

    hostile = '<img src=x onerror="window.__pwned=3">'
    rows = datasets.Dataset.from_dict({f"{hostile}col": ["a"], "n": [1]})
    Distiset({f"{hostile}leaf": rows}).save_to_disk(tmp_path / "d")
    data = ViewerData.open(tmp_path / "d")
    data.title = f"{hostile}title"
    with ViewerServer(data) as running:
        open_page(chrome, running.url)
        texts = chrome.execute_script(
            "return [document.getElementById('title').textContent,"
            " document.querySelector('#tabs .tab').textContent,"
            " document.querySelectorAll('#rows th')[1].textContent,"
            " document.querySelectorAll('img').length, window.__pwned === undefined]"
        )
    assert texts == [f"{hostile}title", f"{hostile}leaf (1)", f"{hostile}col", 1, True]
