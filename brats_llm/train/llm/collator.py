"""Batch TRL-native vision chats for causal-LM training, with loss on the assistant answer only."""

from __future__ import annotations

from typing import Any

from brats_llm.llm.families import Family

#: Label value ignored by the loss.
IGNORE_INDEX = -100


def clean_messages(messages: list[dict]) -> list[dict]:
    """Drop ``None`` fields (Arrow fills absent struct fields) so chat templates see clean parts."""
    return [{"role": m["role"], "content": [{k: v for k, v in part.items() if v is not None} for part in m["content"]]}
            for m in messages]


class VisionChatCollator:
    """Turn rows with ``images`` + ``messages`` into model inputs with masked ``labels``.

    Labels are the input ids with padding, every image token of the model's family and the whole prompt
    (system and user turns up to and including the assistant header) set to -100, and so is whatever
    follows the last end-of-turn token (the tokenizer's eos: Qwen's template writes a newline after it):
    the loss covers the assistant's answer and its end-of-turn token only.
    """

    def __init__(self, processor: Any, family: Family) -> None:
        self.processor = processor
        self.family = family
        self.image_token_id = processor.tokenizer.convert_tokens_to_ids(family.image_token)
        if self.image_token_id is None or self.image_token_id == processor.tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {family.image_token} token ({family.model_type} family)")

    def prompt_ids(self, messages: list[dict], images: list | None = None) -> list[int]:
        """The prompt's tokens as inference builds them (same template call, same tokenisation).

        A family whose processor expands each image token (``expands_image``) needs the ``images`` to know
        how many tokens each becomes, so its prompt goes through the processor with them, as in inference.
        """
        from brats_llm.llm.infer import encode, prompt_ids, prompt_texts

        prompt = prompt_texts(self.processor, [messages])[0]
        if not self.family.expands_image:
            return prompt_ids(self.processor, prompt)
        if images is None:
            raise ValueError(f"the {self.family.model_type} family expands image tokens: prompt_ids needs the images")
        return encode(self.processor, [images], [prompt], padding_side="right")["input_ids"][0].tolist()

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        from brats_llm.llm.infer import encode

        chats = [clean_messages(row["messages"]) for row in rows]
        texts = [self.processor.apply_chat_template(chat) for chat in chats]
        images = [[image.convert("RGB") for image in row["images"]] for row in rows]
        batch = encode(self.processor, images, texts, padding_side="right")
        labels = batch["input_ids"].clone()
        labels[batch["attention_mask"] == 0] = IGNORE_INDEX
        labels[labels == self.image_token_id] = IGNORE_INDEX
        end_id = self.processor.tokenizer.eos_token_id
        for i, chat in enumerate(chats):
            self._check_images(batch["input_ids"][i], len(images[i]))
            prompt = self.prompt_ids(chat, images[i])
            if batch["input_ids"][i, :len(prompt)].tolist() != prompt:  # the answer must not re-tokenise the prompt
                raise ValueError("the chat template's training text does not start with the inference prompt's tokens; "
                                 "the loss mask would be wrong")
            labels[i, :len(prompt)] = IGNORE_INDEX
            ends = (batch["input_ids"][i] == end_id).nonzero()
            if len(ends):  # what the template writes after the answer's end-of-turn (Qwen: "\n") is not trained
                labels[i, int(ends[-1]) + 1:] = IGNORE_INDEX
        batch["labels"] = labels
        return batch

    def _check_images(self, ids, count: int) -> None:
        """One image token per image, or at least one when the family's processor expands each image."""
        found = int((ids == self.image_token_id).sum())
        if found < count or (found != count and not self.family.expands_image):
            raise ValueError(f"{found} {self.family.image_token} tokens for {count} images: the chat template did not "
                             f"place every image ({self.family.model_type} family)")
