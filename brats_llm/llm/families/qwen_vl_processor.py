"""Qwen2.5-VL's processor for images only: no video processor, so no torchvision.

transformers' ``Qwen2_5_VLProcessor`` takes a video processor, and the only Qwen2-VL video processor
(``Qwen2VLVideoProcessor``) needs torchvision, which the CPU lock cannot install (PyPI's wheel is built for
CUDA torch). ``ProcessorMixin`` reads a processor's parts from its ``__init__`` signature
(``get_attributes``), so this subclass, whose ``__init__`` takes no video processor, is an image + text
processor with everything else inherited unchanged: ``<|image_pad|>`` expansion (``replace_image_token``:
``image_grid_thw.prod() // merge_size ** 2`` pads per image, spliced in by ``get_text_with_replacements``),
``mm_token_type_ids``, ``apply_chat_template``, ``batch_decode``, ``save_pretrained`` / ``from_pretrained``.
Passing videos raises, as there is nothing to process them.

It is imported only by :func:`brats_llm.llm.families.qwen_vl.load_processor` when torchvision is missing;
with torchvision present the family loads the real ``AutoProcessor``.
"""

from __future__ import annotations

from transformers import Qwen2_5_VLProcessor


class Qwen2_5_VLImageOnlyProcessor(Qwen2_5_VLProcessor):
    """``Qwen2_5_VLProcessor`` without its video processor (image processor + tokenizer + chat template).

    Saved folders name this class in ``processor_config.json``; ``AutoProcessor`` does not know the name
    and falls back to the model config's ``Qwen2_5_VLProcessor`` (which then builds its default video
    processor), so a folder written here loads with the real class where torchvision is installed.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        # Qwen2_5_VLProcessor.__init__ sets the image / video token ids, then passes its three parts on;
        # ProcessorMixin pairs them with this class's two attributes, so the video processor (None) is dropped.
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    def __call__(self, images=None, text=None, videos=None, audio=None, **kwargs):
        if videos is not None:
            raise ValueError(f"{type(self).__name__} processes images only (the video processor needs torchvision)")
        return super().__call__(images=images, text=text, audio=audio, **kwargs)
