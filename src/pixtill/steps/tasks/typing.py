"""Chat types at the path older distilabel code imports them from
(``pixtill.steps.tasks.typing``); see `pixtill.typing`."""

from pixtill.typing import ChatItem, ChatType, FormattedInput, StandardInput

__all__ = ["ChatItem", "ChatType", "FormattedInput", "StandardInput"]
