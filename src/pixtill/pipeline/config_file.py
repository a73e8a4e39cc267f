"""Pipelines as configuration files (YAML or JSON), written without secrets and read without code.

The format::

    pixtill_version: "0.1.0"
    pipeline:
      name: vision
      description: null
      steps:
        - name: caption
          type: pixtill.steps.tasks.text_generation_with_image.TextGenerationWithImage
          params:
            template: "{{ instruction }}"
            llm:
              type: pixtill.models.llms.openai.OpenAILLM
              params: {model: ..., base_url: ...}
      connections:
        - {from: load, to: [caption]}

Writing: every pydantic field of a step is written as ``model_dump(mode="json")`` would write it,
except that a field holding a pydantic model (an ``llm``...) or a dataclass (a ``ResizePolicy``)
writes it as its own ``{type, params}``, recursively, so that it can be rebuilt. Fields declared
with ``exclude=True`` (API keys: ``SecretStr`` fields) are never written, private attributes are
never written, and a ``SecretStr`` anywhere else refuses the whole dump. A loader that holds its
rows inline (``LoadDataFromDicts(data=...)``) writes them: fine for small data, but a large or
binary dataset belongs in a file a loader reads (images folder, Hub dataset).

Reading: only ``yaml.safe_load`` / ``json.loads`` within limits (`pixtill.pipeline.safe_yaml`:
size, nesting depth, values once aliases are expanded; a key given twice in one mapping is
refused); nothing is evaluated. Unknown keys are refused at every level (at the top, a key
starting with ``x-`` may hold YAML anchors the pipeline refers to), and ``pipeline.name``
must be safe as a folder name (`pixtill.paths.check_name`). A ``type`` is imported
only when its dotted path starts with ``pixtill.`` (and the class really lives in pixtill) or is
listed, exactly, in ``allow``; the check happens before anything is imported. A resolved class
must be a pydantic model (or, for nested values, a dataclass). ``{type, params}`` objects are
only looked for in fields whose annotation can hold a model, so user data that happens to look
like one (a row ``{"type": ..., "params": ...}``) is read back as data.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from pixtill.errors import StepConfigError
from pixtill.paths import UnsafeNameError, check_name
from pixtill.pipeline.config_types import (
    PipelineConfigError,
    UntrustedTypeError,
    decode_params,
    instantiate,
    resolve_class,
)
from pixtill.pipeline.config_write import dump_pipeline, pipeline_to_dict
from pixtill.pipeline.graph import Graph
from pixtill.pipeline.safe_yaml import (
    ConfigLimitError,
    DuplicateKeyError,
    load_json,
    load_yaml,
    read_text,
)
from pixtill.steps.base import _Step
from pixtill.utils.secrets import masked_credentials

_log = logging.getLogger("pixtill.pipeline.config")

__all__ = [
    "PipelineConfigError",
    "UntrustedTypeError",
    "dump_pipeline",
    "graph_from_dict",
    "load_graph",
    "pipeline_to_dict",
    "resolve_class",
]


def load_graph(path: str | Path, *, allow: Iterable[str] = ()) -> Graph:
    """Read a pipeline written by `dump_pipeline` (or by hand); see the module docstring."""
    source = Path(path)
    try:
        text = read_text(source)
    except ConfigLimitError as exc:
        raise PipelineConfigError(f"refusing {str(source)!r}: {exc}") from exc
    except FileNotFoundError as exc:
        raise PipelineConfigError(f"configuration file {str(source)!r} not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineConfigError(f"cannot read {str(source)!r}: {exc}") from exc
    try:
        data = load_json(text) if source.suffix.lower() == ".json" else load_yaml(text)
    except (ConfigLimitError, DuplicateKeyError) as exc:
        raise PipelineConfigError(f"refusing {str(source)!r}: {exc}") from exc
    except (ValueError, yaml.YAMLError) as exc:
        # ValueError: JSON, or a constructor's refusal (an integer of more than 4,300 digits)
        detail = " ".join(str(exc).split())
        raise PipelineConfigError(f"{str(source)!r} is not valid: {detail}") from exc
    return graph_from_dict(data, allow=allow, source=str(source))


def graph_from_dict(
    data: Any, *, allow: Iterable[str] = (), source: str = "configuration"
) -> Graph:
    """Build a `Graph` from `pipeline_to_dict` output (only trusted classes are imported)."""
    allowed = frozenset(allow)
    if not isinstance(data, Mapping) or not isinstance(data.get("pipeline"), Mapping):
        raise PipelineConfigError(f"{source}: expected a mapping with a 'pipeline' key")
    version = data.get("pixtill_version")
    if version is not None and not isinstance(version, str):
        raise PipelineConfigError(f"{source}: 'pixtill_version' must be a string")
    # ``x-...`` keys (as in Compose files) may hold anchors for the pipeline to refer to.
    extensions = {k for k in data if isinstance(k, str) and k.startswith("x-")}
    _check_keys(data, {"pixtill_version", "pipeline", *extensions}, source)
    spec: Mapping[str, Any] = data["pipeline"]
    _check_keys(spec, {"name", "description", "cache_dir", "steps", "connections"}, source)
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise PipelineConfigError(f"{source}: 'pipeline.name' must be a non-empty string")
    try:
        check_name(name)
    except UnsafeNameError as exc:
        raise PipelineConfigError(f"{source}: 'pipeline.name': {exc}") from exc
    description = spec.get("description")
    if description is not None and not isinstance(description, str):
        raise PipelineConfigError(f"{source}: 'pipeline.description' must be a string")
    cache = spec.get("cache_dir")
    if cache is not None and not isinstance(cache, str):
        raise PipelineConfigError(f"{source}: 'pipeline.cache_dir' must be a string")
    steps = spec.get("steps") or []
    connections = spec.get("connections") or []
    if not isinstance(steps, list) or not isinstance(connections, list):
        raise PipelineConfigError(f"{source}: 'steps' and 'connections' must be lists")

    with Graph(name=name, description=description, cache_dir=cache) as pipeline:
        for index, step_spec in enumerate(steps):
            _build_step(step_spec, index, allowed, source)
    for connection in connections:
        for upstream, downstream in _connection_pairs(connection, source):
            for step_name in (upstream, downstream):
                if step_name not in pipeline.steps:
                    raise PipelineConfigError(
                        f"{source}: connection names an unknown step {step_name!r}; "
                        f"steps: {sorted(pipeline.steps)}"
                    )
            try:
                pipeline.steps[upstream].connect(pipeline.steps[downstream])
            except StepConfigError as exc:
                raise PipelineConfigError(f"{source}: {exc}") from exc
    return pipeline


def _build_step(spec: Any, index: int, allowed: frozenset[str], source: str) -> _Step:
    if not isinstance(spec, Mapping):
        raise PipelineConfigError(f"{source}: steps[{index}] must be a mapping")
    _check_keys(spec, {"name", "type", "params"}, f"{source}: steps[{index}]")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise PipelineConfigError(f"{source}: steps[{index}] needs a 'name' string")
    where = f"step {name!r}"
    cls = resolve_class(spec.get("type"), allowed, where=where)
    if not issubclass(cls, _Step):
        raise PipelineConfigError(
            f"{where}: {spec['type']!r} is not a pixtill step (a Step or GeneratorStep subclass)"
        )
    params = decode_params(cls, spec.get("params") or {}, allowed, where)
    if params.setdefault("name", name) != name:
        raise PipelineConfigError(
            f"{where}: params give another name, {params['name']!r}; keep the step's 'name' only"
        )
    step: _Step = instantiate(cls, params, where)
    _warn_masked_credentials(step)
    return step


def _warn_masked_credentials(step: _Step) -> None:
    """Say, when the file is read, which credentials the saved file holds as ``***`` and how to
    give them again (the model refuses to load with them; a request would get a 401)."""
    for field, value in step:
        if not isinstance(value, BaseModel) or not hasattr(value, "generation_kwargs"):
            continue
        prefix = f"{step.name}.{field}"
        places = masked_credentials(value.generation_kwargs, "generation_kwargs")
        places += masked_credentials(getattr(value, "base_url", None) or "", "base_url")
        if places:
            _log.warning(
                "step %r: the configuration holds '***' in place of %s of its %s: credentials "
                "are never saved, so give them again before running (`pixtill run --param "
                "%s.<field>=...`, or Pipeline.run(parameters=...)); API keys come from api_key= "
                "or the provider's environment variable (OPENAI_API_KEY, ANTHROPIC_API_KEY, "
                "HF_TOKEN)",
                step.name,
                " and ".join(places),
                type(value).__name__,
                prefix,
            )


def _connection_pairs(connection: Any, source: str) -> list[tuple[str, str]]:
    if not isinstance(connection, Mapping) or set(connection) != {"from", "to"}:
        raise PipelineConfigError(
            f"{source}: a connection must be {{from: step, to: [steps]}}, got {connection!r}"
        )
    upstream, targets = connection["from"], connection["to"]
    targets = [targets] if isinstance(targets, str) else targets
    if not isinstance(upstream, str) or not isinstance(targets, list):
        raise PipelineConfigError(f"{source}: bad connection {connection!r}")
    pairs = []
    for target in targets:
        if not isinstance(target, str):
            raise PipelineConfigError(f"{source}: bad connection target {target!r}")
        pairs.append((upstream, target))
    return pairs


def _check_keys(spec: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(str(k) for k in spec if k not in known)
    if unknown:
        raise PipelineConfigError(f"{where}: unknown keys {unknown}; expected {sorted(known)}")
