"""The README's configs are the ones that run: the tour's YAML is `examples/01_...` and every
copy-paste backend block builds its model (construction only: nothing is loaded or sent)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from pixtill.pipeline.serialization import resolve_class

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()


def _yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", README, flags=re.S)


def test_the_tour_config_is_the_first_example() -> None:
    tour = [b for b in _yaml_blocks() if "name: caption-ollama" in b]
    assert len(tour) == 1
    example = (ROOT / "examples" / "01_caption_ollama.yaml").read_text()
    assert yaml.safe_load(tour[0]) == yaml.safe_load(example)


def test_every_copy_paste_backend_block_builds_its_model() -> None:
    section = README.split("### Copy-paste configs", 1)[1].split("\n### ", 1)[0]
    [block] = re.findall(r"```yaml\n(.*?)```", section, flags=re.S)
    chunks = [c for c in block.split("\n\n") if c.strip()]
    assert len(chunks) >= 8
    built = []
    for chunk in chunks:
        [(slot, spec)] = yaml.safe_load(chunk).items()
        assert slot in ("llm", "image_generation_model")
        model = resolve_class(spec["type"])(**spec["params"])
        built.append(type(model).__name__)
    assert {
        "OpenAILLM",
        "AnthropicLLM",
        "InferenceEndpointsLLM",
        "TransformersLLM",
        "OpenAIImageGeneration",
        "InferenceEndpointsImageGeneration",
        "DiffusersImageGeneration",
    } <= set(built)
