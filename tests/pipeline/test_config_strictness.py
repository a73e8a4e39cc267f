"""Pipeline names that could leave their folders, duplicate keys and unknown top-level keys
are refused with an error naming the culprit; nothing is written or deleted anywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from pixtill.cli import main
from pixtill.paths import UnsafeNameError, check_name, child_path
from pixtill.pipeline import Pipeline
from pixtill.pipeline.config_file import PipelineConfigError
from pixtill.pipeline.graph import Graph
from pixtill.pipeline.safe_yaml import load_yaml

BAD_NAMES = [
    "../../victim",
    "..",
    ".",
    ".hidden",
    "a/b",
    "a\\b",
    "/etc",
    "",
    "x" * 129,
    "a\nb",
    "a b",
]
CONFIG = """\
pixtill_version: "0.1.0"
pipeline:
  name: {name}
  steps:
    - name: load
      type: pixtill.steps.LoadDataFromDicts
      params:
        data: [{{x: 1}}]
  connections: []
"""


@pytest.mark.parametrize("name", BAD_NAMES)
def test_the_python_api_refuses_a_name_that_is_not_one_folder(name: str) -> None:
    with pytest.raises(UnsafeNameError, match="pipeline name") as caught:
        Pipeline(name=name)
    assert repr(name) in str(caught.value)
    with pytest.raises(ValueError, match="pipeline name"):  # still a ValueError to callers
        Graph(name)


@pytest.mark.parametrize("name", ["vision", "caption-then-paint", "v1.2", "A_b-3"])
def test_ordinary_names_still_work(name: str, tmp_path: Path) -> None:
    assert Pipeline(name=name).name == name
    assert child_path(tmp_path, name) == tmp_path / name


def test_child_path_refuses_leaving_its_parent(tmp_path: Path) -> None:
    with pytest.raises(UnsafeNameError, match=r"'\.\.'"):
        child_path(tmp_path, "..")
    with pytest.raises(UnsafeNameError, match="cache name"):
        child_path(tmp_path, "a/../../b", what="cache name")
    assert check_name("ok.name") == "ok.name"


@pytest.mark.parametrize("name", ["'../../victim'", "'a/b'", "'..'", "'.x'"])
def test_a_config_file_refuses_the_name(name: str, tmp_path: Path) -> None:
    path = tmp_path / "victim.yaml"
    path.write_text(CONFIG.format(name=name))
    with pytest.raises(PipelineConfigError, match=r"pipeline\.name.*" + name.strip("'")[:2]):
        Pipeline.from_file(path)


def test_pixtill_run_with_an_escaping_name_exits_2_and_touches_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    victim = tmp_path / "a" / "victim"  # where pixtill-output/../../victim would land
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    monkeypatch.chdir(work)
    monkeypatch.setenv("PIXTILL_CACHE_DIR", str(tmp_path / "cache" / "root"))
    config = tmp_path / "victim.yaml"
    config.write_text(CONFIG.format(name="../../victim"))
    before = sorted(p for p in tmp_path.rglob("*"))

    assert main(["run", "--config", str(config), "--no-progress"]) == 2

    err = capsys.readouterr().err
    assert "'../../victim'" in err and "pipeline.name" in err
    assert sorted(p for p in tmp_path.rglob("*")) == before
    assert (victim / "precious.txt").read_text() == "keep me"


def test_a_duplicate_key_is_refused_with_its_name_and_line(tmp_path: Path) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text(
        CONFIG.format(name="twice").replace(
            "      params:\n", "      params:\n        batch_size: 2\n        batch_size: 3\n"
        )
    )
    with pytest.raises(PipelineConfigError, match=r"'batch_size' on line 9 .*first on line 8"):
        Pipeline.from_file(path)


@pytest.mark.parametrize(
    "text",
    [
        "pipeline: {name: a, name: b}\n",  # flow style, one line
        "pixtill_version: '0.1.0'\npixtill_version: '0.1.0'\npipeline: {name: a}\n",
    ],
)
def test_duplicate_keys_anywhere_are_refused(text: str, tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(PipelineConfigError, match="given twice"):
        Pipeline.from_file(path)


def test_a_duplicate_key_in_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dup.json"
    path.write_text('{"pipeline": {"name": "a", "steps": [], "name": "b"}}')
    with pytest.raises(PipelineConfigError, match="'name' is given twice"):
        Pipeline.from_file(path)


def test_a_yaml_merge_key_may_still_be_overridden() -> None:
    # Merge keys are legitimate YAML; only a literal key given twice is refused.
    value = load_yaml("a: &a {x: 1, y: 2}\nb:\n  <<: *a\n  x: 3\n")
    assert value["b"] == {"x": 3, "y": 2}


def test_an_unknown_top_level_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bogus.yaml"
    path.write_text(CONFIG.format(name="bogus") + "bogus_key: 1\n")
    with pytest.raises(PipelineConfigError, match=r"unknown keys \['bogus_key'\]"):
        Pipeline.from_file(path)


def test_pixtill_run_refuses_a_duplicate_key_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text(CONFIG.format(name="twice") + "pixtill_version: '0.1.0'\n")
    assert main(["run", "--config", str(path), "-o", str(tmp_path / "out")]) == 2
    assert "'pixtill_version' on line 10" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
