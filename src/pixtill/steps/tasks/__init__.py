from pixtill.steps.tasks.base import METADATA_COLUMN, ImageTask, Task
from pixtill.steps.tasks.chat_generation import ChatGeneration
from pixtill.steps.tasks.image_editing import ImageEditing
from pixtill.steps.tasks.image_generation import ImageGeneration
from pixtill.steps.tasks.text_generation import TextGeneration
from pixtill.steps.tasks.text_generation_with_image import TextGenerationWithImage

__all__ = [
    "METADATA_COLUMN",
    "ChatGeneration",
    "ImageEditing",
    "ImageGeneration",
    "ImageTask",
    "Task",
    "TextGeneration",
    "TextGenerationWithImage",
]
