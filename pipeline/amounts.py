"""Micro-deposit amounts as people type them: "0.32", "32", "$0.32", "0,32" -> 32 (cents).

Strict on purpose: ASCII digits only (no fullwidth or Arabic-Indic digits), no signs, exponents or extra decimals, 1-99
cents.  Anything else is None, which the confirmation form reports and which costs no attempt.
"""

from __future__ import annotations

import re
from typing import Any

_AMOUNT = re.compile(r"\A\s*\$?\s*(?:(?P<cents>\d{1,2})|0?[.,](?P<frac>\d{1,2}))\s*\Z", re.ASCII)
_SEPARATORS = re.compile(r"[;\s]+|,\s+|\s*/\s*", re.ASCII)
MAX_INPUT = 64


def parse_cents(text: Any) -> int | None:
    """One amount in cents (1-99), or None."""
    if isinstance(text, bool):
        return None
    if isinstance(text, int):
        return text if 1 <= text <= 99 else None
    if not isinstance(text, str) or len(text) > MAX_INPUT:
        return None
    match = _AMOUNT.match(text)
    if not match:
        return None
    if match["cents"] is not None:
        cents = int(match["cents"])
    else:
        frac = match["frac"]
        cents = int(frac) * (10 if len(frac) == 1 else 1)  # "0.3" is 30 cents
    return cents if 1 <= cents <= 99 else None


def parse_pair(value: Any) -> tuple[int, int] | None:
    """Two distinct amounts, in any order, from a pair or from text like "0.32, 0.45"; sorted, or None."""
    if isinstance(value, str):
        if len(value) > 2 * MAX_INPUT:
            return None
        parts = [p for p in _SEPARATORS.split(value.strip()) if p]
        if len(parts) != 2:
            parts = [p for p in value.split(",") if p.strip()] if value.count(",") == 1 else parts
    elif isinstance(value, list | tuple):
        parts = list(value)
    else:
        return None
    if len(parts) != 2:
        return None
    cents = [parse_cents(p) for p in parts]
    if None in cents or cents[0] == cents[1]:
        return None
    return tuple(sorted(cents))  # type: ignore[return-value]


def canonical(pair: tuple[int, int]) -> str:
    """The text whose HMAC is stored: "32,45"."""
    low, high = sorted(pair)
    return f"{low},{high}"
