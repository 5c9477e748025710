"""The manual builds, whole, with warnings as errors; the README stays a short front page.

The build runs in a subprocess (``python -m sphinx -W``), as ``make docs`` runs it, so its Django setup
(docs/conf.py) never meets the test settings.  Every page a table of contents names must exist and be written;
Sphinx itself warns (hence fails) about a page that no table of contents names, a broken link or a failing
directive.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
TOCTREE = re.compile(r"```\{toctree\}\n(.*?)```", re.S)

pytest.importorskip("sphinx", reason="the docs extra (pip install -e '.[docs]') is not installed")


def toctree_entries() -> dict[Path, list[str]]:
    """page -> the documents its toctrees name (relative to the page's folder, without ``.md``)."""
    entries = {}
    for page in DOCS.rglob("*.md"):
        if {"_build", "_generated"} & set(page.relative_to(DOCS).parts):
            continue
        names = []
        for block in TOCTREE.findall(page.read_text()):
            names += [line.strip() for line in block.splitlines()
                      if line.strip() and not line.strip().startswith(":")]
        if names:
            entries[page] = names
    return entries


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("docs-html")
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"sphinx-build -W failed:\n{done.stdout}\n{done.stderr}"
    return out


def test_the_manual_builds_with_warnings_as_errors(built):
    assert (built / "index.html").exists()


def test_every_page_in_a_table_of_contents_exists_and_is_built(built):
    entries = toctree_entries()
    assert DOCS / "index.md" in entries, "docs/index.md has no toctree"
    named = set()
    for page, names in entries.items():
        for name in names:
            source = (page.parent / f"{name}.md").resolve()
            assert source.exists(), f"{page.relative_to(ROOT)} lists {name!r}, but {source} does not exist"
            html = built / source.relative_to(DOCS).with_suffix(".html")
            assert html.exists(), f"{html} was not written"
            named.add(source)
    for page in ["installation", "quickstart", "demo", "concepts", "channels/index", "channels/email", "channels/sms",
                 "channels/letter", "channels/microdeposit", "writing-a-channel", "settings", "checks", "api",
                 "operations", "security", "benchmarks", "reliability", "changelog", "development"]:
        assert DOCS / f"{page}.md" in named, f"docs/{page}.md is in no table of contents"


def test_the_reference_pages_show_the_generated_tables(built):
    api = (built / "api.html").read_text()
    for name in ("DeferredForm", "save_confirmed", "confirm", "resend", "cancel", "ConfirmStatus"):
        assert f'<span class="pre">{name}</span>' in api, f"the API page does not document {name}"
    benchmarks = (built / "benchmarks.html").read_text()
    assert "Last run:" in benchmarks, "the benchmark results table (docs/_generated/) is not included"
    first_release = re.search(r"^## \[?([^\]\n]+)", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert first_release, "CHANGELOG.md has no release heading"
    assert first_release.group(1) in (built / "changelog.html").read_text(), "the changelog page lacks CHANGELOG.md"


def test_the_settings_and_checks_pages_list_every_declared_setting_and_check(built):
    from deferred_confirmation.django_integration.check_ids import CHECKS
    from deferred_confirmation.pipeline.conf import CHANNEL_SETTINGS, SETTINGS

    settings_page = (built / "settings.html").read_text()
    for setting in SETTINGS:
        anchor = "setting-" + setting.name.lower().replace("_", "-")
        assert f'id="{anchor}"' in settings_page, f"{setting.name} is not in the settings reference"
    for setting in CHANNEL_SETTINGS:
        anchor = "setting-channel-" + setting.name.lower().replace("_", "-")
        assert f'id="{anchor}"' in settings_page, f"the channel key {setting.name} is not in the settings reference"
    checks_page = (built / "checks.html").read_text()
    for check in CHECKS:
        assert f'id="check-{check.id.rsplit(".", 1)[-1].lower()}"' in checks_page, f"{check.id} is not listed"


def test_the_readme_is_short_and_names_the_two_commands():
    text = README.read_text()
    assert len(text.encode()) <= 12 * 1024, f"README.md is {len(text.encode())} bytes; keep it under 12 KB"
    commands = re.search(r"```bash\n(.*?)```", text, re.S)
    assert commands, "README.md has no command block"
    lines = [line.split("#")[0].strip() for line in commands.group(1).splitlines()]
    assert lines == ["make demo", "make test"], f"README's first command block is {lines}"
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def test_readme_links_into_the_manual_resolve():
    for target in re.findall(r"\]\(((?:docs/|CHANGELOG)[^)#]*)", README.read_text()):
        assert (ROOT / target).exists(), f"README links to {target}, which does not exist"
