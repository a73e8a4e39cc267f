"""Magpie's pre-query template: an instruction-tuned model, given its own chat template up to
the start of a user turn, writes a user message by itself.

Source of the idea: Xu et al., "Magpie: Alignment Data Synthesis from Scratch by Prompting
Aligned LLMs with Nothing" (2024). distilabel exposes it as ``MagpieChatTemplateMixin`` for
models that render a chat template into a prompt; pixtill keeps the same names so that models
written for distilabel (and its test doubles) import and behave the same.
"""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, field_validator, model_validator
from typing_extensions import Self

__all__ = [
    "MAGPIE_PRE_QUERY_TEMPLATES",
    "MagpieAvailablePreQueryTemplates",
    "MagpieChatTemplateMixin",
]

MagpieAvailablePreQueryTemplates = Literal["llama3", "qwen2"]

# The text each model family's chat template emits to open a user turn.
MAGPIE_PRE_QUERY_TEMPLATES: dict[str, str] = {
    "llama3": "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n",
    "qwen2": "<|im_start|>user\n",
}


class MagpieChatTemplateMixin(BaseModel):
    """Adds ``use_magpie_template`` and ``magpie_pre_query_template`` to a model.

    ``magpie_pre_query_template`` is a name from `MAGPIE_PRE_QUERY_TEMPLATES` (resolved to its
    text) or the template text itself.

    Raises:
        ValueError: ``use_magpie_template=True`` without a template.
    """

    use_magpie_template: bool = False
    magpie_pre_query_template: Union[MagpieAvailablePreQueryTemplates, str, None] = None

    @field_validator("magpie_pre_query_template")
    @classmethod
    def _resolve_template(cls, value: Any) -> Any:
        return MAGPIE_PRE_QUERY_TEMPLATES.get(value, value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _template_needed(self) -> Self:
        if self.use_magpie_template and self.magpie_pre_query_template is None:
            raise ValueError(
                f"{type(self).__name__}: `use_magpie_template=True` needs "
                "`magpie_pre_query_template` ('llama3', 'qwen2' or the template text)"
            )
        return self

    def apply_magpie_pre_query_template(self, prompt: str, input: list[dict[str, Any]]) -> str:
        """``prompt`` with the pre-query template appended when Magpie is on and the
        conversation does not already end with a user turn (then the model answers it)."""
        if not self.use_magpie_template or (input and input[-1].get("role") == "user"):
            return prompt
        return prompt + str(self.magpie_pre_query_template)
