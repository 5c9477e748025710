"""The shipped translations (docs/concepts.md#languages) are current: every string marked in the code is in each
catalogue, translated and not fuzzy, and each compiled .mo says what its .po says."""

from __future__ import annotations

import shutil
from pathlib import Path

import polib
import pytest

from tests.ops.catalogues import LANGUAGES, LOCALE, compile_catalogues, extract

pytestmark = pytest.mark.skipif(shutil.which("msgfmt") is None or shutil.which("xgettext") is None,
                                reason="needs GNU gettext (msgfmt, xgettext)")


def po_file(locale: Path, language: str) -> polib.POFile:
    return polib.pofile(str(locale / language / "LC_MESSAGES" / "django.po"))


def keys(catalogue: polib._BaseFile) -> set[tuple[str | None, str, str]]:
    return {(entry.msgctxt, entry.msgid, entry.msgid_plural) for entry in catalogue if not entry.obsolete}


def messages(catalogue: polib._BaseFile) -> dict[tuple[str | None, str, str], object]:
    return {(e.msgctxt, e.msgid, e.msgid_plural): e.msgstr_plural or e.msgstr for e in catalogue}


@pytest.fixture(scope="module")
def extracted(tmp_path_factory) -> Path:
    return extract(tmp_path_factory.mktemp("catalogues"))


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_marked_string_is_in_the_catalogue(extracted, language):
    ours, fresh = keys(po_file(LOCALE, language)), keys(po_file(extracted, language))
    assert not fresh - ours, f"not in {language}/django.po (run python -m tests.ops.catalogues): {fresh - ours}"
    assert not ours - fresh, f"no longer in the code: {ours - fresh}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_entry_is_translated_and_not_fuzzy(language):
    catalogue = po_file(LOCALE, language)
    assert catalogue.metadata.get("Language") == language
    assert not catalogue.untranslated_entries()
    assert not catalogue.fuzzy_entries()
    assert not catalogue.obsolete_entries()
    assert len(catalogue.translated_entries()) > 100


def test_the_compiled_catalogues_say_what_the_sources_say(tmp_path):
    """Compiled afresh (msgfmt --check-format: the placeholders of each translation match its msgid) and
    compared by content with the shipped .mo, which a stale one (or a missing one) would fail."""
    shutil.copytree(LOCALE, tmp_path / "locale")
    compile_catalogues(tmp_path / "locale")
    for language in LANGUAGES:
        name = Path(language, "LC_MESSAGES", "django.mo")
        shipped, fresh = polib.mofile(str(LOCALE / name)), polib.mofile(str(tmp_path / "locale" / name))
        assert messages(shipped) == messages(fresh), f"{name} is stale: run python -m tests.ops.catalogues"
        assert shipped.metadata == fresh.metadata


# GSM 03.38's basic character set: a text written only in it takes 160 characters a segment, any other character
# makes it UCS-2 and 70 a segment (each segment is paid for).
GSM_7 = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
            "¿abcdefghijklmnopqrstuvwxyzäöñüà")


@pytest.mark.parametrize("language", ["de", "fr"])
def test_the_sms_text_stays_in_the_gsm_alphabet(language):
    [sms] = [entry for entry in po_file(LOCALE, language) if "is your confirmation code" in entry.msgid]
    assert set(sms.msgstr) <= GSM_7, set(sms.msgstr) - GSM_7
