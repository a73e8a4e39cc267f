"""Where a Hugging Face model is served (serverless router, Inference Endpoint or any TGI), and
its token: shared by `InferenceEndpointsLLM` and `InferenceEndpointsImageGeneration`."""

from __future__ import annotations

from pydantic import Field, PrivateAttr, SecretStr, model_validator

from pixtill.models.remote import RemoteModel, SecretField, resolve_secret

__all__ = [
    "HF_ROUTER_URL",
    "HuggingFaceLocation",
    "resolve_endpoint_url",
    "resolve_hf_token",
]

HF_ROUTER_URL = "https://router.huggingface.co"


def resolve_hf_token(value: SecretStr | None, *, saved: bool = True) -> str | None:
    """``api_key``, else ``HF_TOKEN``, else (with ``saved``) the token saved by
    ``huggingface-cli login``."""
    token = resolve_secret(value, "HF_TOKEN")
    if token is not None or not saved:
        return token
    try:
        from huggingface_hub import get_token
    except ImportError:  # pragma: no cover - huggingface_hub is optional
        return None
    return get_token()


class HuggingFaceLocation(RemoteModel):
    """Where a Hugging Face model is served: exactly one of ``model_id`` (serverless, through
    the Inference Providers router), ``endpoint_name`` (a dedicated Inference Endpoint, whose URL
    is looked up at load time) or ``base_url`` (any server, e.g. a local TGI; ``model_id`` may
    accompany it to name the model)."""

    model_id: str | None = Field(default=None, description="Hub model id, e.g. 'org/model'.")
    endpoint_name: str | None = Field(default=None, description="Inference Endpoint name.")
    endpoint_namespace: str | None = Field(
        default=None, description="Owner of the Inference Endpoint (user or organisation)."
    )
    api_key: SecretStr | None = SecretField(
        "Hugging Face token; defaults to HF_TOKEN, then the saved login token."
    )

    _endpoint_url: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check_location(self) -> HuggingFaceLocation:
        given = [
            name
            for name, value in (
                ("model_id", self.model_id),
                ("endpoint_name", self.endpoint_name),
                ("base_url", self.base_url),
            )
            if value
        ]
        if given == ["model_id", "base_url"]:
            return self
        if len(given) != 1:
            raise ValueError(
                "give exactly one of model_id, endpoint_name or base_url "
                f"(model_id may accompany base_url); got {given or 'none'}"
            )
        if self.endpoint_namespace and not self.endpoint_name:
            raise ValueError("endpoint_namespace only goes with endpoint_name")
        return self

    @property
    def model_name(self) -> str:
        return self.model_id or self.endpoint_name or self.base_url or ""

    def _prepare(self) -> None:
        if self.endpoint_name and self._endpoint_url is None:
            self._endpoint_url = resolve_endpoint_url(
                self.endpoint_name, self.endpoint_namespace, resolve_hf_token(self.api_key)
            )

    def _root_url(self) -> str:
        """The server root the backend appends its route to (no trailing slash)."""
        if self.base_url:
            return self.base_url.rstrip("/")
        if self.endpoint_name:
            if self._endpoint_url is None:
                self._prepare()
            assert self._endpoint_url is not None
            return self._endpoint_url.rstrip("/")
        return HF_ROUTER_URL

    def _auth_headers(self) -> dict[str, str]:
        # A custom base_url gets a token given explicitly (argument or HF_TOKEN), never the
        # saved login token: that one is for Hugging Face's own servers.
        token = resolve_hf_token(self.api_key, saved=not self.base_url)
        if token is None:
            if not self.base_url:
                raise ValueError(
                    f"{type(self).__name__}: no Hugging Face token: pass api_key=, set HF_TOKEN "
                    "or run `huggingface-cli login`"
                )
            return {}
        return {"Authorization": f"Bearer {token}"}


def resolve_endpoint_url(name: str, namespace: str | None, token: str | None) -> str:
    """The URL of a running Inference Endpoint (asks the Hub: network)."""
    try:
        from huggingface_hub import get_inference_endpoint
    except ImportError as exc:  # pragma: no cover - huggingface_hub is optional
        raise ImportError(
            "endpoint_name needs huggingface_hub: pip install huggingface_hub"
        ) from exc
    endpoint = get_inference_endpoint(name, namespace=namespace, token=token)
    url = endpoint.url
    if not url:
        raise ValueError(
            f"Inference Endpoint {name!r} has no URL (status {endpoint.status!r}); is it running?"
        )
    return str(url)
