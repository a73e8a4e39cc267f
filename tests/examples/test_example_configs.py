"""Every config and script in examples/ runs: against fake provider servers started here on
127.0.0.1 (only the server address is changed), or on the tiny local models (only the model
path is changed). Nothing reaches the network."""

from __future__ import annotations

import runpy
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from http_servers import serve
from local_models import TinyModels, offline, tiny_models
from models.fake_providers import FakeProviders
from pixtill.cli import main
from pixtill.distiset import Distiset
from pixtill.pipeline import Pipeline

_FIXTURES = (offline, tiny_models)  # imported for pytest; named here so linters see them used
pytestmark = pytest.mark.usefixtures("offline")

EXAMPLES = Path(__file__).parents[2] / "examples"
KEY = "sk-example-test-key"
FAST = {"max_retries": 0, "timeout": 30}
Patch = Callable[[dict[str, Any], str], None]


@pytest.fixture(scope="module")
def fake_url() -> Iterator[str]:
    """A fake server that checks the API key (the hosted APIs)."""
    with serve(FakeProviders(api_key=KEY).app()) as base:
        yield base


@pytest.fixture(scope="module")
def keyless_url() -> Iterator[str]:
    """A fake server that wants no key (a local vLLM or Ollama)."""
    with serve(FakeProviders().app()) as base:
        yield base


def _steps(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in config["pipeline"]["steps"]}


def _model_params(config: dict[str, Any], step: str) -> dict[str, Any]:
    params = _steps(config)[step]["params"]
    model = params.get("llm") or params["image_generation_model"]
    result: dict[str, Any] = model["params"]
    return result


def _server(path: str) -> Patch:
    def patch(config: dict[str, Any], base: str) -> None:
        step = "caption" if "caption" in _steps(config) else "paint"
        _model_params(config, step).update(base_url=base + path, **FAST)

    return patch


HTTP_CONFIGS: list[tuple[str, Patch, bool]] = [  # file, patch, needs a key
    ("01_caption_ollama.yaml", _server("/v1"), False),
    ("02_caption_vllm.yaml", _server("/v1"), False),
    ("03_caption_openai.yaml", _server("/v1"), True),
    ("04_caption_anthropic.yaml", _server(""), True),
    ("05_caption_hf_inference.yaml", _server("/v1"), True),
    ("07_generate_images_openai.yaml", _server("/v1"), True),
    ("08_generate_images_hf_inference.yaml", _server("/models/owner/flux"), True),
]


def _write(config: dict[str, Any], tmp_path: Path) -> Path:
    steps = _steps(config)
    if "load" in steps:
        steps["load"]["params"]["folder"] = str(EXAMPLES / "images")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run(config_path: Path, out: Path) -> Distiset:
    assert main(["run", "-c", str(config_path), "-o", str(out), "--no-progress"]) == 0
    return Distiset.load_from_disk(out)


def test_a_run_says_how_to_look_at_its_result(
    keyless_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PIXTILL_CACHE_DIR", str(tmp_path / "cache"))
    config = yaml.safe_load((EXAMPLES / "01_caption_ollama.yaml").read_text())
    _server("/v1")(config, keyless_url)
    _run(_write(config, tmp_path), tmp_path / "out")
    assert f"pixtill view {tmp_path / 'out'}" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_config_loads_and_keeps_no_secret(name: str) -> None:
    text = (EXAMPLES / name).read_text()
    pipeline = Pipeline.from_file(EXAMPLES / name)
    assert pipeline.steps
    assert "api_key:" not in text  # keys come from the environment, never from a file
    for url in [line for line in text.splitlines() if "base_url: http://localhost" in line]:
        assert "/v1" in url  # a local OpenAI-compatible server is reached under /v1
    assert "pixtill view" in text and "pixtill run" in text  # each says how to run and look


@pytest.mark.parametrize(("name", "patch", "needs_key"), HTTP_CONFIGS)
def test_http_configs_run_against_a_fake_server(
    name: str,
    patch: Patch,
    needs_key: bool,
    fake_url: str,
    keyless_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PIXTILL_CACHE_DIR", str(tmp_path / "cache"))
    for variable in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "HF_TOKEN"):
        if needs_key:
            monkeypatch.setenv(variable, KEY)
        else:
            monkeypatch.delenv(variable, raising=False)
    config = yaml.safe_load((EXAMPLES / name).read_text())
    patch(config, fake_url if needs_key else keyless_url)
    distiset = _run(_write(config, tmp_path), tmp_path / "out")
    [(leaf, dataset)] = distiset.items()
    if leaf == "caption":
        assert len(dataset) == 3
        assert all(isinstance(c, str) and c for c in dataset["caption"])
    else:
        assert len(dataset) == len(config["pipeline"]["steps"][0]["params"]["data"])
        assert all(image is not None and image.size[0] > 0 for image in dataset["image"])
    assert set(dataset["model_name"]) and None not in dataset["model_name"]


def test_local_configs_run_on_the_tiny_models(
    tiny_models: TinyModels, keyless_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIXTILL_CACHE_DIR", str(tmp_path / "cache"))
    small_images = {"num_inference_steps": 2, "width": 64, "height": 64, "seed": 0}

    config = yaml.safe_load((EXAMPLES / "06_caption_transformers_local.yaml").read_text())
    _model_params(config, "caption").update(
        model=str(tiny_models.vlm), generation_kwargs={"max_new_tokens": 4}
    )
    captions = _run(_write(config, tmp_path), tmp_path / "out06")["caption"]
    assert len(captions) == 3 and set(captions["model_name"]) == {str(tiny_models.vlm)}

    config = yaml.safe_load((EXAMPLES / "09_generate_images_diffusers_local.yaml").read_text())
    _model_params(config, "paint").update(
        model=str(tiny_models.text_to_image), generation_kwargs=small_images
    )
    images = _run(_write(config, tmp_path), tmp_path / "out09")["paint"]
    assert [image.size for image in images["image"]] == [(64, 64), (64, 64)]

    # The chain: a local server captions, diffusers paints; both model names are kept.
    config = yaml.safe_load((EXAMPLES / "10_caption_then_paint.yaml").read_text())
    _model_params(config, "caption").update(base_url=keyless_url + "/v1", **FAST)
    _model_params(config, "paint").update(
        model=str(tiny_models.text_to_image), generation_kwargs=small_images
    )
    chain = _run(_write(config, tmp_path), tmp_path / "out10")["paint"]
    assert len(chain) == 3
    assert set(chain["model_name"]) == {"qwen2.5vl:3b"}
    assert set(chain["model_name_paint"]) == {str(tiny_models.text_to_image)}
    assert all(image.size == (64, 64) for image in chain["generated_image"])


def _script(name: str, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", [name, *argv])
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")


@pytest.mark.parametrize(
    ("backend", "path", "needs_key"),
    [
        ("ollama", "/v1", False),
        ("vllm", "/v1", False),
        ("openai", "/v1", True),
        ("anthropic", "", True),
        ("hf", "/v1", True),
    ],
)
def test_the_caption_script_runs_each_backend(
    backend: str,
    path: str,
    needs_key: bool,
    fake_url: str,
    keyless_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PIXTILL_CACHE_DIR", str(tmp_path / "cache"))
    for variable in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "HF_TOKEN"):
        if needs_key:
            monkeypatch.setenv(variable, KEY)
        else:
            monkeypatch.delenv(variable, raising=False)
    base = (fake_url if needs_key else keyless_url) + path
    _script(
        "caption_folder.py",
        ["--backend", backend, "--base-url", base, "--output", str(tmp_path / "out")],
        monkeypatch,
    )
    printed = capsys.readouterr().out
    assert "red-circle.png: " in printed and f"pixtill view {tmp_path / 'out'}" in printed
    assert len(Distiset.load_from_disk(tmp_path / "out")["caption"]) == 3


def test_the_scripts_run_the_local_backends(
    tiny_models: TinyModels,
    fake_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PIXTILL_CACHE_DIR", str(tmp_path / "cache"))
    _script(
        "caption_folder.py",
        [
            "--backend",
            "transformers",
            "--model",
            str(tiny_models.vlm),
            "--output",
            str(tmp_path / "c"),
        ],
        monkeypatch,
    )
    assert len(Distiset.load_from_disk(tmp_path / "c")["caption"]) == 3
    _script(
        "generate_images.py",
        [
            "--backend",
            "diffusers",
            "--model",
            str(tiny_models.text_to_image),
            "--output",
            str(tmp_path / "d"),
        ],
        monkeypatch,
    )
    assert len(Distiset.load_from_disk(tmp_path / "d")["paint"]) == 2
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("HF_TOKEN", KEY)
    for backend, path in (("openai", "/v1"), ("hf", "/models/owner/flux")):
        out = tmp_path / backend
        _script(
            "generate_images.py",
            ["--backend", backend, "--base-url", fake_url + path, "--output", str(out)],
            monkeypatch,
        )
        assert len(Distiset.load_from_disk(out)["paint"]) == 2
    assert "pixtill view" in capsys.readouterr().out
