"""docs/testing.md: a project's tests of its own deferred forms, as the page shows them, pass.

The page includes tests/guide/settings.py and tests/guide/example_tests.py literally; this runs those tests in a
pytest of their own (the page's settings, none of this suite's fixtures), as a project's test run would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.subprocess, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]


def test_the_pages_example_tests_pass_with_the_pages_settings(tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.guide.settings", "TMPDIR": str(tmp_path),
           "TEST_SQLITE_NAME": str(tmp_path / "guide.sqlite3"), "TEST_PG_NAME": "test_dc_testing_guide"}
    # --noconftest: none of this suite's fixtures (the broker is never touched: tasks run eagerly).
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--noconftest",
                          "tests/guide/example_tests.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "2 passed" in run.stdout


def test_the_page_shows_the_files_that_are_tested():
    page = (ROOT / "docs" / "testing.md").read_text()
    for name in ("tests/guide/settings.py", "tests/guide/example_tests.py"):
        assert f"literalinclude:: ../{name}" in page or f"{{literalinclude}} ../{name}" in page, name
