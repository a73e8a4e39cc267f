"""`VisionJudge` through `OpenAILLM` against the fake OpenAI-compatible server on 127.0.0.1:
the rubric's schema goes out as ``response_format`` and the verdict comes back validated."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from http_servers import serve
from models.fake_providers import FAST, FakeProviders, loaded
from pixtill.models.llms import OpenAILLM
from pixtill.steps.quality import Criterion, Rubric, VisionJudge, verdict_schema
from pixtill.steps.tasks.base import METADATA_COLUMN
from quality_doubles import png

KEY = "sk-test-SECRET-judge-0123456789"
# The fake server answers a schema with 7 for every integer, so the scale must include 7.
RUBRIC = Rubric(
    name="poster",
    instructions="Rate the poster.",
    template="Prompt: {{ prompt }}",
    columns=["prompt"],
    criteria=[
        Criterion(name="adherence", description="matches the prompt"),
        Criterion(name="legibility", description="text can be read"),
    ],
    scale=(0, 10),
)


@pytest.fixture
def fake() -> FakeProviders:
    return FakeProviders(api_key=KEY)


@pytest.fixture
def url(fake: FakeProviders) -> Iterator[str]:
    with serve(fake.app()) as base:
        yield base


def judge(url: str, rubric: Rubric = RUBRIC) -> VisionJudge:
    llm = OpenAILLM(model="judge-vlm", base_url=f"{url}/v1", api_key=KEY, **FAST)
    return VisionJudge(name="judge", llm=llm, rubric=rubric)


def test_the_schema_is_sent_and_the_verdict_validated(fake: FakeProviders, url: str) -> None:
    with loaded(judge(url)) as step:
        (row,) = step.process_batch([{"image": png("red"), "prompt": "a red poster"}])
    assert row["judge_scores"] == {"adherence": 7, "legibility": 7}
    assert row["judge_score"] == 7.0 and row["judge_rationale"] == "text"
    (received,) = fake.received_on("chat")
    response_format = received.payload["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["schema"] == verdict_schema(RUBRIC)
    content = received.payload["messages"][-1]["content"]
    assert content[0]["type"] == "image_url"
    assert "Prompt: a red poster" in content[-1]["text"]


def test_a_verdict_off_the_scale_fails_the_row(url: str) -> None:
    with loaded(judge(url, rubric="image_quality")) as step:  # type: ignore[arg-type]
        (row,) = step.process_batch([{"image": png("red")}])
    assert row["judge_score"] is None
    assert "7 is greater than the maximum of 5" in row[METADATA_COLUMN]["error_judge"]
