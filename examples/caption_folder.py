"""Caption a folder of images from Python, with the backend of your choice.

    python examples/caption_folder.py --backend ollama            # a local Ollama server
    python examples/caption_folder.py --backend vllm              # a local vLLM server
    python examples/caption_folder.py --backend openai            # OPENAI_API_KEY
    python examples/caption_folder.py --backend anthropic         # ANTHROPIC_API_KEY
    python examples/caption_folder.py --backend hf                # HF_TOKEN or `hf auth login`
    python examples/caption_folder.py --backend transformers      # in-process, needs torch

Options: ``--folder`` (default: examples/images), ``--model``, ``--base-url`` (another
server, or a self-hosted one for ``hf``), ``--output`` (default: pixtill-output/captions).
Then look at the result with ``pixtill view <output>``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pixtill.distiset import Distiset
from pixtill.pipeline import Pipeline
from pixtill.steps import LoadImagesFromFolder
from pixtill.steps.tasks import TextGenerationWithImage

HERE = Path(__file__).parent


def _openai(default_model: str, default_url: str | None) -> Callable[..., Any]:
    def make(model: str | None, base_url: str | None) -> Any:
        from pixtill.models.llms import OpenAILLM

        options: dict[str, Any] = {"model": model or default_model}
        if base_url or default_url:
            options["base_url"] = base_url or default_url  # must end in /v1
        return OpenAILLM(**options, generation_kwargs={"max_tokens": 128})

    return make


def _anthropic(model: str | None, base_url: str | None) -> Any:
    from pixtill.models.llms import AnthropicLLM

    options = {"base_url": base_url} if base_url else {}
    return AnthropicLLM(model=model or "claude-sonnet-4-5", **options)


def _hf(model: str | None, base_url: str | None) -> Any:
    from pixtill.models.llms import InferenceEndpointsLLM

    if base_url:  # a self-hosted TGI (or any OpenAI-compatible chat server)
        return InferenceEndpointsLLM(base_url=base_url)
    return InferenceEndpointsLLM(model_id=model or "meta-llama/Llama-3.2-11B-Vision-Instruct")


def _transformers(model: str | None, base_url: str | None) -> Any:
    from pixtill.models.llms import TransformersLLM

    return TransformersLLM(
        model=model or "HuggingFaceTB/SmolVLM-256M-Instruct",
        generation_kwargs={"max_new_tokens": 64},
    )


BACKENDS: dict[str, Callable[[str | None, str | None], Any]] = {
    "ollama": _openai("qwen2.5vl:3b", "http://localhost:11434/v1"),
    "vllm": _openai("Qwen/Qwen2.5-VL-3B-Instruct", "http://localhost:8000/v1"),
    "openai": _openai("gpt-4o-mini", None),
    "anthropic": _anthropic,
    "hf": _hf,
    "transformers": _transformers,
}


def build(backend: str, folder: Path, model: str | None, base_url: str | None) -> Pipeline:
    with Pipeline(name=f"captions-{backend}") as pipeline:
        load = LoadImagesFromFolder(name="load", folder=folder)
        caption = TextGenerationWithImage(
            name="caption",
            llm=BACKENDS[backend](model, base_url),
            template="Describe this image in one sentence.",
            columns=[],
            output_mappings={"generation": "caption"},
        )
        load >> caption
    return pipeline


def main(argv: list[str] | None = None) -> Distiset:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="ollama")
    parser.add_argument("--folder", type=Path, default=HERE / "images")
    parser.add_argument("--model", default=None)
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--output", type=Path, default=Path("pixtill-output") / "captions")
    args = parser.parse_args(argv)
    distiset = build(args.backend, args.folder, args.model, args.base_url).run()
    distiset.save_to_disk(args.output)
    for row in distiset["caption"].select_columns(["path", "caption"]):
        print(f"{row['path']}: {row['caption']}")
    print(f"saved to {args.output}; look at it with: pixtill view {args.output}")
    return distiset


if __name__ == "__main__":
    main()
