"""The text models at distilabel's older top-level path (``distilabel.llms``); the same
classes as `pixtill.models.llms`."""

from pixtill.models.llms import *  # noqa: F403
from pixtill.models.llms import __all__ as __all__
