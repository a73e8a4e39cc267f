"""Model mixins at distilabel's import path (``pixtill.models.mixins.magpie``)."""

from pixtill.models.mixins.magpie import MagpieChatTemplateMixin

__all__ = ["MagpieChatTemplateMixin"]
