"""The viewer's data layer, server API, static export, CLI and notebook gallery (no browser)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pixtill.cli import main
from pixtill.distiset import Distiset
from pixtill.viewer import SourceError, ViewerData, ViewerServer, export_static, gallery
from pixtill.viewer import source as viewer_source
from pixtill.viewer.rows import Query
from pixtill.viewer.server import image_url
from viewer_helpers import FAILED_ROWS, HOSTILE, make_dataset


def _page(
    data: ViewerData,
    query: Query | None = None,
    offset: int = 0,
    limit: int = 50,
    leaf: int = 0,
) -> dict[str, Any]:
    return data.page(leaf, query or Query(), offset, limit, image_url(leaf)).as_json()


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("viewer")
    ds = make_dataset(6)
    ds.save_to_disk(str(root / "single"))
    Distiset({"caption": ds, "other": make_dataset(3)}).save_to_disk(root / "distiset")
    ds.to_parquet(str(root / "parquet" / "caption" / "data.parquet"))
    # A pixtill output folder: <leaf>/data-*.parquet, plus an .arrow copy that is not a leaf.
    big = make_dataset(250)
    for shard in range(3):
        part = big.select(range(shard * 100, min(250, shard * 100 + 100)))
        part.to_parquet(str(root / "run" / "paint" / f"data-{shard:05d}.parquet"), batch_size=30)
    (root / "run" / ".arrow" / "paint").mkdir(parents=True)
    (root / "run" / ".arrow" / "paint" / "x.parquet").write_bytes(b"not read")
    return root


def test_every_kind_of_folder_opens_with_its_leaves(saved: Path) -> None:
    assert [(x.name, x.num_rows) for x in ViewerData.open(saved / "single").leaves] == [
        ("single", 6)
    ]
    assert [(x.name, x.num_rows) for x in ViewerData.open(saved / "distiset").leaves] == [
        ("caption", 6),
        ("other", 3),
    ]
    assert [(x.name, x.num_rows) for x in ViewerData.open(saved / "parquet").leaves] == [
        ("caption", 6)
    ]
    assert [(x.name, x.num_rows) for x in ViewerData.open(saved / "run").leaves] == [("paint", 250)]
    one = saved / "parquet" / "caption" / "data.parquet"
    assert ViewerData.open(one).leaves[0].num_rows == 6


def test_a_bad_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file or folder"):
        ViewerData.open(tmp_path / "missing")
    with pytest.raises(SourceError, match="no dataset here"):
        ViewerData.open(tmp_path)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(SourceError, match=r"not a \.parquet or \.arrow file"):
        ViewerData.open(tmp_path / "notes.txt")


def test_a_hub_id_loads_every_config_through_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(datasets, "get_dataset_config_names", lambda repo: ["caption", "paint"])

    def load_dataset(repo: str, config: str) -> Any:
        calls.append((repo, config))
        return datasets.DatasetDict({"train": make_dataset(2 if config == "caption" else 3)})

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    data = ViewerData.open("me/captions")
    assert [(x.name, x.num_rows) for x in data.leaves] == [("caption/train", 2), ("paint/train", 3)]
    assert calls == [("me/captions", "caption"), ("me/captions", "paint")]
    assert viewer_source._HUB_ID.match("me/captions")


def test_a_mistyped_local_path_never_goes_to_the_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datasets

    def no_hub(repo: str) -> list[str]:
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(datasets, "get_dataset_config_names", no_hub)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pixtill-output").mkdir()
    with pytest.raises(SourceError, match="no such file or folder"):
        ViewerData.open("pixtill-output/typo")  # its folder exists here: a local path
    with pytest.raises(SourceError, match=r"no such local file.*ConnectionError: Name or service"):
        ViewerData.open("nobody/nothing")


def test_a_page_holds_images_as_urls_text_as_text_and_the_metadata_summarised(
    saved: Path,
) -> None:
    data = ViewerData.open(saved / "single")
    kinds = {c["name"]: c["kind"] for c in data.leaves_json()[0]["columns"]}
    assert kinds == {
        "image": "image",
        "generated": "image",
        "caption": "text",
        "score": "number",
        "model_name": "model",
        "pixtill_metadata": "metadata",
    }
    rows = _page(data)["rows"]
    assert [r["row"] for r in rows] == list(range(6))
    assert rows[2]["cells"]["caption"] == HOSTILE
    assert rows[0]["cells"]["image"]["thumb"] == "image?leaf=0&row=0&column=image&k=0&size=thumb"
    assert rows[1]["cells"]["generated"] is None
    assert rows[1]["error"] == "step 'caption': row 1, column 'image': boom"
    assert rows[0]["error"] is None
    assert rows[0]["tokens"] == {"input": 10, "output": 5}
    assert rows[3]["cells"]["score"] is None
    assert "pixtill_metadata" not in rows[0]["cells"]


def test_pages_cross_row_groups_and_files_in_order(saved: Path) -> None:
    data = ViewerData.open(saved / "run")
    leaf = data.leaves[0]
    assert len(leaf._groups) > 3  # type: ignore[attr-defined]  # several row groups per shard
    page = _page(data, offset=85, limit=40)
    assert page["total"] == 250
    assert [r["row"] for r in page["rows"]] == list(range(85, 125))
    assert [r["cells"]["caption"] for r in page["rows"][:2]] == [
        "caption number 85",
        "caption number 86",
    ]
    assert _page(data, offset=240, limit=50)["rows"][-1]["row"] == 249
    assert _page(data, offset=300)["rows"] == []


def test_failed_rows_search_and_sort(saved: Path) -> None:
    data = ViewerData.open(saved / "run")
    failed = _page(data, Query(failed=True), limit=500)
    assert failed["total"] == 2
    assert [r["row"] for r in failed["rows"]] == list(FAILED_ROWS)
    assert all(r["error"] for r in failed["rows"])

    found = _page(data, Query(search="NUMBER 12"), limit=500)
    assert [r["row"] for r in found["rows"]] == [12, *range(120, 130)]
    assert _page(data, Query(search="<script>"), limit=500)["total"] == 1

    by_score = _page(data, Query(sort="score", descending=True), limit=500)["rows"]
    scores = [r["cells"]["score"] for r in by_score]
    assert by_score[-1]["row"] == 3 and scores[-1] is None  # missing values last
    assert scores[:-1] == sorted(scores[:-1], reverse=True)
    ascending = [r["cells"]["score"] for r in _page(data, Query(sort="score"), limit=500)["rows"]]
    assert ascending[:-1] == sorted(ascending[:-1]) and ascending[-1] is None

    both = _page(data, Query(failed=True, sort="score", descending=True))["rows"]
    assert [r["row"] for r in both] == [1, 4]  # scores 0.9 and 0.7
    with pytest.raises(ValueError, match="not a numeric column"):
        _page(data, Query(sort="caption"))


def test_sort_puts_nan_with_the_missing_values(tmp_path: Path) -> None:
    pq.write_table(pa.table({"score": [0.2, float("nan"), None, 0.9]}), tmp_path / "s.parquet")
    data = ViewerData.open(tmp_path / "s.parquet")
    rows = _page(data, Query(sort="score", descending=True))["rows"]
    assert [r["row"] for r in rows[:2]] == [3, 0]
    assert [r["cells"]["score"] for r in rows] == [0.9, 0.2, None, None]


def test_images_come_back_as_thumbnails_and_full_size(saved: Path) -> None:
    import io

    from PIL import Image

    data = ViewerData.open(saved / "run")
    body, mime = data.image(0, 130, "generated", 0, "thumb")
    assert mime == "image/jpeg" and Image.open(io.BytesIO(body)).size == (64, 64)
    assert data.image(0, 130, "generated", 0, "thumb") == (body, mime)  # from the cache
    full, mime = data.image(0, 130, "image", 0, "full")
    assert mime == "image/png" and Image.open(io.BytesIO(full)).size == (40, 30)
    with pytest.raises(KeyError):
        data.image(0, 0, "caption", 0, "thumb")
    with pytest.raises(IndexError):
        data.image(0, 250, "image", 0, "thumb")


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_the_server_answers_on_loopback_with_a_strict_policy(saved: Path) -> None:
    with ViewerServer(ViewerData.open(saved / "distiset")) as server:
        assert server.url.startswith("http://127.0.0.1:")
        status, headers, body = _get(server.url)
        assert status == 200 and b'src="static/app.js"' in body
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert "cdn" not in body.decode().lower() and "https://" not in body.decode()
        status, _, body = _get(server.url + "api/leaves")
        assert [leaf["name"] for leaf in json.loads(body)["leaves"]] == ["caption", "other"]
        status, _, body = _get(server.url + "api/rows?leaf=0&failed=1")
        assert status == 200 and json.loads(body)["total"] == 2
        status, _, body = _get(server.url + "api/rows?leaf=0&sort=caption")
        assert status == 400 and "not a numeric column" in json.loads(body)["error"]
        status, _, _ = _get(server.url + "api/rows?leaf=7")
        assert status == 404
        status, headers, body = _get(server.url + "image?leaf=0&row=0&column=image&size=thumb")
        assert status == 200 and headers["Content-Type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
        status, _, _ = _get(server.url + "image?leaf=0&row=1&column=generated&size=thumb")
        assert status == 404  # a failed row has no generated image
        status, _, _ = _get(server.url + "static/../../etc/passwd")
        assert status == 404
        rebound = urllib.request.Request(
            server.url + "api/leaves", headers={"Host": f"evil.example:{server.port}"}
        )
        with pytest.raises(urllib.error.HTTPError, match="421"):
            urllib.request.urlopen(rebound, timeout=10)
    with pytest.raises(urllib.error.URLError, match="Connection refused"):
        _get(server.url)


def test_export_writes_a_self_contained_folder(saved: Path, tmp_path: Path) -> None:
    index = export_static(ViewerData.open(saved / "distiset"), tmp_path / "site")
    assert index == tmp_path / "site" / "index.html"
    html = index.read_text()
    assert '<script src="data/leaves.js"></script>' in html and "http" not in html
    rows_js = (tmp_path / "site" / "data" / "rows-0-0.js").read_text()
    assert rows_js.startswith("window.PIXTILL_ROWS.push(")
    assert "<script>" not in rows_js  # escaped as \\u003c in the JSON
    part = json.loads(rows_js[len("window.PIXTILL_ROWS.push(") : -3])
    assert part["rows"][2]["cells"]["caption"] == HOSTILE
    thumb = part["rows"][0]["cells"]["image"]["thumb"]
    assert (tmp_path / "site" / thumb).is_file()
    assert part["rows"][1]["cells"]["generated"] is None


def test_the_view_command_exports_and_reports_bad_paths(
    saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "shared"
    assert main(["view", str(saved / "run"), "--export", str(out), "--max-rows", "20"]) == 0
    printed = capsys.readouterr().out
    assert "paint (250 rows)" in printed and str(out / "index.html") in printed
    assert len(list((out / "images" / "0").glob("*-thumb.*"))) == 20 + 18  # two failed rows
    assert main(["view", str(tmp_path / "nothing")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_notebook_galleries_escape_text_and_inline_thumbnails(saved: Path) -> None:
    distiset = Distiset.load_from_disk(saved / "distiset")
    html = distiset._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;window.__pwned" in html
    assert html.count("<b>caption</b>") == 1 and "6 rows" in html
    assert 'src="data:image/jpeg;base64,' in html
    assert "step &#x27;caption&#x27;: row 1" in html
    one = gallery(make_dataset(3), rows=2)._repr_html_()
    assert "3 rows" in one and "(first 2)" in one and one.count("<tr class=") == 2


def test_the_view_command_serves_until_stopped(saved: Path) -> None:
    import signal
    import subprocess
    import sys

    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pixtill",
            "view",
            str(saved / "run"),
            "--no-browser",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C must reach it even when this test runs in a background job (which ignores SIGINT)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "Viewing paint (250 rows)"
        line = process.stdout.readline()
        assert line.startswith("pixtill view: http://127.0.0.1:") and "Ctrl-C" in line
        url = line.split()[2]
        status, _, body = _get(url + "api/leaves")
        assert status == 200 and json.loads(body)["leaves"][0]["rows"] == 250
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
    assert process.returncode == 130, err


def test_image_lists_and_metadata_stored_as_json_text(tmp_path: Path) -> None:
    import datasets

    from viewer_helpers import png

    features = datasets.Features(
        {
            "images": datasets.Sequence(datasets.Image()),
            "tags": datasets.Sequence(datasets.Value("string")),
            "pixtill_metadata": datasets.Value("string"),  # JSON text, as the writer may store it
        }
    )
    rows = {
        "images": [[png((255, 0, 0)), png((0, 0, 255), (20, 20))], []],
        "tags": [["<i>x</i>", "red"], ["blue"]],
        "pixtill_metadata": [
            json.dumps({"error_paint": None, "statistics_paint": {"input_tokens": [3, 4]}}),
            json.dumps({"error_paint": "step 'paint': row 1: HTTP 500"}),
        ],
    }
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(tmp_path / "d.parquet"))
    data = ViewerData.open(tmp_path / "d.parquet")
    kinds = {c["name"]: c["kind"] for c in data.leaves_json()[0]["columns"]}
    assert kinds["images"] == "images" and kinds["tags"] == "other"
    first, second = _page(data)["rows"]
    assert [
        cell["thumb"].endswith(f"k={k}&size=thumb")
        for k, cell in enumerate(first["cells"]["images"])
    ] == [True, True]
    assert second["cells"]["images"] == []
    assert first["tokens"] == {"input": 7, "output": 0} and first["error"] is None
    assert second["error"] == "step 'paint': row 1: HTTP 500"
    assert first["cells"]["tags"] == '["<i>x</i>", "red"]'
    assert [r["row"] for r in _page(data, Query(failed=True))["rows"]] == [1]
    assert [r["row"] for r in _page(data, Query(search="BLUE"))["rows"]] == [1]
    import io

    from PIL import Image

    body, _ = data.image(0, 0, "images", 1, "full")
    assert Image.open(io.BytesIO(body)).size == (20, 20)
