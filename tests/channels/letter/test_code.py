"""The letter code: 8 characters of an alphabet without look-alikes, printed XXXX-XXXX, typed back in any
case with spaces and dashes anywhere; anything else is not a code (and costs no attempt)."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import pytest

from deferred_confirmation.pipeline.channels.letter import ALPHABET, CODE_LENGTH, PDFLetterChannel, format_code


@pytest.fixture
def channel() -> PDFLetterChannel:
    return PDFLetterChannel("letter", {"MAX_ATTEMPTS": 5})


def test_alphabet_has_no_look_alikes():
    for ambiguous in "0OQD1IL5S2Z8BGUV":
        assert ambiguous not in ALPHABET
    assert len(set(ALPHABET)) == len(ALPHABET) == 20 and ALPHABET.isascii()
    assert all(c.isdigit() or c.isupper() for c in ALPHABET)


def test_codes_are_random_over_the_whole_alphabet(channel):
    codes = [channel.make_secret() for _ in range(2000)]
    assert all(len(code) == CODE_LENGTH and set(code) <= set(ALPHABET) for code in codes)
    assert len(set(codes)) == len(codes)
    counts = Counter("".join(codes))
    assert set(counts) == set(ALPHABET)
    assert min(counts.values()) > 0.5 * max(counts.values())  # 16000 draws: each symbol about 800 times


def test_printed_as_two_groups_of_four():
    assert format_code("ACEF3479") == "ACEF-3479"


@pytest.mark.parametrize("typed", [
    "ACEF-3479", "ACEF3479", "acef-3479", "  acef 3479  ", "a c e f 3 4 7 9", "AC-EF-34-79", "acef\t3479",
    "ACEF–3479", "ACEF—3479", "ACEF\u22123479", "ACEF\u00a03479",  # en/em dash, minus, no-break space
])
def test_normalize_accepts_what_people_type(channel, typed):
    assert channel.normalize(typed) == "ACEF3479"


@pytest.mark.parametrize("typed", [
    "", "   ", "ACEF347", "ACEF34799", "ACEF-347O",  # too short, too long, letter O
    "0CEF3479", "ACEF3471", "ACEF347I", "ACEF347L", "ACEF347S", "ACEF347B", "ACEF3472",  # not in the alphabet
    "ＡＣＥＦ３４７９",  # fullwidth
    "ACEF347\u0669",  # Arabic-Indic nine
    "ﬀACEF347",  # a ligature that upper-cases to "FF"
    "ACEF\x003479", "ACEF.3479", "ACEF_3479", "ACEF/3479",
    "A" * 10_000, "ACEF-3479" + " " * 60,
    None, 12345678, ["ACEF3479"], b"ACEF3479",
])
def test_normalize_refuses_anything_else(channel, typed):
    assert channel.normalize(typed) is None


def test_digest_binds_the_code_to_its_delivery(channel):
    first = SimpleNamespace(pk=1, secret_digest="")
    first.secret_digest = channel.digest(first, "ACEF3479")
    assert "ACEF3479" not in first.secret_digest and len(first.secret_digest) == 64
    assert channel.matches(first, " acef-3479 ")
    assert not channel.matches(first, "ACEF3477")
    assert not channel.matches(first, "ACEF347\ud800")
    other = SimpleNamespace(pk=2, secret_digest=first.secret_digest)
    assert not channel.matches(other, "ACEF3479")
