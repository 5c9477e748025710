"""The package's translation catalogues (django_integration/locale): every marked string of the shipped code
extracted into a copy of them, and compiled.  ``python -m tests.ops.catalogues`` writes the updated .po and .mo
files back (then translate what is new, and run it again to compile); tests/ops/test_catalogues.py checks that
nothing is missing, untranslated or stale.

makemessages files a string under the nearest ``locale`` folder above it, and pipeline/ and workers/ have none of
their own: one catalogue serves the whole package, so the code is extracted from a copy laid out around it."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCALE = ROOT / "django_integration" / "locale"
LANGUAGES = ("de", "es", "fr")
PACKAGES = ("django_integration", "pipeline", "workers")


def extract(workdir: Path) -> Path:
    """A copy of the catalogues in ``workdir`` updated from the code by makemessages; its locale folder."""
    from django.core.management import call_command

    for name in PACKAGES:
        shutil.copytree(ROOT / name, workdir / name,
                        ignore=shutil.ignore_patterns("locale", "migrations", "__pycache__"))
    shutil.copytree(LOCALE, workdir / "locale", dirs_exist_ok=True)
    with contextlib.chdir(workdir):
        call_command("makemessages", locale=list(LANGUAGES), add_location="file", no_obsolete=True, verbosity=0)
    return workdir / "locale"


def compile_catalogues(locale: Path) -> None:
    """Each language's django.po compiled to django.mo beside it (msgfmt, as compilemessages runs it)."""
    for language in LANGUAGES:
        po = locale / language / "LC_MESSAGES" / "django.po"
        subprocess.run(["msgfmt", "--check-format", "-o", str(po.with_suffix(".mo")), str(po)], check=True)


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    with tempfile.TemporaryDirectory() as tmp:
        locale = extract(Path(tmp))
        compile_catalogues(locale)
        for language in LANGUAGES:
            target = LOCALE / language / "LC_MESSAGES"
            target.mkdir(parents=True, exist_ok=True)
            for name in ("django.po", "django.mo"):
                shutil.copyfile(locale / language / "LC_MESSAGES" / name, target / name)
    print(f"updated {', '.join(LANGUAGES)} in {LOCALE.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
