"""Hugging Face: serverless Inference Providers, dedicated Inference Endpoints, or any TGI.

All three speak OpenAI's chat completions format (TGI's Messages API), so
`InferenceEndpointsLLM` is `OpenAIChatLLM` with Hugging Face's URLs and tokens.
"""

from __future__ import annotations

from pydantic import Field

from pixtill.models.huggingface_location import HuggingFaceLocation
from pixtill.models.llms.openai import OpenAIChatLLM

__all__ = ["InferenceEndpointsLLM"]


class InferenceEndpointsLLM(HuggingFaceLocation, OpenAIChatLLM):
    """A chat model served by Hugging Face (or by any TGI / OpenAI-compatible server).

    Give exactly one of:

    - ``model_id``: serverless, through the Inference Providers router: requests go to
      ``https://router.huggingface.co/v1/chat/completions`` with ``"model": model_id``
      (append ``":<provider>"`` to the id to pick a provider);
    - ``endpoint_name`` (and ``endpoint_namespace``): a dedicated Inference Endpoint, whose URL
      is looked up with ``huggingface_hub.get_inference_endpoint`` at ``load()``;
    - ``base_url``: any server with the Messages API, e.g. a local TGI (``.../v1`` accepted);
      ``model_id`` may come along and is then sent as the request's ``model``.

    The token is ``api_key``, else ``HF_TOKEN``, else (not with ``base_url``) the one saved by
    ``huggingface-cli login``. Images go as OpenAI ``image_url`` parts. TGI refuses ``n > 1``: the
    first refusal switches to one request per generation for the rest of the run.
    """

    tokenizer_id: str | None = Field(
        default=None,
        description="Accepted for compatibility with distilabel; unused (the server applies "
        "the chat template).",
    )

    def _chat_url(self) -> str:
        root = self._root_url()  # the router, the endpoint's URL or base_url
        return f"{root}/chat/completions" if root.endswith("/v1") else f"{root}/v1/chat/completions"

    def _wire_model(self) -> str:
        return self.model_id or "tgi"
