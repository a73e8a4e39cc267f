from pixtill.models.llms.base import (
    LLM,
    AsyncLLM,
    ChatType,
    FormattedInput,
    GenerateOutput,
    TokenStatistics,
)

__all__ = ["LLM", "AsyncLLM", "ChatType", "FormattedInput", "GenerateOutput", "TokenStatistics"]
