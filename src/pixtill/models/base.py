"""What every model has, text or image: configuration, a lifecycle, and a sync bridge.

`LLM` and `ImageGenerationModel` both derive from `BaseModel` here, but neither derives from
the other: a task that asks for a text model cannot be handed an image model by accident.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel as PydanticModel
from pydantic import ConfigDict, Field, PrivateAttr, SerializerFunctionWrapHandler, model_serializer

from pixtill.errors import ModelUnavailableError
from pixtill.mixins.runtime_parameters import RuntimeParametersModelMixin
from pixtill.mixins.serialization import Serializable
from pixtill.utils.loop_thread import LoopThread
from pixtill.utils.secrets import mask_config

InT = TypeVar("InT")
OutT = TypeVar("OutT")


class BaseModel(RuntimeParametersModelMixin, Serializable, PydanticModel, ABC):
    """Common configuration and lifecycle of text and image models.

    distilabel's ``runtime_parameters_names`` / ``set_runtime_parameters`` and ``dump()``
    come from `pixtill.mixins`.
    """

    dump_runtime_parameters_info: ClassVar[bool] = False

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=(), extra="forbid")

    generation_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments passed to every generate call (temperature, size...).",
    )

    _loaded: bool = PrivateAttr(default=False)
    # distilabel's models log through ``self._logger`` (set in `load`); subclasses written
    # for distilabel expect it.
    _logger: logging.Logger = PrivateAttr(
        default_factory=lambda: logging.getLogger("pixtill.models")
    )

    @model_serializer(mode="wrap")
    def _mask_credentials(self, handler: SerializerFunctionWrapHandler) -> Any:
        # Credentials in plain fields (an Authorization header in generation_kwargs, a
        # password in base_url) are dumped as "***", like api_key is never dumped.
        return mask_config(handler(self))

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, mask_config(value, name or "")

    def load(self) -> None:
        """Prepare the model (open clients, load weights). Called once before use."""
        self._loaded = True
        self._logger = logging.getLogger(f"pixtill.models.{type(self).__name__}")

    def unload(self) -> None:
        """Free what `load` acquired."""
        self._loaded = False

    @property
    @abstractmethod
    def model_name(self) -> str:
        """The name written to the `model_name` output column."""

    def get_generation_kwargs(self) -> dict[str, Any]:
        return dict(self.generation_kwargs)

    def describe_error(self, exc: BaseException) -> str:
        """How a failed call is reported in a row's metadata (backends remove secrets)."""
        return f"{type(exc).__name__}: {exc}"

    def request_stats(self) -> dict[str, float | int] | None:
        """Live request counters (in flight, done, retried, failed...) for progress bars;
        None for models that send no requests."""
        return None


class AsyncBridge(PydanticModel):
    """Gives an async model a synchronous `generate` on a long-lived background loop.

    Per-input failures are caught here and turned into failed outputs by ``on_error`` so that
    one failing input never takes its neighbours down with it.
    """

    _loop_thread: LoopThread | None = PrivateAttr(default=None)

    def submit(self, coro: Awaitable[OutT]) -> concurrent.futures.Future[OutT]:
        """Start ``coro`` on the model's background loop and return at once, so that a caller
        can go on preparing the next input while this one is sent."""
        if self._loop_thread is None:
            self._loop_thread = LoopThread(name=f"pixtill-{type(self).__name__}")

        async def _await() -> OutT:
            return await coro

        return self._loop_thread.submit(_await())

    def _run_sync(self, coro: Awaitable[OutT]) -> OutT:
        return self.submit(coro).result()

    def _stop_loop(self, closing: Callable[[], Awaitable[None]] | None = None) -> None:
        if self._loop_thread is None:
            return
        if closing is not None and self._loop_thread.running:
            self._loop_thread.run(_as_coroutine(closing))
        self._loop_thread.stop()
        self._loop_thread = None

    @staticmethod
    async def _gather_per_input(
        inputs: Sequence[InT],
        call: Callable[[InT], Awaitable[OutT]],
        on_error: Callable[[BaseException], OutT],
    ) -> list[OutT]:
        results = await asyncio.gather(*(call(item) for item in inputs), return_exceptions=True)
        out: list[OutT] = []
        for result in results:
            if isinstance(result, BaseException):
                # A dead server is the run's problem, not the input's: it stops the caller.
                if not isinstance(result, Exception) or isinstance(result, ModelUnavailableError):
                    raise result
                out.append(on_error(result))
            else:
                out.append(result)
        return out


async def _as_coroutine(func: Callable[[], Awaitable[None]]) -> None:
    await func()
