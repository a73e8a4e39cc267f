from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import datasets
import huggingface_hub
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from pixtill.distiset import Distiset
from pixtill.images import ImageRef
from pixtill.store.shards import ShardWriter
from sample_images import image_bytes


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets-cache")
    monkeypatch.delenv("HF_TOKEN", raising=False)


def make_rows(n: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        rows.append(
            {
                "instruction": f"describe {i}",
                "image": None if i == 4 else image_bytes(10 + i, 5),
                "url": f"https://example.com/{i}.png",
                "late": None if i < 3 else f"late {i}",
                "pixtill_metadata": {
                    "raw_output_gen": f"out {i}",
                    "statistics_gen": {"input_tokens": i, "output_tokens": 2 * i},
                    **({"error_gen": "boom"} if i == 7 else {}),
                },
            }
        )
    return rows


def write_leaf(directory: Path, rows: list[dict[str, Any]], **kwargs: Any) -> list[Path]:
    writer = ShardWriter(directory, image_columns=["url", "image"], **kwargs)
    writer.write(rows)
    return writer.close()


@pytest.fixture
def distiset(tmp_path: Path) -> Distiset:
    shards = {
        "captions": write_leaf(tmp_path / "shards" / "captions", make_rows(10), rows_per_shard=3),
        "empty": [],
    }
    return Distiset.from_shards(shards, cache_dir=tmp_path / "cache")


def test_from_arrow_files_equals_from_shards(distiset: Distiset, tmp_path: Path) -> None:
    writer = ShardWriter(
        tmp_path / "pq",
        image_columns=["url", "image"],
        rows_per_shard=3,
        arrow_directory=tmp_path / "arrow",
    )
    writer.write(make_rows(10))
    writer.close()
    mapped = Distiset.from_arrow_files({"captions": writer.arrow_paths, "empty": []})
    assert list(mapped) == ["captions", "empty"]
    assert len(mapped["empty"]) == 0
    ds, expected = mapped["captions"], distiset["captions"]
    assert ds.features == expected.features
    assert ds.to_list() == expected.to_list()
    # Memory-mapped from the Arrow files, not copied into a cache.
    assert {Path(f["filename"]) for f in ds.cache_files} == set(writer.arrow_paths)


def test_from_shards_keeps_rows_order_and_types(distiset: Distiset) -> None:
    ds = distiset["captions"]
    assert len(ds) == 10
    assert ds["instruction"] == [f"describe {i}" for i in range(10)]
    assert isinstance(ds.features["image"], datasets.Image)
    first = ds[0]["image"]
    assert isinstance(first, Image.Image)
    assert first.size == (10, 5)
    assert ds[9]["image"].size == (19, 5)
    assert ds[4]["image"] is None
    assert ds.features["url"] == datasets.Value("string")
    assert ds[2]["url"] == "https://example.com/2.png"
    assert ds["late"][:4] == [None, None, None, "late 3"]
    meta = ds[7]["pixtill_metadata"]
    assert meta["error_gen"] == "boom"
    assert meta["statistics_gen"] == {"input_tokens": 7, "output_tokens": 14}
    assert ds[0]["pixtill_metadata"]["error_gen"] is None
    assert len(distiset["empty"]) == 0


def test_json_columns_come_back_as_strings(tmp_path: Path) -> None:
    rows = [{"m": {"content": "text"}}, {"m": {"content": [{"type": "text"}]}}]
    shards = write_leaf(tmp_path / "s", rows, rows_per_shard=1)
    ds = Distiset.from_shards({"leaf": shards}, cache_dir=tmp_path / "c")["leaf"]
    assert [json.loads(v) for v in ds["m"]] == [r["m"] for r in rows]


def test_repr_and_default(distiset: Distiset) -> None:
    text = repr(distiset)
    assert "captions: Dataset(rows=10" in text
    assert "'instruction'" in text
    assert "empty: Dataset(rows=0" in text
    with pytest.raises(KeyError, match="captions"):
        _ = distiset.default
    single = Distiset(captions=distiset["captions"])
    assert single.default is distiset["captions"]
    assert repr(Distiset()) == "Distiset({})"


def test_save_and_load_from_disk(distiset: Distiset, tmp_path: Path) -> None:
    target = tmp_path / "saved"
    distiset.save_to_disk(target)
    manifest = json.loads((target / "distiset.json").read_text())
    assert manifest["leaves"] == ["captions", "empty"]
    loaded = Distiset.load_from_disk(target)
    assert list(loaded) == ["captions", "empty"]
    assert loaded["captions"]["instruction"] == distiset["captions"]["instruction"]
    assert loaded["captions"][1]["image"].size == (11, 5)
    assert len(loaded["empty"]) == 0
    with pytest.raises(FileNotFoundError, match=r"distiset\.json"):
        Distiset.load_from_disk(tmp_path / "nowhere")


def test_to_parquet_loads_with_datasets(distiset: Distiset, tmp_path: Path) -> None:
    written = distiset.to_parquet(tmp_path / "parquet")
    assert written["captions"] == tmp_path / "parquet" / "captions" / "data.parquet"
    ds = datasets.load_dataset(
        "parquet",
        data_files=str(written["captions"]),
        split="train",
        cache_dir=str(tmp_path / "load-cache"),
    )
    assert ds["instruction"] == distiset["captions"]["instruction"]
    assert ds[3]["image"].size == (13, 5)
    assert ds[4]["image"] is None
    assert pq.read_metadata(written["empty"]).num_rows == 0


def test_to_parquet_embeds_image_files(tmp_path: Path) -> None:
    path = tmp_path / "pic.png"
    path.write_bytes(image_bytes(6, 6))
    ds = datasets.Dataset.from_dict({"image": [str(path)]}).cast_column("image", datasets.Image())
    written = Distiset(leaf=ds).to_parquet(tmp_path / "out")
    path.unlink()
    stored = pq.read_table(written["leaf"]).to_pylist()[0]["image"]
    assert stored["bytes"] == image_bytes(6, 6)
    assert stored["path"] == "pic.png"


def test_transform_columns_to_image(tmp_path: Path) -> None:
    png = image_bytes(8, 4)
    b64 = base64.b64encode(png).decode()
    path = tmp_path / "p.png"
    path.write_bytes(png)
    ds = datasets.Dataset.from_dict(
        {"image": [b64, None, "data:image/png;base64," + b64, str(path), "garbage!"], "n": [1] * 5}
    )
    other = datasets.Dataset.from_dict({"n": [1]})
    distiset = Distiset(gen=ds, other=other)
    assert distiset.transform_columns_to_image("image") is distiset
    out = distiset["gen"]
    assert isinstance(out.features["image"], datasets.Image)
    images = out["image"]
    assert [None if i is None else i.size for i in images] == [(8, 4), None, (8, 4), (8, 4), None]
    assert distiset["other"] is other
    distiset.transform_columns_to_image(["image"])  # already images: a no-op
    assert distiset["gen"] is out


def test_transform_columns_to_image_from_bytes() -> None:
    ds = datasets.Dataset.from_dict({"img": [image_bytes(3, 3), None]})
    out = Distiset(a=ds).transform_columns_to_image("img")["a"]
    assert out[0]["img"].size == (3, 3)
    assert out[1]["img"] is None


class FakeHub:
    def __init__(self) -> None:
        self.repos: list[dict[str, Any]] = []
        self.commits: list[dict[str, Any]] = []
        self.files = ["README.md", ".gitattributes", "data/captions/old-00000.parquet"]
        self.tokens: list[str | None] = []


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    fake = FakeHub()
    original_init = huggingface_hub.HfApi.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        fake.tokens.append(kwargs.get("token"))
        original_init(self, *args, **kwargs)

    def create_repo(self: Any, repo_id: str, **kwargs: Any) -> str:
        fake.repos.append({"repo_id": repo_id, **kwargs})
        return f"https://huggingface.co/datasets/{repo_id}"

    def list_repo_files(self: Any, repo_id: str, **kwargs: Any) -> list[str]:
        assert kwargs.get("repo_type") == "dataset"
        return list(fake.files)

    def create_commit(self: Any, **kwargs: Any) -> None:
        ops = kwargs["operations"]
        files = {}
        for op in ops:
            if isinstance(op, huggingface_hub.CommitOperationAdd):
                source = op.path_or_fileobj
                data = source if isinstance(source, bytes) else Path(str(source)).read_bytes()
                files[op.path_in_repo] = data
        deleted = [
            op.path_in_repo for op in ops if isinstance(op, huggingface_hub.CommitOperationDelete)
        ]
        fake.commits.append({**kwargs, "files": files, "deleted": deleted})

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("network access")

    monkeypatch.setattr(huggingface_hub.HfApi, "__init__", init)
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", list_repo_files)
    monkeypatch.setattr(huggingface_hub.HfApi, "create_commit", create_commit)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_file", no_network)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", no_network)
    return fake


def test_push_to_hub_makes_one_commit(distiset: Distiset, hub: FakeHub, tmp_path: Path) -> None:
    distiset.push_to_hub("me/my-data", private=True, token="hf_secret")
    assert hub.tokens == ["hf_secret"]
    assert hub.repos == [
        {"repo_id": "me/my-data", "repo_type": "dataset", "private": True, "exist_ok": True}
    ]
    assert len(hub.commits) == 1
    commit = hub.commits[0]
    assert commit["repo_id"] == "me/my-data"
    assert commit["repo_type"] == "dataset"
    files = commit["files"]
    assert sorted(files) == [
        "README.md",
        "data/captions/train-00000-of-00001.parquet",
        "data/empty/train-00000-of-00001.parquet",
    ]
    assert commit["deleted"] == ["data/captions/old-00000.parquet"]
    card = files["README.md"].decode()
    header = yaml.safe_load(card.split("---")[1])
    assert header["configs"] == [
        {
            "config_name": "captions",
            "data_files": [{"split": "train", "path": "data/captions/*.parquet"}],
        },
        {
            "config_name": "empty",
            "data_files": [{"split": "train", "path": "data/empty/*.parquet"}],
        },
    ]
    assert "hf_secret" not in card
    parquet = tmp_path / "pushed.parquet"
    parquet.write_bytes(files["data/captions/train-00000-of-00001.parquet"])
    table = pq.read_table(parquet)
    assert table.num_rows == 10
    image = table.column("image").to_pylist()[0]
    assert Image.open(io.BytesIO(image["bytes"])).size == (10, 5)
    features = json.loads(pq.read_schema(parquet).metadata[b"huggingface"])["info"]["features"]
    assert features["image"] == {"_type": "Image"}


def test_push_to_hub_token_sources(
    distiset: Distiset, hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    single = Distiset(captions=distiset["captions"])
    monkeypatch.setenv("HF_TOKEN", "from-env")
    single.push_to_hub("me/a", commit_message="hello")
    assert hub.tokens[-1] == "from-env"
    assert hub.commits[-1]["commit_message"] == "hello"
    header = yaml.safe_load(hub.commits[-1]["files"]["README.md"].decode().split("---")[1])
    assert header["configs"][0]["default"] is True
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "from-login")
    single.push_to_hub("me/a")
    assert hub.tokens[-1] == "from-login"
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(ValueError, match="no Hugging Face token"):
        single.push_to_hub("me/a")


def test_leaf_names_must_be_folder_names(tmp_path: Path) -> None:
    bad = Distiset({"../x": datasets.Dataset.from_dict({"a": [1]})})
    with pytest.raises(ValueError, match="folder name"):
        bad.to_parquet(tmp_path)
    with pytest.raises(ValueError, match="folder name"):
        bad.save_to_disk(tmp_path / "s")


def test_image_ref_column_through_the_writer(tmp_path: Path) -> None:
    rows = [{"image": ImageRef.from_value(image_bytes(4, 4))}, {"image": None}]
    shards = write_leaf(tmp_path / "s", rows)
    ds = Distiset.from_shards({"leaf": shards}, cache_dir=tmp_path / "c").default
    assert ds[0]["image"].size == (4, 4)
    assert ds[1]["image"] is None
