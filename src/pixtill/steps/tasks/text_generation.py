from __future__ import annotations

from typing import Any, Union

from pydantic import Field, PrivateAttr

from pixtill.errors import RowError
from pixtill.models.llms.base import ChatType
from pixtill.prompts import PromptTemplate, is_missing
from pixtill.steps.tasks.base import Task
from pixtill.steps.typing import StepColumns


class TextGeneration(Task):
    """Generate text from a Jinja2 prompt built from row columns.

    ``template`` (sandboxed Jinja2) uses exactly the ``columns`` declared; both are checked
    against each other at ``load()``.
    """

    system_prompt: str | None = Field(default=None, description="System prompt, if any.")
    use_system_prompt: bool = True
    template: str = Field(default="{{ instruction }}", description="Jinja2 prompt template.")
    columns: Union[str, list[str]] = Field(
        default="instruction", description="Column(s) the template reads."
    )

    _prompt: PromptTemplate | None = PrivateAttr(default=None)
    # Rows are independent, so all of them can wait for one provider batch (pixtill's batch
    # backends); distilabel leaves this False for its own task of the same name.
    _can_be_used_with_offline_batch_generation: bool = PrivateAttr(default=True)

    @property
    def column_names(self) -> list[str]:
        return [self.columns] if isinstance(self.columns, str) else list(self.columns)

    def load(self) -> None:
        self._compile()
        super().load()

    def _compile(self) -> PromptTemplate:
        prompt = PromptTemplate(self.template)
        prompt.check_columns(self.column_names, owner=f"step {self.name!r}")
        self._prompt = prompt
        return prompt

    @property
    def inputs(self) -> StepColumns:
        # An optional per-row ``system_prompt`` column wins over the field, as in distilabel.
        return {**dict.fromkeys(self.column_names, True), "system_prompt": False}

    @property
    def outputs(self) -> StepColumns:
        return ["generation", "model_name"]

    def render_prompt(self, input: dict[str, Any]) -> str:
        prompt = self._prompt
        if prompt is None:
            prompt = self._compile()
        values = {column: input[column] for column in self.column_names}
        instruction = values.get("instruction")
        if instruction is not None and not isinstance(instruction, str):
            _refuse_instruction(instruction)  # as distilabel: the instruction is text
        return prompt.render(values)

    def _messages(self, content: Any, row_system_prompt: Any = None) -> ChatType:
        """The chat: a system message (``row_system_prompt``, else the ``system_prompt``
        field; none when both are empty, as in distilabel), then the user turn."""
        if row_system_prompt is not None and not isinstance(row_system_prompt, str):
            raise RowError(
                f"expected a string, got {type(row_system_prompt).__name__}", column="system_prompt"
            )
        system = row_system_prompt or self.system_prompt
        messages: ChatType = []
        if system and self.use_system_prompt:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": content})
        return messages

    def format_input(self, input: dict[str, Any]) -> ChatType:
        return self._messages(self.render_prompt(input), input.get("system_prompt"))

    def format_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return {"generation": output}


def _refuse_instruction(value: Any) -> None:
    """A `RowError` for a non-text ``instruction`` (missing values are left to the template,
    which may test them): a list of chat messages belongs in `ChatGeneration`'s ``messages``."""
    if is_missing(value):
        return
    if (
        isinstance(value, list)
        and value
        and all(isinstance(m, dict) and "role" in m for m in value)
    ):
        raise RowError(
            "expected text, got a list of chat messages (use ChatGeneration with a "
            "'messages' column for a conversation)",
            column="instruction",
        )
    raise RowError(f"expected text, got {type(value).__name__}", column="instruction")
