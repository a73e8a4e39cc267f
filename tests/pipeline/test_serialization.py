from __future__ import annotations

import base64
import importlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import Field, SecretStr

from doubles import DescribingLLM, PaletteImageModel
from pixtill.images import ResizePolicy
from pixtill.pipeline import Pipeline
from pixtill.pipeline.config_file import (
    PipelineConfigError,
    UntrustedTypeError,
    pipeline_to_dict,
    resolve_class,
)
from pixtill.pipeline.config_file import (
    graph_from_dict as pipeline_from_dict,
)
from pixtill.pipeline.config_file import (
    load_graph as load_pipeline,
)
from pixtill.steps import LoadDataFromDicts, Step, StepInput
from pixtill.steps.tasks import ImageGeneration, TextGenerationWithImage
from pixtill.steps.typing import StepColumns, StepOutput
from sample_images import image_bytes

DOUBLES = ["doubles.DescribingLLM", "doubles.PaletteImageModel"]
SECRET = "sk-test-0123456789abcdef"


class Upper(Step):
    """A plain step defined outside pixtill (needs `allow`)."""

    column: str = "generation"

    @property
    def inputs(self) -> StepColumns:
        return [self.column]

    def process(self, inputs: StepInput) -> StepOutput:
        yield [{**r, "upper": str(r[self.column]).upper()} for r in inputs]


class KeyedLLM(DescribingLLM):
    """A model with an API key declared the way pixtill's backends declare theirs."""

    api_key: SecretStr | None = Field(default=None, exclude=True)
    image_resize: ResizePolicy | None = None


class LeakyLLM(DescribingLLM):
    """A secret field someone forgot to exclude."""

    api_key: SecretStr | None = None


def data_url(width: int) -> str:
    return "data:image/png;base64," + base64.b64encode(image_bytes(width, 8)).decode()


def build(tmp_path: Path, llm: Any = None) -> Pipeline:
    rows = [{"instruction": f"q{i}", "image": data_url(8 + i)} for i in range(3)]
    with Pipeline(name="vision", description="caption then paint", cache_dir=tmp_path) as p:
        load = LoadDataFromDicts(name="load", data=rows, batch_size=2)
        caption = TextGenerationWithImage(
            name="caption",
            llm=llm or DescribingLLM(generation_kwargs={"temperature": 0.3}),
            template="Describe: {{ instruction }}",
            num_generations=1,
        )
        paint = ImageGeneration(
            name="paint",
            image_generation_model=PaletteImageModel(model_id="test/other-palette"),
            input_mappings={"prompt": "generation"},
            output_mappings={"image": "painted", "model_name": "image_model"},
        )
        upper = Upper(name="upper")
        load >> caption >> [paint, upper]
    return p


def assert_same(a: Pipeline, b: Pipeline) -> None:
    assert list(a.steps) == list(b.steps)
    for name, step in a.steps.items():
        assert type(b.steps[name]) is type(step)
        assert b.steps[name].model_dump() == step.model_dump()
    assert b.edges == a.edges
    assert (b.name, b.description, b.cache_dir) == (a.name, a.description, a.cache_dir)


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    pipeline = build(tmp_path)
    path = pipeline.dump(tmp_path / f"pipeline{suffix}")
    assert path == tmp_path / f"pipeline{suffix}"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file
    loaded = Pipeline.from_file(path, allow=[*DOUBLES, "test_serialization.Upper"])
    assert_same(pipeline, loaded)
    assert loaded.steps["caption"]._graph is loaded  # steps joined the new pipeline


def test_format_matches_the_documented_shape(tmp_path: Path) -> None:
    path = build(tmp_path).dump(tmp_path / "p.yaml")
    data = yaml.safe_load(path.read_text())
    assert data["pixtill_version"] == "0.1.0"
    spec = data["pipeline"]
    assert spec["name"] == "vision"
    caption = spec["steps"][1]
    assert caption["name"] == "caption"
    assert caption["type"] == (
        "pixtill.steps.tasks.text_generation_with_image.TextGenerationWithImage"
    )
    assert "name" not in caption["params"]
    assert caption["params"]["llm"] == {
        "type": "doubles.DescribingLLM",
        "params": {
            "generation_kwargs": {"temperature": 0.3},
            "use_offline_batch_generation": False,
            "offline_batch_generation_block_until_done": None,
            "model_id": "test/describing-vlm",
            "fail_when": None,
        },
    }
    assert spec["connections"] == [
        {"from": "load", "to": ["caption"]},
        {"from": "caption", "to": ["paint", "upper"]},
    ]
    # JSON holds the same thing
    json_path = build(tmp_path).dump(tmp_path / "p.json")
    assert json.loads(json_path.read_text()) == data


def test_pipeline_dict_api(tmp_path: Path) -> None:
    pipeline = build(tmp_path)
    data = pipeline_to_dict(pipeline)
    assert_same(pipeline, pipeline_from_dict(data, allow=[*DOUBLES, "test_serialization.Upper"]))


def test_loaded_pipeline_runs_like_the_original(tmp_path: Path) -> None:
    pipeline = build(tmp_path / "a")
    loaded = Pipeline.from_file(
        pipeline.dump(tmp_path / "p.yaml"), allow=[*DOUBLES, "test_serialization.Upper"]
    )
    first = pipeline.run(use_cache=False, output_dir=tmp_path / "out-a")
    again = loaded.run(use_cache=False, output_dir=tmp_path / "out-b")
    assert sorted(first) == sorted(again) == ["paint", "upper"]
    assert first["upper"]["upper"] == again["upper"]["upper"]
    assert again["upper"]["upper"][0].startswith("[0] SAW USER: DESCRIBE: Q0 <PNG 8X8>")
    assert again["paint"]["image_model"] == ["test/other-palette"] * 3


def test_secrets_are_never_written(tmp_path: Path) -> None:
    llm = KeyedLLM(api_key=SecretStr(SECRET), image_resize=ResizePolicy(max_side=512))
    pipeline = build(tmp_path, llm=llm)
    for suffix in (".yaml", ".json"):
        text = pipeline.dump(tmp_path / f"p{suffix}").read_text()
        assert SECRET not in text
        assert "api_key" not in text
    loaded = Pipeline.from_file(
        tmp_path / "p.yaml",
        allow=[
            "test_serialization.KeyedLLM",
            "doubles.PaletteImageModel",
            "test_serialization.Upper",
        ],
    )
    rebuilt = loaded.steps["caption"].llm
    assert isinstance(rebuilt, KeyedLLM)
    assert rebuilt.api_key is None  # comes from the environment / arguments, never the file
    assert rebuilt.image_resize == ResizePolicy(max_side=512)  # a dataclass, rebuilt typed


def test_a_secret_that_is_not_excluded_refuses_the_dump(tmp_path: Path) -> None:
    pipeline = build(tmp_path, llm=LeakyLLM(api_key=SecretStr(SECRET)))
    target = tmp_path / "p.yaml"
    with pytest.raises(PipelineConfigError, match=r"field 'llm'.*secret \(SecretStr\)"):
        pipeline.dump(target)
    assert not target.exists()


def test_a_secret_copied_into_another_field_refuses_the_dump(tmp_path: Path) -> None:
    llm = KeyedLLM(api_key=SecretStr(SECRET), generation_kwargs={"extra_headers": SECRET})
    target = tmp_path / "p.yaml"
    with pytest.raises(PipelineConfigError, match="value of a secret"):
        build(tmp_path, llm=llm).dump(target)
    assert not target.exists()


def config(step_type: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "pixtill_version": "0.1.0",
        "pipeline": {
            "name": "p",
            "steps": [{"name": "s", "type": step_type, "params": params or {}}],
            "connections": [],
        },
    }


@pytest.mark.parametrize(
    "path",
    ["posix.system", "os.system", "subprocess.Popen", "builtins.eval", "never_imported_xyz.X"],
)
def test_untrusted_types_are_refused_before_import(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    imported: list[str] = []
    real_import = importlib.import_module

    def spy(name: str, package: str | None = None) -> Any:
        imported.append(name)
        return real_import(name, package)

    monkeypatch.setattr(importlib, "import_module", spy)
    module = path.split(".")[0]
    was_imported = module in sys.modules
    with pytest.raises(
        UntrustedTypeError, match=rf"refusing to load type '{path}'.*--allow {path}"
    ):
        pipeline_from_dict(config(path))
    assert imported == []
    assert (module in sys.modules) == was_imported


def test_untrusted_nested_type_names_the_field() -> None:
    data = config(
        "pixtill.steps.tasks.TextGeneration",
        {"llm": {"type": "posix.system", "params": {"command": "echo hacked"}}},
    )
    with pytest.raises(
        UntrustedTypeError, match=r"step 's', field 'llm'.*allow=\['posix.system'\]"
    ):
        pipeline_from_dict(data)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("pixtill.paths.os.system", "no class"),  # no walking from a pixtill module into another
        ("pixtill.paths.cache_dir", "not a class"),
        ("pixtill.images.ref.Path", "not a pixtill class"),  # imported there, defined elsewhere
        ("pixtill.nope.Thing", "no class|no such module"),
        ("pixtill", "dotted class path"),
        ("pixtill.steps.tasks.TextGeneration; import os", "dotted class path"),
        ("pixtill.errors.PixtillError", "not a pydantic model"),
        ("doubles.DescribingLLM", "refusing"),  # fine class, but not allowed
    ],
)
def test_bad_type_paths(path: str, message: str) -> None:
    with pytest.raises(PipelineConfigError, match=message):
        pipeline_from_dict(config(path))


def test_allowed_class_must_be_a_step_or_a_model() -> None:
    with pytest.raises(PipelineConfigError, match="not a pydantic model"):
        resolve_class("collections.OrderedDict", ["collections.OrderedDict"])
    with pytest.raises(PipelineConfigError, match="not a pixtill step"):
        pipeline_from_dict(config("doubles.DescribingLLM"), allow=["doubles.DescribingLLM"])
    # allowing is by exact path, never by prefix
    with pytest.raises(UntrustedTypeError):
        resolve_class("doubles.PaletteImageModel", ["doubles", "doubles.DescribingLLM"])


def test_data_that_looks_like_an_object_stays_data(tmp_path: Path) -> None:
    rows = [{"type": "posix.system", "params": {"command": "echo hacked"}}]
    with Pipeline(name="data", cache_dir=tmp_path) as pipeline:
        LoadDataFromDicts(name="load", data=rows)
    loaded = Pipeline.from_file(pipeline.dump(tmp_path / "p.yaml"))
    assert loaded.steps["load"].model_dump()["data"] == rows


def test_yaml_is_read_safely(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text('pipeline: !!python/object/apply:os.system ["echo hacked"]\n')
    with pytest.raises(PipelineConfigError, match="is not valid"):
        load_pipeline(path)


def test_config_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(PipelineConfigError, match="not found"):
        load_pipeline(tmp_path / "missing.yaml")
    with pytest.raises(PipelineConfigError, match="'pipeline' key"):
        pipeline_from_dict({"steps": []})
    with pytest.raises(PipelineConfigError, match=r"step 's'.*field 'nope'.*Extra inputs"):
        pipeline_from_dict(config("pixtill.steps.LoadDataFromDicts", {"nope": 1}))
    with pytest.raises(PipelineConfigError, match=r"step 's', field 'llm'.*field 'model_id'"):
        pipeline_from_dict(
            config(
                "pixtill.steps.tasks.TextGeneration",
                {"llm": {"type": "doubles.DescribingLLM", "params": {"model_id": [1]}}},
            ),
            allow=DOUBLES,
        )
    bad_connection = config("pixtill.steps.LoadDataFromDicts")
    bad_connection["pipeline"]["connections"] = [{"from": "s", "to": ["ghost"]}]
    with pytest.raises(PipelineConfigError, match="unknown step 'ghost'"):
        pipeline_from_dict(bad_connection)
    into_a_loader = config("pixtill.steps.LoadDataFromDicts")
    into_a_loader["pipeline"]["steps"].append(dict(into_a_loader["pipeline"]["steps"][0]))
    with pytest.raises(PipelineConfigError, match="already has a step named 's'"):
        pipeline_from_dict(into_a_loader)
    into_a_loader["pipeline"]["steps"][1]["name"] = "t"
    into_a_loader["pipeline"]["connections"] = [{"from": "s", "to": "t"}]
    with pytest.raises(PipelineConfigError, match="generator step 't' cannot have inputs"):
        pipeline_from_dict(into_a_loader)
    with pytest.raises(PipelineConfigError, match=r"unknown keys \['extra'\]"):
        pipeline_from_dict({"pipeline": {"name": "p", "extra": 1}})


def test_dump_refusals(tmp_path: Path) -> None:
    with pytest.raises(PipelineConfigError, match=r"\.yaml, \.yml or \.json"):
        build(tmp_path).dump(tmp_path / "p.txt")

    class Local(Upper):
        pass

    with Pipeline(name="local", cache_dir=tmp_path) as pipeline:
        Local(name="local")
    with pytest.raises(PipelineConfigError, match="inside a function"):
        pipeline.dump(tmp_path / "p.yaml")

    with Pipeline(name="bytes", cache_dir=tmp_path) as pipeline:
        LoadDataFromDicts(name="load", data=[{"image": image_bytes(4, 4)}])
    with pytest.raises(PipelineConfigError, match=r"step 'load'.*cannot be written"):
        pipeline.dump(tmp_path / "p.yaml")
