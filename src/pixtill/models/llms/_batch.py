"""What the providers' batch APIs share: split requests into batch files, remember submitted
batches on disk, poll, and map results back to inputs.

A batch backend is a synchronous `LLM`: a task hands it a whole batch of rows (``generate``),
which becomes one provider batch (several when the provider's limits on requests or bytes per
batch are reached). The moment a batch is created its id is written to a small state file,
named by the hash of every request line, under ``state_dir``. When the process dies while the
provider works (a batch takes minutes to hours), the next run rebuilds the same requests, finds
the state file and collects the results of the batches already submitted instead of paying for
them twice; once a pipeline has stored the results in its cache, the file is deleted
(``_batch_state.py``). Provider-specific wire formats live in the subclasses
(``openai_batch.py``, ``anthropic_batch.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, PrivateAttr

from pixtill.errors import ModelUnavailableError
from pixtill.models.base import AsyncBridge
from pixtill.models.http import ErrorKind
from pixtill.models.llms._batch_errors import batch_error
from pixtill.models.llms._batch_state import delete_states, read_state, write_state
from pixtill.models.llms._wire import Choice, _image_of
from pixtill.models.llms.base import LLM, FormattedInput, GenerateOutput
from pixtill.models.remote import InvalidResponseError, RemoteModel
from pixtill.models.request import ModelRequest, canonical_edge
from pixtill.models.request_options import split_request_options
from pixtill.models.results import ModelResult, ResultError
from pixtill.models.transport import RequestEngine, RequestError
from pixtill.paths import cache_dir
from pixtill.utils import fast_json

__all__ = ["BatchLLM", "BatchStatus", "RequestLine"]

_log = logging.getLogger("pixtill.batch")
# Results files can be large (the provider's answers for up to 100,000 requests).
_RESULTS_CAP = 4 * 2**30


@dataclass(frozen=True)
class RequestLine:
    """One request of a batch: its id, the input (and generation) it answers, its JSON."""

    custom_id: str
    input_index: int
    generation: int  # which of the input's generations (0 when one request gives all n)
    body: dict[str, Any]


@dataclass
class BatchStatus:
    """A provider batch as last polled."""

    id: str
    done: bool
    failure: str | None = None  # why the batch as a whole ended without results
    extra: dict[str, Any] = field(default_factory=dict)  # provider fields the results need
    failure_kind: str = ErrorKind.INVALID_RESPONSE.value  # ``failure``'s kind (`ResultError`)


def _encoded(line: dict[str, Any]) -> bytes:
    return fast_json.dumps(line) + b"\n"


class BatchLLM(RemoteModel, AsyncBridge, LLM):
    """Base of the batch backends (not for direct use); see the module docstring."""

    state_dir: Path | None = Field(
        default=None,
        description="Where submitted batch ids are kept; defaults to <pixtill cache>/batches.",
    )
    poll_interval: float = Field(
        default=30.0, ge=0, description="Seconds between two status checks of a batch."
    )
    max_wait: float | None = Field(
        default=None,
        gt=0,
        description="Give up waiting after this many seconds (the batches keep running and a "
        "later run collects them); None waits as long as the provider's window.",
    )
    reuse_batches: bool = Field(
        default=True,
        description="Collect the results of batches an earlier run submitted for the same "
        "requests instead of submitting again.",
    )

    # State files of batches whose results were collected: deleted once those results are
    # cached (`forget_collected_batches`), so a crash before that collects, not resubmits.
    _collected: list[Path] = PrivateAttr(default_factory=list)

    # ----------------------------------------------------------------- provider specifics

    provider: ClassVar[str] = "batch"  # names the state files

    @property
    @abstractmethod
    def max_requests_per_batch(self) -> int:
        """The provider's limit on requests in one batch."""

    @property
    @abstractmethod
    def max_bytes_per_batch(self) -> int:
        """The provider's limit on the size of one batch (bytes of its request lines)."""

    @abstractmethod
    async def _request_lines(
        self, index: int, input: FormattedInput, num_generations: int, params: dict[str, Any]
    ) -> list[RequestLine]:
        """The request line(s) of one input (images encoded here). Raising fails the input."""

    @abstractmethod
    def _wire_line(self, line: RequestLine) -> dict[str, Any]:
        """The JSON object of ``line`` as the provider's batch format wants it."""

    @abstractmethod
    async def _submit(self, engine: RequestEngine, lines: list[bytes]) -> str:
        """Create a batch of ``lines`` (encoded JSON); return its id."""

    @abstractmethod
    async def _poll(self, engine: RequestEngine, batch_id: str) -> BatchStatus:
        """The batch's status."""

    @abstractmethod
    async def _results(self, engine: RequestEngine, status: BatchStatus) -> dict[str, list[Choice]]:
        """The finished batch's answers by custom id: the request's generation(s), or one
        failed choice saying why the request failed."""

    # ----------------------------------------------------------------- lifecycle

    def unload(self) -> None:
        self._stop_loop(self.aclose)
        super().unload()

    def _extra_headers(self) -> dict[str, str]:
        # The request lines cannot carry headers: generation_kwargs' extra_headers (the SDK's
        # name) go with every call of the batch API instead (OpenAI-Project, beta flags...).
        params = dict(self.generation_kwargs)
        return split_request_options(params, type(self).__name__).headers

    def _state_folder(self) -> Path:
        return self.state_dir if self.state_dir is not None else cache_dir() / "batches"

    # ----------------------------------------------------------------- generation

    @canonical_edge
    def generate(
        self, inputs: list[FormattedInput], num_generations: int = 1, **kwargs: Any
    ) -> list[GenerateOutput]:
        """One `GenerateOutput` per input, once the provider finished the batch(es).

        An input whose request cannot be built (an unreadable image...) or that the provider
        answers with an error fails alone. Raises `TimeoutError` after ``max_wait`` seconds
        (the batches go on; run again to collect them) and `RequestError` when the provider
        cannot be reached.
        """
        requests = ModelRequest.of_calls(inputs, num_generations, kwargs, self.generation_kwargs)
        return [result.to_generate_output() for result in self._generate_results(requests)]

    def forget_collected_batches(self) -> int:
        """Delete the state files of the batches whose results were collected; returns how
        many. A pipeline calls it once those results are stored in its cache: until then a
        killed run collects the finished batches again instead of paying for them twice, and
        afterwards the cache answers. Without a pipeline the files stay, so that running the
        same requests again collects them (call this to drop them)."""
        collected, self._collected = self._collected, []
        return delete_states(collected)

    @canonical_edge
    def offline_batch_generate(
        self, inputs: list[FormattedInput], num_generations: int = 1, **kwargs: Any
    ) -> list[GenerateOutput]:
        """distilabel's name for what `generate` does here (``use_offline_batch_generation``
        only makes the task give this model every row at once)."""
        return self.generate(inputs, num_generations, **kwargs)

    def _generate_results(
        self, requests: Sequence[ModelRequest[FormattedInput]]
    ) -> list[ModelResult]:
        if not requests:
            return []
        return self._run_sync(self._aresults(requests))

    async def _aresults(
        self, requests: Sequence[ModelRequest[FormattedInput]]
    ) -> list[ModelResult]:
        engine = await self._aengine()
        n = requests[0].n
        params = requests[0].call_kwargs()  # the lines carry the structured output too
        options = split_request_options(params, type(self).__name__)
        if options.query:
            raise ValueError(
                f"{type(self).__name__}: extra_query cannot go with the requests of a batch"
            )
        params.update(options.body)  # the body fields of every request line
        outputs: dict[int, ModelResult] = {}
        lines: list[RequestLine] = []
        for index, request in enumerate(requests):
            messages = request.input
            try:
                await asyncio.to_thread(check_images, messages)
                lines += await self._request_lines(index, messages, n, params)
            except Exception as exc:
                outputs[index] = ModelResult.failed(
                    replace(ResultError.of(exc), message=self.describe_error(exc)), n
                )
        if lines:
            encoded = [_encoded(self._wire_line(line)) for line in lines]
            choices = await self._run_batches(engine, lines, encoded)
            for index in sorted({line.input_index for line in lines}):
                mine = sorted(
                    (line for line in lines if line.input_index == index),
                    key=lambda line: line.generation,
                )
                got: list[Choice] = []
                for line in mine:
                    got += choices.get(line.custom_id) or [
                        Choice.failed(f"no result for request {line.custom_id}")
                    ]
                got = got[:n] + [Choice.failed("fewer generations than asked")] * max(
                    0, n - len(got)
                )
                outputs[index] = ModelResult.of(got)
        return [outputs[i] for i in range(len(requests))]

    def _chunks(self, encoded: list[bytes]) -> list[range]:
        """Consecutive line ranges that each fit the provider's limits."""
        chunks: list[range] = []
        start = size = 0
        for k, line in enumerate(encoded):
            if len(line) > self.max_bytes_per_batch:
                raise ValueError(
                    f"request {k} alone is {len(line)} bytes, over the provider's "
                    f"{self.max_bytes_per_batch} bytes per batch (shrink its images)"
                )
            full = k - start >= self.max_requests_per_batch
            if k > start and (full or size + len(line) > self.max_bytes_per_batch):
                chunks.append(range(start, k))
                start, size = k, 0
            size += len(line)
        chunks.append(range(start, len(encoded)))
        return chunks

    async def _run_batches(
        self, engine: RequestEngine, lines: list[RequestLine], encoded: list[bytes]
    ) -> dict[str, list[Choice]]:
        digest = hashlib.sha256(f"{self.provider}\n{self.model_name}\n".encode())
        for line in encoded:
            digest.update(line)
        key = digest.hexdigest()
        state_path = self._state_folder() / f"{self.provider}-{key[:40]}.json"
        state = read_state(state_path) if self.reuse_batches else None
        chunks = self._chunks(encoded)
        ids: list[str | None] = list(state["batches"]) if state else []
        if len(ids) != len(chunks):
            ids = [None] * len(chunks)
        elif any(ids):
            _log.info("%s: collecting %d batch(es) submitted earlier", self.provider, len(ids))
        for k, chunk in enumerate(chunks):
            if ids[k] is None:
                ids[k] = await self._submit(engine, [encoded[i] for i in chunk])
                # Before anything else can fail.
                write_state(
                    state_path, provider=self.provider, model=self.model_name, key=key, ids=ids
                )
        by_id: dict[str, list[Choice]] = {}
        ended_badly = False
        deadline = None if self.max_wait is None else engine.clock.monotonic() + self.max_wait
        for k, batch_id in enumerate(ids):
            assert batch_id is not None
            status = await self._wait(engine, batch_id, deadline)
            results: dict[str, list[Choice]] = {}
            ended_badly = ended_badly or status.failure is not None
            if status.failure is None or status.extra:
                results = await self._results(engine, status)
            for i in chunks[k]:
                cid = lines[i].custom_id
                found = results.get(cid)
                if not found:
                    why = status.failure or "has no result for it"
                    found = [
                        Choice.failed(
                            batch_error(
                                f"batch {batch_id} {why} (request {cid})", status.failure_kind
                            )
                        )
                    ]
                by_id[cid] = found
        if ended_badly and state_path.exists():
            # A batch failed, expired or was cancelled: a later run submits again rather than
            # collecting the same missing results. (Requests the provider answered with an
            # error are collected again as they are; `reuse_batches=False` resubmits.)
            state_path.unlink()
        elif state_path not in self._collected:
            self._collected.append(state_path)  # deleted once the results are kept
        return by_id

    async def _wait(
        self, engine: RequestEngine, batch_id: str, deadline: float | None
    ) -> BatchStatus:
        while True:
            status = await self._poll(engine, batch_id)
            if status.done:
                return status
            if deadline is not None and engine.clock.monotonic() >= deadline:
                raise TimeoutError(
                    f"{type(self).__name__}: batch {batch_id} is not finished after "
                    f"{self.max_wait} s; it keeps running: run again to collect it"
                )
            every = self.offline_batch_generation_block_until_done
            await engine.clock.sleep(self.poll_interval if every is None else every)

    # ----------------------------------------------------------------- helpers

    async def _post_raw(
        self, engine: RequestEngine, url: str, body: bytes, content_type: str
    ) -> bytes:
        """`RequestEngine.post_body`, its failure scrubbed of secrets (a dead server's naming
        this model), like the JSON requests of `RemoteModel`."""
        error: Exception
        try:
            return (await engine.post_body(url, body, content_type))[0]
        except RequestError as exc:
            error = self._scrub(exc)
        except ModelUnavailableError as exc:
            error = self._unavailable(exc)
        raise error  # outside the handler: the unscrubbed error is not its __context__

    async def _get_json(self, engine: RequestEngine, url: str) -> Any:
        body = await self._get(engine, url)
        try:
            return fast_json.loads(body)
        except ValueError:
            raise InvalidResponseError(
                type(self).__name__, f"malformed JSON body ({len(body)} bytes)"
            ) from None

    async def _get(self, engine: RequestEngine, url: str) -> bytes:
        return await self._get_bytes(engine, url, timeout=self.timeout, max_bytes=_RESULTS_CAP)


def check_images(messages: FormattedInput) -> None:
    """Decode every local image of a chat (URLs are left to the provider): a batch waits for
    hours, so a corrupt image must fail its row now, not the provider's request later."""
    for message in messages:
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for part in content:
            ref = _image_of(part) if isinstance(part, dict) else None
            if ref is not None and ref.url is None:
                ref.validate(decode=True)


def jsonl_records(data: bytes) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file (blank lines skipped; a bad line raises ValueError)."""
    records = []
    for number, raw in enumerate(data.splitlines(), 1):
        if not raw.strip():
            continue
        record = fast_json.loads(raw)
        if not isinstance(record, dict):
            raise ValueError(f"line {number} of the results is not a JSON object")
        records.append(record)
    return records
