"""What the published distributions carry: the sdist (with the license, the changelog and the manual's sources)
and the wheel built from that sdist (the license, the py.typed markers, the metadata of the supported Django and
Python versions), both from `python -m build`, as a release is made."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from email.parser import HeaderParser
from pathlib import Path

import pytest

from deferred_confirmation.pipeline.version import __version__

pytestmark = [pytest.mark.subprocess, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "workers", "django_integration")


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> tuple[Path, Path]:
    """(sdist, wheel): the wheel is built from the sdist, so it shows that the sdist is complete."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "-o", str(out), str(ROOT)], check=True, capture_output=True,
                   timeout=240)
    return next(out.glob("deferred_confirmation-*.tar.gz")), next(out.glob("deferred_confirmation-*.whl"))


def test_the_version_has_one_home():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def test_the_changelog_has_an_unreleased_section_and_one_for_this_version():
    headings = re.findall(r"^## \[([^\]]+)\]", (ROOT / "CHANGELOG.md").read_text(), flags=re.M)
    assert headings[0] == "Unreleased"
    assert __version__ in headings


def test_the_sdist_carries_the_license_the_changelog_and_the_manual(dists):
    sdist, _wheel = dists
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml"} <= names
    docs = {path.relative_to(ROOT).as_posix() for path in (ROOT / "docs").rglob("*.md")
            if "_build" not in path.parts}
    assert docs and docs <= names, sorted(docs - names)[:10]
    assert not any(name.startswith("docs/_build/") or "__pycache__" in name for name in names)


def test_the_wheel_is_licensed_typed_and_says_which_django_and_python_it_supports(dists):
    _sdist, wheel = dists
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"deferred_confirmation-{__version__}.dist-info/METADATA").decode()
    assert f"deferred_confirmation-{__version__}.dist-info/licenses/LICENSE" in names
    # PEP 561 for a namespace package: the marker in each of its packages.
    assert {f"deferred_confirmation/{package}/py.typed" for package in PACKAGES} <= names
    meta = HeaderParser().parsestr(metadata)
    assert meta["Version"] == __version__
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert meta.get_all("License-File") == ["LICENSE"]
    classifiers = set(meta.get_all("Classifier"))
    assert {f"Framework :: Django :: {v}" for v in ("5.2", "6.0", "6.1")} <= classifiers
    assert {f"Programming Language :: Python :: {v}" for v in ("3.11", "3.12", "3.13")} <= classifiers
    [django] = [r for r in meta.get_all("Requires-Dist") if r.startswith("Django") and "extra" not in r]
    assert set(django.removeprefix("Django").split(",")) == {">=5.2", "<6.2"}


def test_the_wheel_carries_templates_migrations_and_compiled_translations_and_nothing_of_the_repository(dists):
    _sdist, wheel = dists
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    app = "deferred_confirmation/django_integration"
    templates = {path.relative_to(ROOT / "django_integration").as_posix()
                 for path in (ROOT / "django_integration" / "templates").rglob("*") if path.is_file()}
    assert templates and {f"{app}/{name}" for name in templates} <= names
    migrations = {path.name for path in (ROOT / "django_integration" / "migrations").glob("0*.py")}
    assert {f"{app}/migrations/{name}" for name in migrations} <= names
    assert {f"{app}/locale/{lang}/LC_MESSAGES/django.{ext}" for lang in ("de", "es", "fr") for ext in ("mo", "po")
            } <= names
    assert not [name for name in names if name.split("/", 1)[0] in ("tests", "example", "bench", "docs", "docker")]
    assert all(name.startswith(("deferred_confirmation/", "deferred_confirmation-")) for name in names)


def test_twine_accepts_both_distributions(dists):
    done = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *map(str, dists)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("PASSED") == 2
