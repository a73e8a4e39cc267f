"""pixtill: build multimodal datasets with vision-language and image-generation models."""

__version__ = "0.1.0"
