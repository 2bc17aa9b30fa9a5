"""Yuan strings on the wire, integer fen inside: the only two conversions, both exact."""

from __future__ import annotations

import re

from .errors import MalformedError

# Alipay's amounts: yuan with at most two decimals ("99", "99.9", "99.00"); no sign, no exponent.
_YUAN = re.compile(r"(0|[1-9][0-9]{0,9})(?:\.([0-9]{1,2}))?")


def fen_to_yuan(fen: int) -> str:
    """Write an amount of fen as Alipay's yuan string with two decimals (9900 -> "99.00")."""
    if isinstance(fen, bool) or not isinstance(fen, int) or fen < 0:
        raise ValueError(f"an amount in fen is a non-negative int, not {fen!r}")
    return f"{fen // 100}.{fen % 100:02d}"


def yuan_to_fen(text: object, field: str = "amount") -> int:
    """Read Alipay's yuan string as fen, refusing anything that is not exactly yuan ("1e2", "-1", "0.001")."""
    if not isinstance(text, str):
        raise MalformedError(f"{field} is not a string")
    match = _YUAN.fullmatch(text)
    if match is None:
        raise MalformedError(f"{field} is not an amount in yuan: {text[:20]!r}")
    cents = (match.group(2) or "").ljust(2, "0")
    return int(match.group(1)) * 100 + int(cents)
