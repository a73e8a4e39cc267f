"""Mixins at distilabel's import paths (``pixtill.mixins.runtime_parameters``)."""
