"""The `vLLM` offline backend against a stand-in ``vllm`` module (no GPU, no vLLM install here):
what the backend sends to ``vllm.LLM`` / ``LLM.chat`` / ``SamplingParams`` is asserted."""

from __future__ import annotations

import importlib
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydantic import BaseModel

from pixtill.models.llms import vLLM
from pixtill.models.structured import parse_structured
from pixtill.steps.tasks import METADATA_COLUMN, TextGenerationWithImage
from sample_images import image_bytes

STANDIN = Path(__file__).parent / "vllm_standin"


@pytest.fixture
def vllm(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.syspath_prepend(str(STANDIN))
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        monkeypatch.delitem(sys.modules, name)
    module = importlib.import_module("vllm")
    yield module
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        del sys.modules[name]


class Caption(BaseModel):
    caption: str
    objects: list[str]


class _CaptionTask(TextGenerationWithImage):
    def get_structured_output(self) -> type[Caption]:
        return Caption


def _rows(count: int, images: int = 2) -> list[dict[str, Any]]:
    return [
        {
            "instruction": f"describe picture {i} please",
            "image": [image_bytes(10 + i, 8 + k) for k in range(images)],
        }
        for i in range(count)
    ]


def test_import_is_lazy_and_load_builds_the_engine(vllm: ModuleType) -> None:
    del sys.modules["vllm"]
    model = vLLM(
        model="Qwen/Qwen2.5-VL-3B-Instruct",
        tensor_parallel_size=2,
        max_model_len=4096,
        limit_mm_per_prompt={"image": 3},
        extra_kwargs={"enforce_eager": True},
    )
    assert "vllm" not in sys.modules  # building the config imports nothing
    model.load()
    try:
        (engine,) = sys.modules["vllm"].INSTANCES
        assert engine.model == "Qwen/Qwen2.5-VL-3B-Instruct"
        assert engine.kwargs == {
            "tensor_parallel_size": 2,
            "dtype": "auto",
            "gpu_memory_utilization": 0.9,
            "limit_mm_per_prompt": {"image": 3},
            "trust_remote_code": False,
            "max_model_len": 4096,
            "enforce_eager": True,
        }
        clone = pickle.loads(pickle.dumps(model))
        assert clone._runtime.engine is None  # a replica loads its own engine
    finally:
        model.unload()
    assert model._runtime.engine is None


def test_images_sampling_params_and_usage_through_a_task(vllm: ModuleType) -> None:
    model = vLLM(
        model="tiny-vlm",
        limit_mm_per_prompt={"image": 2},
        generation_kwargs={"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 64, "seed": 11},
    )
    task = TextGenerationWithImage(name="caption", llm=model, num_generations=2)
    task.load()
    try:
        rows = task.process_batch(_rows(3))
        (engine,) = vllm.INSTANCES
    finally:
        task.unload()
    (call,) = engine.calls  # every row in one LLM.chat call: vLLM batches them
    assert len(call["conversations"]) == 3
    params = call["params"]
    assert (params.n, params.temperature, params.top_p, params.max_tokens, params.seed) == (
        2,
        0.7,
        0.9,
        64,
        11,
    )
    assert params.structured_outputs is None
    parts = call["conversations"][1][0]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url", "image_url"]
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert len(rows) == 6
    assert rows[2]["generation"] == "#0 seed=11 images=[PNG 11x8, PNG 11x9] words=4"
    assert rows[3]["generation"].startswith("#1 ")
    stats = rows[2][METADATA_COLUMN]["statistics_caption"]
    # The stand-in counts a token per word of the answer, and 10 per image plus a word each
    # of the prompt (4 words, 2 images).
    assert stats == {"input_tokens": 24, "output_tokens": len(rows[2]["generation"].split())}
    # Metadata keeps image references, not the data URLs sent to vLLM.
    assert "base64" not in repr(rows[0][METADATA_COLUMN])


def test_a_bad_row_fails_alone(vllm: ModuleType) -> None:
    model = vLLM(model="tiny-vlm", limit_mm_per_prompt={"image": 2})
    task = TextGenerationWithImage(name="caption", llm=model)
    rows_in = _rows(4)
    rows_in[1]["image"] = [image_bytes()] * 3  # over limit_mm_per_prompt
    rows_in[2]["instruction"] = "this one [[crash]] es"  # the engine fails on it
    task.load()
    try:
        rows = task.process_batch(rows_in)
        (engine,) = vllm.INSTANCES
    finally:
        task.unload()
    assert rows[0]["generation"] is not None and rows[3]["generation"] is not None
    assert "limit_mm_per_prompt allows 2" in rows[1][METADATA_COLUMN]["error_caption"]
    assert rows[1]["generation"] is None
    assert "engine failure" in rows[2][METADATA_COLUMN]["error_caption"]
    # One batch call (which failed), then each of the three good rows alone.
    assert [len(c["conversations"]) for c in engine.calls] == [3, 1, 1, 1]


def test_structured_output_uses_structured_outputs_params(vllm: ModuleType) -> None:
    task = _CaptionTask(name="caption", llm=vLLM(model="tiny-vlm"))
    task.load()
    try:
        rows = task.process_batch(_rows(2, images=1))
        (engine,) = vllm.INSTANCES
    finally:
        task.unload()
    structured = engine.calls[0]["params"].structured_outputs
    assert structured.json == Caption.model_json_schema()
    for row in rows:
        assert "error_caption" not in row[METADATA_COLUMN]
        assert parse_structured(row["generation"], Caption) == Caption(
            caption="text", objects=["text"]
        )


def test_older_vllm_gets_guided_decoding(vllm: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    class GuidedDecodingParams:
        def __init__(self, json: Any = None) -> None:
            self.json = json

    sampling = sys.modules["vllm.sampling_params"]
    monkeypatch.delattr(sampling, "StructuredOutputsParams")
    monkeypatch.setattr(sampling, "GuidedDecodingParams", GuidedDecodingParams, raising=False)
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(vllm, "SamplingParams", lambda **kw: sent.append(kw) or kw)
    model = vLLM(model="tiny-vlm")
    model.load()
    try:
        params = model.sampling_params(1, {"type": "object"}, {"temperature": 0})
    finally:
        model.unload()
    assert set(params) == {"n", "temperature", "guided_decoding"}
    assert params["guided_decoding"].json == {"type": "object"}


def test_chat_template_file_is_sent_with_each_call(vllm: ModuleType, tmp_path: Path) -> None:
    template = tmp_path / "chat.jinja"
    template.write_text("{% for m in messages %}{{ m.content }}{% endfor %}")
    model = vLLM(model="tiny-vlm", chat_template=str(template))
    model.load()
    try:
        (output,) = model.generate([[{"role": "user", "content": "hello there"}]])
        (engine,) = vllm.INSTANCES
    finally:
        model.unload()
    assert engine.calls[0]["chat_template"] == template.read_text()
    assert output["generations"] == ["#0 seed=None images=[] words=2"]


def test_missing_vllm_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    with pytest.raises(ImportError, match=r"pixtill\[vllm\]"):
        vLLM(model="m").load()
