"""DemoVocab: one token-id space and the sequence layout of the demo model (Lumina-mGPT-like).

Id layout (vocab size = 5 + num_codes + num_words = 5 + 256 + 31 = 292 for the bundled model):

    0 pad | 1 bos | 2 image_start | 3 image_end | 4 row_end | [5, 5+K) image codes | then prompt words

Sequence:  bos, prompt words..., image_start, 14 x (14 image codes, row_end), image_end
The prompt (what `encode_prompt` returns) ends with image_start; the generated body has row stride 15
(14 codes + row_end), then image_end. The unconditional prompt (CFG branch and condition dropout) is
bos, image_start.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

PAD, BOS, IMAGE_START, IMAGE_END, ROW_END = 0, 1, 2, 3, 4
SPECIAL_TOKENS = ("<pad>", "<bos>", "<image_start>", "<image_end>", "<row_end>")
IMAGE_LO = len(SPECIAL_TOKENS)  # first image code id
HEIGHT = 14
WIDTH = 14
ROW_STRIDE = WIDTH + 1

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# {name} = "seven", {num} = "7", {a_name} = "a seven" / "an eight"
PROMPT_TEMPLATES = (
    "a handwritten digit {name}",
    "the number {num}",
    "a picture of {a_name}",
    "handwritten {num}",
    "digit {name}",
    "the digit {num}",
    "an image of the number {name}",
    "a handwritten {name}",
    "a drawing of the numeral {num}",
    "{name}",
    "{num}",
    "number {name}",
)

_BASE_WORDS = ("a", "an", "the", "handwritten", "digit", "number", "picture", "of", "image", "drawing",
               "numeral")


def _article(name: str) -> str:
    return ("an " if name[0] in "aeio" else "a ") + name


def default_words() -> list[str]:
    return list(_BASE_WORDS) + list(DIGIT_NAMES) + [str(d) for d in range(10)]


@dataclass
class DemoVocab:
    num_codes: int = 256
    words: list[str] = field(default_factory=default_words)

    def __post_init__(self):
        if len(set(self.words)) != len(self.words):
            raise ValueError("duplicate prompt words")
        self.word_to_id = {w: self.words_lo + i for i, w in enumerate(self.words)}

    # --- constants a decoder needs ------------------------------------------------------------------------
    pad_id = PAD
    bos_id = BOS
    image_start_id = IMAGE_START
    image_end_id = IMAGE_END
    row_end_id = ROW_END
    height = HEIGHT
    width = WIDTH
    row_stride = ROW_STRIDE

    @property
    def image_lo(self) -> int:
        return IMAGE_LO

    @property
    def image_hi(self) -> int:  # exclusive
        return IMAGE_LO + self.num_codes

    @property
    def image_token_range(self) -> tuple[int, int]:
        return (self.image_lo, self.image_hi)

    @property
    def words_lo(self) -> int:
        return IMAGE_LO + self.num_codes

    @property
    def vocab_size(self) -> int:
        return self.words_lo + len(self.words)

    @property
    def num_body_tokens(self) -> int:
        """Generated tokens after the prompt, image_end included: 14 * 15 + 1 = 211."""
        return HEIGHT * ROW_STRIDE + 1

    # --- prompts -------------------------------------------------------------------------------------------
    @staticmethod
    def prompt_text(digit: int, template: int = 0) -> str:
        name = DIGIT_NAMES[digit]
        return PROMPT_TEMPLATES[template].format(name=name, num=str(digit), a_name=_article(name))

    @staticmethod
    def all_prompt_texts(digit: int) -> list[str]:
        return [DemoVocab.prompt_text(digit, t) for t in range(len(PROMPT_TEMPLATES))]

    def tokenize_words(self, text: str) -> list[str]:
        return [w for w in re.split(r"\s+", re.sub(r"[.,!?;:\"']", " ", text.lower()).strip()) if w]

    def encode_prompt(self, text: str) -> list[int]:
        """bos + word ids + image_start. Unknown words raise ValueError listing the known words."""
        words = self.tokenize_words(text)
        unknown = [w for w in words if w not in self.word_to_id]
        if unknown:
            raise ValueError(f"prompts: unknown prompt word(s) {unknown} in {text!r}; known words: {' '.join(self.words)}")
        return [BOS] + [self.word_to_id[w] for w in words] + [IMAGE_START]

    def unconditional_prompt(self) -> list[int]:
        return [BOS, IMAGE_START]

    # --- image body ----------------------------------------------------------------------------------------
    def codes_to_body(self, codes) -> list[int]:
        """[14, 14] VQ code ids -> 211 token ids: rows of (14 image tokens, row_end), then image_end."""
        rows = [[int(c) for c in row] for row in (codes.tolist() if hasattr(codes, "tolist") else codes)]
        if len(rows) != HEIGHT or any(len(r) != WIDTH for r in rows):
            raise ValueError(f"codes: expected {HEIGHT}x{WIDTH}")
        out = []
        for row in rows:
            for c in row:
                if not 0 <= c < self.num_codes:
                    raise ValueError(f"code {c} outside [0, {self.num_codes})")
                out.append(IMAGE_LO + c)
            out.append(ROW_END)
        out.append(IMAGE_END)
        return out

    def body_to_codes(self, body) -> list[list[int]]:
        """Inverse of codes_to_body (image_end optional): token ids -> [14, 14] code ids."""
        body = [int(t) for t in (body.tolist() if hasattr(body, "tolist") else body)]
        if len(body) < HEIGHT * ROW_STRIDE:
            raise ValueError(f"body: expected >= {HEIGHT * ROW_STRIDE} tokens, got {len(body)}")
        rows = []
        for r in range(HEIGHT):
            row = body[r * ROW_STRIDE: r * ROW_STRIDE + WIDTH]
            if any(not self.image_lo <= t < self.image_hi for t in row):
                raise ValueError(f"row {r}: non-image token in {row}")
            rows.append([t - IMAGE_LO for t in row])
        return rows

    def constants(self) -> dict:
        return {"vocab_size": self.vocab_size, "pad_id": PAD, "bos_id": BOS, "image_start_id": IMAGE_START,
                "image_end_id": IMAGE_END, "row_end_id": ROW_END, "image_lo": self.image_lo,
                "image_hi": self.image_hi, "height": HEIGHT, "width": WIDTH, "row_stride": ROW_STRIDE,
                "words_lo": self.words_lo}

    # --- io ------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"special_tokens": list(SPECIAL_TOKENS), "num_codes": self.num_codes, "words": list(self.words),
                "prompt_templates": list(PROMPT_TEMPLATES), "digit_names": list(DIGIT_NAMES), **self.constants()}

    def save(self, path: str | os.PathLike):
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=1)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "DemoVocab":
        with open(path) as f:
            d = json.load(f)
        v = cls(num_codes=int(d["num_codes"]), words=list(d["words"]))
        if v.vocab_size != d["vocab_size"] or list(SPECIAL_TOKENS) != d["special_tokens"]:
            raise ValueError(f"{path}: vocab layout does not match this code version")
        return v
