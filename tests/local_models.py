"""Fixtures for the local-model tests: the tiny random models, built once per test session.

Import the fixtures into a test module (``from local_models import offline, tiny_models``).
The models are built under the session's base temp folder; `ensure_tiny_models` reuses a
finished build, so every module that imports the fixture shares one build.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("diffusers")

from pixtill.tiny_models import ensure_tiny_models  # noqa: E402


@dataclass(frozen=True)
class TinyModels:
    cache: Path  # use as PIXTILL_CACHE_DIR: ensure_tiny_models() finds the builds there
    vlm: Path
    text_to_image: Path


def _go_offline(mp: pytest.MonkeyPatch) -> None:
    """Offline for the Hub (the env var and the constant it was read into at import), and no
    socket may connect anywhere but loopback: a download attempt fails loudly."""
    import huggingface_hub.constants

    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    real_connect = socket.socket.connect

    def guarded_connect(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else None
        if host is not None:
            try:
                loopback = ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = host == "localhost"
            if not loopback:
                raise OSError(f"network access in an offline test: {address!r}")
        return real_connect(self, address)

    mp.setattr(socket.socket, "connect", guarded_connect)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinyModels]:
    cache = tmp_path_factory.getbasetemp() / "pixtill-cache"
    with pytest.MonkeyPatch.context() as mp:
        _go_offline(mp)
        vlm, t2i = ensure_tiny_models(cache / "tiny-models")
    # Tiny matrices gain nothing from intra-op threads, and on a small shared machine (CI, other
    # test runs) threads that wait on each other make a forward pass 5-20 times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield TinyModels(cache=cache, vlm=vlm, text_to_image=t2i)
    torch.set_num_threads(threads)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    _go_offline(monkeypatch)


__all__ = ["TinyModels", "offline", "tiny_models", "torch"]
