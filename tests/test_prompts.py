from __future__ import annotations

import pytest
from jinja2 import UndefinedError
from jinja2.exceptions import SecurityError

from pixtill.errors import RowError, StepConfigError
from pixtill.prompts import PromptTemplate


def test_a_lone_variable_renders_as_jinja_would() -> None:
    prompt = PromptTemplate("{{ instruction }}")
    assert prompt.variables == {"instruction"}
    full = prompt._template  # the compiled Jinja template the fast path stands in for
    for value in ("Describe it.", "", "{{ not rendered again }}", 3, ["a"], 2.5):
        assert prompt.render({"instruction": value}) == full.render(instruction=value)
    with pytest.raises(RowError, match="column 'instruction': expected text, got None"):
        prompt.render({"instruction": None})  # never the text "None"
    with pytest.raises(UndefinedError):
        prompt.render({})
    spaced = PromptTemplate("{{instruction}}\n")  # a trailing newline: not the lone variable
    assert spaced.render({"instruction": "x"}) == "x\n"


def test_templates_render_sandboxed_and_strict() -> None:
    prompt = PromptTemplate("Q: {{ q }} ({{ n + 1 }})")
    assert prompt.render({"q": "why?", "n": 1}) == "Q: why? (2)"
    with pytest.raises(UndefinedError):
        prompt.render({"q": "why?"})
    with pytest.raises(SecurityError):
        PromptTemplate("{{ q.__class__.__mro__ }}").render({"q": "x"})


def test_columns_must_match_the_template() -> None:
    prompt = PromptTemplate("{{ a }} {{ b }}")
    prompt.check_columns(["a", "b"], owner="step 's'")
    with pytest.raises(StepConfigError, match=r"uses \['b'\]"):
        prompt.check_columns(["a"], owner="step 's'")
    with pytest.raises(StepConfigError, match=r"declares \['c'\]"):
        prompt.check_columns(["a", "b", "c"], owner="step 's'")
    with pytest.raises(StepConfigError, match="invalid Jinja2 template"):
        PromptTemplate("{{ a ")
