"""What a rank's Ray task asks Ray for: the executor's own share plus every step's needs.

A rank runs the whole graph in one worker process (every step, with its replicas), so its task
needs the sum of what the steps' replicas need (`pixtill.steps.resources.StepResources`): a
rank whose captioning step holds a local model on one GPU in two replicas asks for 2 GPUs, and
Ray starts it only on a node that has them. Needs no Ray import (tests read the options).
"""

from __future__ import annotations

from typing import Any

from pixtill.pipeline.graph import Graph


def rank_options(graph: Graph, *, num_cpus: float, num_gpus: float) -> dict[str, Any]:
    """Ray options (``num_cpus``, ``num_gpus``, ``memory`` bytes, ``resources``) for one rank:
    ``num_cpus`` / ``num_gpus`` (the executor's base share per rank) plus, for every step,
    ``replicas x`` its per-replica `StepResources`. ``memory`` and ``resources`` appear only
    when a step asks for them."""
    cpus, gpus, memory = float(num_cpus), float(num_gpus), 0
    custom: dict[str, float] = {}
    for step in graph.steps.values():
        needs = step.resources
        replicas = step.replicas
        cpus += replicas * (needs.cpus or 0.0)
        gpus += replicas * (needs.gpus or 0.0)
        memory += replicas * (needs.memory or 0)
        for name, amount in (needs.resources or {}).items():
            custom[name] = custom.get(name, 0.0) + replicas * amount
    options: dict[str, Any] = {"num_cpus": cpus, "num_gpus": gpus}
    if memory:
        options["memory"] = memory
    if custom:
        options["resources"] = custom
    return options
