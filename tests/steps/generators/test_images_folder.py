from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pixtill.errors import StepConfigError
from pixtill.images import ImageDecodeError, ImageRef
from pixtill.steps.generators.images_folder import LoadImagesFromFolder, SidecarError
from sample_images import image_bytes, truncated_png

Batches = list[tuple[list[dict[str, Any]], bool]]


def put(root: Path, relative: str, data: bytes | str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """
    root/
      b.png            b.txt ("  a red square \\n")
      a.jpg            a.json ({"label": "cat", "score": 0.5})
      c.PNG
      notes.md         (not an image extension)
      .hidden.png      (skipped)
      metadata.jsonl   (records for a.jpg, sub/x.webp, sub/deeper/z.gif)
      sub/x.webp
      sub/y.png        y.txt
      sub/deeper/z.gif
      zz/broken.png    (text, not an image)
    """
    root = tmp_path / "images"
    put(root, "b.png", image_bytes(5, 4, (200, 0, 0)))
    put(root, "b.txt", "  a red square \n")
    put(root, "a.jpg", image_bytes(6, 4, format="JPEG"))
    put(root, "a.json", json.dumps({"label": "cat", "score": 0.5}))
    put(root, "c.PNG", image_bytes(3, 3))
    put(root, "notes.md", "# not an image")
    put(root, ".hidden.png", image_bytes())
    put(root, "sub/x.webp", image_bytes(7, 2, format="WEBP"))
    put(root, "sub/y.png", image_bytes(2, 2))
    put(root, "sub/y.txt", "why")
    put(root, "sub/deeper/z.gif", image_bytes(4, 4, format="GIF"))
    put(root, "zz/broken.png", "this is not a png")
    records = [
        {"file_name": "a.jpg", "caption": "first", "score": 1},
        {"file_name": "./sub/x.webp", "caption": "ex"},
        {"file_name": "sub/deeper/z.gif", "caption": "zed", "tags": ["g"]},
        {"file_name": "gone.png", "caption": "no such image"},
    ]
    put(root, "metadata.jsonl", "\n".join(json.dumps(r) for r in records) + "\n\n")
    return root


ORDER = ["a.jpg", "b.png", "c.PNG", "sub/deeper/z.gif", "sub/x.webp", "sub/y.png", "zz/broken.png"]


def loaded(**kw: Any) -> LoadImagesFromFolder:
    step = LoadImagesFromFolder(**kw)
    step.load()
    return step


def rows_of(batches: Batches) -> list[dict[str, Any]]:
    return [row for batch, _ in batches for row in batch]


def test_rows_in_sorted_order_with_all_metadata(folder: Path) -> None:
    step = loaded(folder=folder, batch_size=3)
    batches: Batches = list(step.process())
    assert [(len(b), last) for b, last in batches] == [(3, False), (3, False), (1, True)]
    rows = rows_of(batches)
    assert [r["path"] for r in rows] == ORDER
    assert step.outputs == ["image", "path", "caption", "score", "tags"]
    by_path = {r["path"]: r for r in rows}
    assert by_path["a.jpg"] == {
        "image": by_path["a.jpg"]["image"],
        "path": "a.jpg",
        "caption": "first",
        "score": 0.5,  # the per-image .json wins over metadata.jsonl
        "tags": None,
        "label": "cat",
    }
    assert by_path["b.png"]["text"] == "a red square"
    assert by_path["b.png"]["caption"] is None
    assert by_path["sub/x.webp"]["caption"] == "ex"
    assert by_path["sub/deeper/z.gif"]["tags"] == ["g"]
    assert by_path["sub/y.png"]["text"] == "why"
    assert "text" not in by_path["c.PNG"]
    for row in rows:
        assert list(row)[:2] == ["image", "path"]
        ref = row["image"]
        assert isinstance(ref, ImageRef)
        assert ref.kind == "path"
        assert ref.path == (folder / row["path"]).absolute()
    assert by_path["sub/x.webp"]["image"].size == (7, 2)
    assert by_path["sub/x.webp"]["image"].format == "WEBP"
    assert step.total_rows() == len(ORDER)


def test_a_non_image_with_an_image_extension_is_a_row_that_fails_later(folder: Path) -> None:
    put(folder, "zz/truncated.png", truncated_png())
    step = loaded(folder=folder, batch_size=100)
    rows = {r["path"]: r for r in rows_of(list(step.process()))}
    with pytest.raises(ImageDecodeError):
        rows["zz/broken.png"]["image"].validate()
    with pytest.raises(ImageDecodeError):
        rows["zz/truncated.png"]["image"].validate(decode=True)
    rows["b.png"]["image"].validate(decode=True)


def test_nothing_is_opened_while_listing(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_reading(self: ImageRef, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an image was read while loading")

    monkeypatch.setattr(ImageRef, "get_bytes", no_reading)
    monkeypatch.setattr(ImageRef, "_open_source", no_reading)
    rows = rows_of(list(loaded(folder=folder, metadata=False).process()))
    assert len(rows) == len(ORDER)


def test_offset_num_examples_and_last_flag(folder: Path) -> None:
    step = loaded(folder=folder, batch_size=2)
    batches: Batches = list(step.process(offset=5))
    assert [r["path"] for r in rows_of(batches)] == ORDER[5:]
    assert [(len(b), last) for b, last in batches] == [(2, True)]
    assert list(step.process(offset=7)) == [([], True)]
    assert list(step.process(offset=70)) == [([], True)]

    capped = loaded(folder=folder, batch_size=2, num_examples=4)
    batches = list(capped.process())
    assert [r["path"] for r in rows_of(batches)] == ORDER[:4]
    assert [(len(b), last) for b, last in batches] == [(2, False), (2, True)]
    assert [r["path"] for r in rows_of(list(capped.process(offset=3)))] == ["sub/deeper/z.gif"]
    assert list(capped.process(offset=4)) == [([], True)]
    assert capped.total_rows() == 4
    assert loaded(folder=folder, num_examples=0).total_rows() == 0

    with pytest.raises(ValueError, match="offset"):
        next(step.process(-1))


def test_resuming_gives_the_same_rows(folder: Path) -> None:
    step = loaded(folder=folder, batch_size=2)
    everything = rows_of(list(step.process()))
    for offset in range(len(ORDER) + 1):
        again = rows_of(list(step.process(offset)))
        assert [r["path"] for r in again] == [r["path"] for r in everything[offset:]]
        assert again == everything[offset:]


def test_not_recursive_other_extensions_and_columns(folder: Path) -> None:
    step = loaded(folder=folder, recursive=False, metadata=False)
    assert [r["path"] for r in rows_of(list(step.process()))] == ["a.jpg", "b.png", "c.PNG"]
    assert step.outputs == ["image", "path"]

    only = loaded(folder=folder, extensions=["GIF", ".webp"], image_column="img", path_column=None)
    rows = rows_of(list(only.process()))
    assert [sorted(r) for r in rows] == [["caption", "img", "score", "tags"]] * 2
    assert [r["img"].path.name for r in rows] == ["z.gif", "x.webp"]
    assert only.outputs == ["img", "caption", "score", "tags"]


def test_metadata_csv(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    put(root, "one.png", image_bytes())
    put(root, "two/2.png", image_bytes())
    put(root, "metadata.csv", 'file_name,caption,n\r\none.png,"hello, ""world""",1\r\n')
    with (root / "metadata.csv").open("a", encoding="utf-8", newline="") as file:
        file.write('two/2.png,"two\nlines",2\r\n')
    step = loaded(folder=root)
    rows = rows_of(list(step.process()))
    assert [(r["path"], r["caption"], r["n"]) for r in rows] == [
        ("one.png", 'hello, "world"', "1"),
        ("two/2.png", "two\nlines", "2"),
    ]
    assert step.outputs == ["image", "path", "caption", "n"]


@pytest.mark.parametrize(
    ("name", "content", "line", "message"),
    [
        ("metadata.jsonl", '{"file_name": "a.png"}\n{"file_name": \n', 2, "invalid JSON"),
        ("metadata.jsonl", '{"file_name": "a.png"}\n\n[1, 2]\n', 3, "JSON object"),
        ("metadata.jsonl", '{"caption": "x"}\n', 1, "file_name"),
        ("metadata.jsonl", '{"file_name": "a.png"}\n{"file_name": "./a.png"}\n', 2, "line 1"),
        ("metadata.jsonl", '{"file_name": "a.png", "path": "x"}\n', 1, "'path' clashes"),
        ("metadata.jsonl", '{"file_name": "a.png"}\n{"file_name": "\udcff"}\n', 2, "UTF-8"),
        ("metadata.csv", "name,caption\na.png,x\n", 1, "file_name"),
        ("metadata.csv", "file_name,caption\na.png,x\nb.png,\udcff\n", 3, "UTF-8"),
        ("metadata.csv", "file_name,caption\na.png,x\nb.png\n", 3, "1 fields"),
        ("metadata.csv", 'file_name,caption\na.png,x\nb.png,"unclosed\n', 3, "invalid CSV"),
    ],
)
def test_a_broken_metadata_file_names_file_and_line(
    tmp_path: Path, name: str, content: str, line: int, message: str
) -> None:
    root = tmp_path / "imgs"
    put(root, "a.png", image_bytes())
    path = put(root, name, content.encode("utf-8", "surrogateescape"))
    step = LoadImagesFromFolder(folder=root)
    with pytest.raises(SidecarError, match=message) as info:
        step.load()
    assert info.value.path == path
    assert info.value.line == line
    assert f"'{path}', line {line}" in str(info.value)
    # Without metadata the same folder loads.
    assert rows_of(list(loaded(folder=root, metadata=False).process()))[0]["path"] == "a.png"


@pytest.mark.parametrize(
    ("sidecar", "content", "line", "message"),
    [
        ("a.json", '{\n  "label": "cat",\n  oops\n}', 3, "invalid JSON"),
        ("a.json", '["not", "an", "object"]', None, "JSON object"),
        ("a.json", '{"image": "clash"}', None, "'image' clashes"),
        ("a.txt", b"ok\n\xff\xfe broken", 2, "not UTF-8"),
    ],
)
def test_a_broken_sidecar_names_file_and_line(
    tmp_path: Path, sidecar: str, content: str | bytes, line: int | None, message: str
) -> None:
    root = tmp_path / "imgs"
    put(root, "0.png", image_bytes())
    put(root, "a.png", image_bytes())
    path = put(root, sidecar, content)
    step = loaded(folder=root, batch_size=1)
    batches = step.process()
    first, last = next(batches)  # rows before the broken one come through
    assert [r["path"] for r in first] == ["0.png"]
    assert not last
    with pytest.raises(SidecarError, match=message) as info:
        next(batches)
    assert info.value.path == path
    assert info.value.line == line
    assert str(path) in str(info.value)


def test_txt_sidecar_clashing_with_a_column(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    put(root, "a.png", image_bytes())
    put(root, "a.txt", "caption")
    with pytest.raises(SidecarError, match="'text'"):
        list(loaded(folder=root, path_column="text").process())


def test_missing_folder_and_bad_settings(tmp_path: Path) -> None:
    step = LoadImagesFromFolder(folder=tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="nope"):
        step.load()
    with pytest.raises(FileNotFoundError, match="nope"):
        step.total_rows()
    with pytest.raises(RuntimeError, match="call load"):
        next(step.process())
    put(tmp_path, "file.png", image_bytes())
    with pytest.raises(NotADirectoryError):
        LoadImagesFromFolder(folder=tmp_path / "file.png").load()
    with pytest.raises(ValueError, match="path_column"):
        LoadImagesFromFolder(folder=tmp_path, path_column="image")
    with pytest.raises(ValueError, match="empty"):
        LoadImagesFromFolder(folder=tmp_path, extensions=[""])
    with pytest.raises(ValueError, match="num_examples"):
        LoadImagesFromFolder(folder=tmp_path, num_examples=-1)


def test_both_metadata_files_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    put(root, "metadata.jsonl", "")
    put(root, "metadata.csv", "file_name\n")
    with pytest.raises(StepConfigError, match="both"):
        LoadImagesFromFolder(folder=root).load()


def test_empty_folder_and_unload(tmp_path: Path) -> None:
    step = loaded(folder=tmp_path)
    assert list(step.process()) == [([], True)]
    assert step.total_rows() == 0
    step.unload()
    with pytest.raises(RuntimeError, match="call load"):
        next(step.process())


def test_symlink_loops_are_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    put(root, "d/a.png", image_bytes())
    (root / "d" / "loop").symlink_to(root, target_is_directory=True)
    step = loaded(folder=root)
    assert [r["path"] for r in rows_of(list(step.process()))] == ["d/a.png"]


def test_output_mappings(folder: Path) -> None:
    step = loaded(folder=folder, output_mappings={"path": "file"}, num_examples=1)
    ((rows, last),) = list(step.process_applying_mappings())
    assert last
    assert rows[0]["file"] == "a.jpg"
    assert step.image_columns() == ["image"]
    renamed = loaded(folder=folder, image_column="img", output_mappings={"img": "picture"})
    assert renamed.image_columns() == ["picture"]
    assert "path" not in rows[0]


def test_metadata_file_changed_after_load(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    put(root, "a.png", image_bytes())
    put(root, "metadata.jsonl", '{"file_name": "a.png", "caption": "x"}\n')
    step = loaded(folder=root)
    put(root, "metadata.jsonl", '{"file_name": "b.png", "caption": "y"}\n')
    with pytest.raises(SidecarError, match="changed after load"):
        list(step.process())
