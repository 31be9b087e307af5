"""Batch TRL-native vision chats for causal-LM training, with loss on the assistant answer only."""

from __future__ import annotations

from typing import Any

#: Label value ignored by the loss.
IGNORE_INDEX = -100


def clean_messages(messages: list[dict]) -> list[dict]:
    """Drop ``None`` fields (Arrow fills absent struct fields) so chat templates see clean parts."""
    return [{"role": m["role"], "content": [{k: v for k, v in part.items() if v is not None} for part in m["content"]]}
            for m in messages]


class VisionChatCollator:
    """Turn rows with ``images`` + ``messages`` into model inputs with masked ``labels``.

    Labels are the input ids with padding, every ``<|image|>`` token and the whole prompt (system
    and user turns up to and including the assistant header) set to -100: the loss covers the
    assistant's answer and its end-of-turn token only.
    """

    def __init__(self, processor: Any, image_token: str = "<|image|>") -> None:
        self.processor = processor
        self.image_token_id = processor.tokenizer.convert_tokens_to_ids(image_token)

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        """The prompt's tokens as inference builds them (same template call, same tokenisation)."""
        from brats_llm.llm.infer import prompt_ids, prompt_texts

        return prompt_ids(self.processor, prompt_texts(self.processor, [messages])[0])

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        from brats_llm.llm.infer import encode

        chats = [clean_messages(row["messages"]) for row in rows]
        texts = [self.processor.apply_chat_template(chat) for chat in chats]
        images = [[image.convert("RGB") for image in row["images"]] for row in rows]
        batch = encode(self.processor, images, texts, padding_side="right")
        labels = batch["input_ids"].clone()
        labels[batch["attention_mask"] == 0] = IGNORE_INDEX
        labels[labels == self.image_token_id] = IGNORE_INDEX
        for i, chat in enumerate(chats):
            prompt = self.prompt_ids(chat)
            if batch["input_ids"][i, :len(prompt)].tolist() != prompt:  # the answer must not re-tokenise the prompt
                raise ValueError("the chat template's training text does not start with the inference prompt's tokens; "
                                 "the loss mask would be wrong")
            labels[i, :len(prompt)] = IGNORE_INDEX
        batch["labels"] = labels
        return batch
