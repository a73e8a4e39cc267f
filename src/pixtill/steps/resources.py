"""What one replica of a step needs from a cluster: CPUs, GPUs, memory, custom resources.

The same shape as distilabel's ``StepResources``. The local executor does not use it (one
process, its own devices); the Ray executor adds each step's needs, times its replicas, to what
a rank's Ray task asks for, so that Ray places a rank with a local model on a node with the GPUs
the model needs (`pixtill.pipeline.executors.ray_resources`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class StepResources(BaseModel):
    """Per replica: ``cpus`` and ``gpus`` (fractions allowed, as Ray accepts), ``memory`` in
    bytes, ``resources`` custom Ray resources (``{"TPU": 1}``). ``replicas``: copies of the
    step; more than 1 sets the step's own ``replicas`` (distilabel keeps it here)."""

    model_config = ConfigDict(extra="forbid")

    replicas: int = Field(default=1, ge=1)
    cpus: float | None = Field(default=None, ge=0)
    gpus: float | None = Field(default=None, ge=0)
    memory: int | None = Field(default=None, ge=0, description="Bytes per replica.")
    resources: dict[str, float] | None = Field(default=None)


__all__ = ["StepResources"]
