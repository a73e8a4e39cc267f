"""``image_to_str`` at distilabel's ``distilabel.utils.image`` path."""

from pixtill.models.image_generation.utils import image_from_str, image_to_str

__all__ = ["image_from_str", "image_to_str"]
