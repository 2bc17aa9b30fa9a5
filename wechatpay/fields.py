"""WeChat Pay's text fields: ``string(N)`` counts UTF-8 bytes, and only basic-plane characters are accepted.

WeChat answers 400 PARAM_ERROR ("字节数 144,大于最大值 127") for a description over 127
bytes, and refuses characters outside the Basic Multilingual Plane (emoji, which take
four UTF-8 bytes). Text we compose (descriptions, attach) is fitted with ``fit_utf8``;
text a person typed and expects to see unchanged (a refund reason) is checked with
``check_utf8`` and refused with a FieldError before anything is sent.
"""

from __future__ import annotations

from .errors import FieldError

DESCRIPTION_BYTES = 127
ATTACH_BYTES = 128
REFUND_REASON_BYTES = 80

# The largest code point WeChat accepts: the last of the Basic Multilingual Plane.
_BMP_LAST = 0xFFFF


def utf8_len(text: str) -> int:
    """Return how many bytes ``text`` takes in UTF-8, the unit of WeChat's ``string(N)``."""
    return len(text.encode("utf-8", "surrogatepass"))


def _accepted(char: str) -> bool:
    code = ord(char)
    # Lone surrogates cannot be encoded at all; beyond U+FFFF WeChat refuses the character.
    return code <= _BMP_LAST and not 0xD800 <= code <= 0xDFFF


def fit_utf8(text: str, max_bytes: int) -> str:
    """Return ``text`` without characters WeChat refuses, cut on a character boundary to ``max_bytes`` bytes.

    Characters outside the Basic Multilingual Plane (emoji) are dropped rather than
    replaced: a U+FFFD would show up as a box on the learner's receipt and still cost
    three of the few bytes a description has.
    """
    if max_bytes < 0:
        raise ValueError("max_bytes must not be negative")
    kept: list[str] = []
    used = 0
    for char in text:
        if not _accepted(char):
            continue
        size = len(char.encode("utf-8"))
        if used + size > max_bytes:
            break
        kept.append(char)
        used += size
    return "".join(kept)


def check_utf8(field: str, text: str, max_bytes: int) -> str:
    """Return ``text`` unchanged if WeChat would accept it in ``field``; raise FieldError saying why not."""
    for char in text:
        if not _accepted(char):
            raise FieldError(field, "unsupported_character", max_bytes, utf8_len(text), char)
    size = utf8_len(text)
    if size > max_bytes:
        raise FieldError(field, "too_long", max_bytes, size)
    return text
