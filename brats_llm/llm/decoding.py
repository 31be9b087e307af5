"""Constrained decoding (``llm.decoding: json``): each task's answer schema, enforced token by token with llguidance."""

from __future__ import annotations

import functools
from typing import Any

from brats_llm.conversations.prompts import CLASS_ANSWERS, TASKS
from brats_llm.geometry.shapes import MAX_POLYGON_POINTS, MIN_POLYGON_POINTS

#: ``free``: the paper's unconstrained decoding; ``json``: only answers that match :func:`json_schema`.
DECODINGS = ("free", "json")
#: Longest ``reason`` string: ten ground-truth keywords take up to ~160 characters; the bound makes a
#: model that never closes the string stop anyway.
REASON_MAX_CHARS = 200
#: JSON layout as ``json.dumps`` (and so :func:`~brats_llm.conversations.prompts.answer_text`) writes it; no
#: other whitespace, so a model cannot spend its token budget on blanks.
JSON_LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


def check_decoding(decoding: str) -> None:
    """Refuse a ``decoding`` that is not one of :data:`DECODINGS` (ValueError naming them)."""
    if decoding not in DECODINGS:
        raise ValueError(f"decoding must be one of {DECODINGS}, got {decoding!r}")


def _coordinate(limit: int | None) -> dict[str, Any]:
    """A pixel coordinate as ``answer_text`` writes it (``_number``: one decimal at most), in ``[0, limit]``."""
    schema: dict[str, Any] = {"type": "number", "minimum": 0, "multipleOf": 0.1}
    if limit is not None:
        schema["maximum"] = limit
    return schema


def _points(count: tuple[int, int] | None, size: tuple[int, int] | None) -> dict[str, Any]:
    """``[x, y]`` points inside an image of ``size`` (height, width); ``count`` = (min, max), or one point."""
    height, width = size if size is not None else (None, None)
    point = {"type": "array", "prefixItems": [_coordinate(None if width is None else width - 1),
                                              _coordinate(None if height is None else height - 1)],
             "items": False, "minItems": 2, "maxItems": 2}
    if count is None:
        return point
    return {"type": "array", "items": point, "minItems": count[0], "maxItems": count[1]}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    """A JSON object with exactly ``properties``, all required, in this order."""
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def json_schema(task: str, size: tuple[int, int] | None = None) -> dict[str, Any]:
    """The JSON schema of a ``task`` answer; coordinates bounded to an image of ``size`` (height, width) when given.

    The schema admits what :func:`~brats_llm.conversations.prompts.answer_text` writes. What it cannot say
    (a box's corners describe one box, a polygon is simple) is left to the parser: ``invalid_value`` remains.
    """
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise ValueError(f"size must be (height, width), both >= 1, got {size}")
    if task == "cls":
        return _object({"label": {"enum": [CLASS_ANSWERS[c] for c in sorted(CLASS_ANSWERS)]},
                        "reason": {"type": "string", "maxLength": REASON_MAX_CHARS}})
    if task == "center":
        return _object({"center": _points(None, size)})
    if task == "bbox":
        return _object({"bbox": _points((4, 4), size)})
    if task == "polygon":
        return _object({"polygon": _points((MIN_POLYGON_POINTS, MAX_POLYGON_POINTS), size)})
    raise ValueError(f"unknown task {task!r}; tasks are {TASKS}")


def grammar(schema: dict[str, Any]) -> str:
    """The llguidance grammar of ``schema`` in the :data:`JSON_LAYOUT`."""
    from llguidance import LLMatcher

    return LLMatcher.grammar_from_json_schema(schema, overrides=JSON_LAYOUT)


@functools.lru_cache(maxsize=4)
def ll_tokenizer(tokenizer):
    """llguidance's view of a fast HF ``tokenizer`` (its token trie: 1-2 s for Llama's 128k tokens), made once."""
    import llguidance.hf

    return llguidance.hf.from_tokenizer(tokenizer)


def matcher(tokenizer, schema: dict[str, Any] | str):
    """A fresh llguidance matcher of ``schema`` (or its :func:`grammar`) at the start of an answer; a bad
    grammar raises."""
    from llguidance import LLMatcher

    found = LLMatcher(ll_tokenizer(tokenizer), schema if isinstance(schema, str) else grammar(schema), log_level=0)
    _check(found)
    return found


def accepts(tokenizer, schema: dict[str, Any], text: str) -> bool:
    """Whether ``text``, tokenised by ``tokenizer``, is a complete answer under ``schema``."""
    found = matcher(tokenizer, schema)
    return found.consume_tokens(tokenizer(text, add_special_tokens=False)["input_ids"]) and found.is_accepting()


def _check(found) -> None:
    """Raise a matcher's error (llguidance records errors instead of raising them)."""
    if found.is_error():
        raise RuntimeError(f"constrained decoding: {found.get_error()}")


def allowed(bitmask, vocab: int):
    """Boolean (rows, ``vocab``) allowed-token mask from llguidance's (rows, words) int32 bitmask; token
    ids at or past the bitmask's ``32 * words`` are not allowed.

    Eager torch (llguidance.torch's own kernel is ``torch.compile``d: ~12 s to compile on CPU).
    """
    import torch

    shifts = torch.arange(32, dtype=torch.int32, device=bitmask.device)
    bits = ((bitmask.unsqueeze(-1) >> shifts) & 1).bool().flatten(1)[:, :vocab]
    return torch.nn.functional.pad(bits, (0, vocab - bits.shape[1]), value=False)


class JsonSchemaLogitsProcessor:
    """Masks every next-token score that would leave ``schema``; one llguidance matcher per batch row.

    A transformers logits processor (``LogitsProcessorList`` calls it with ``input_ids, scores``); it does
    not subclass ``LogitsProcessor`` so that importing this module does not import transformers.

    One instance serves one ``generate`` call on a left-padded batch: every row's answer starts at
    ``prompt_length``. Each call consumes the tokens generated since the previous one, then allows only
    the tokens the row's matcher accepts (only EOS once the answer is complete). Tokens outside the
    tokenizer's vocabulary (a model vocabulary may be wider) are never allowed.
    """

    def __init__(self, tokenizer, schema: dict[str, Any], prompt_length: int):
        self.tokenizer, self.schema, self.prompt_length = tokenizer, schema, prompt_length
        self.seen = prompt_length
        self.matchers: list = []
        self.bitmask = None  # (rows, words) int32, allocated once (pinned on CUDA machines: dear per token)

    def _start(self, input_ids) -> None:
        """One matcher per row and the bitmask, at the first call (the prompt only)."""
        import llguidance.torch

        if input_ids.shape[1] != self.prompt_length:
            raise ValueError(f"first call sees {input_ids.shape[1]} tokens, the prompt has {self.prompt_length}")
        rules = grammar(self.schema)  # converted once per batch, not per row
        self.matchers = [matcher(self.tokenizer, rules) for _ in range(input_ids.shape[0])]
        vocab = ll_tokenizer(self.tokenizer).vocab_size
        self.bitmask = llguidance.torch.allocate_token_bitmask(len(self.matchers), vocab)

    def _consume(self, input_ids) -> None:
        """Feed each row's matcher the tokens generated since the last call (none past its end)."""
        if not self.matchers:
            self._start(input_ids)
        if input_ids.shape[0] != len(self.matchers):
            raise ValueError(f"batch of {input_ids.shape[0]} rows, the processor has {len(self.matchers)} matchers")
        for found, tokens in zip(self.matchers, input_ids[:, self.seen:].tolist()):
            for token in tokens:
                if found.is_stopped():  # finished: what follows is EOS then padding
                    break
                found.consume_token(token)
            _check(found)
        self.seen = input_ids.shape[1]

    def __call__(self, input_ids, scores):
        """Consume the new tokens, then set the scores of disallowed next tokens to -inf."""
        import llguidance.torch

        self._consume(input_ids)
        for row, found in enumerate(self.matchers):
            llguidance.torch.fill_next_token_bitmask(found, self.bitmask, row)
            _check(found)
        keep = allowed(self.bitmask.to(scores.device), scores.shape[1])
        if not keep.any(dim=1).all():
            raise RuntimeError("constrained decoding: no token of the model's vocabulary is allowed")
        return scores.masked_fill(~keep, float("-inf"))

