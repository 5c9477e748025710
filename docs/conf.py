"""Sphinx configuration of the manual (``make docs``).

Pages are Markdown (MyST); the API page documents the code with autodoc, so Django is set up here with the
smallest settings that import the library's app: no database is opened while the manual is built.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path[:0] = [str(DOCS / "_ext"), str(ROOT)]

import django  # noqa: E402
from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure(
        SECRET_KEY="docs-build-only",  # noqa: S106 - builds the manual, never serves anything
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django_celery_beat",
            "deferred_confirmation.django_integration",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        USE_TZ=True,
    )
    django.setup()

from deferred_confirmation.pipeline.version import __version__  # noqa: E402 - after sys.path is set

project = "deferred-confirmation"
release = version = __version__
author = "deferred-confirmation contributors"
copyright = "2026, deferred-confirmation contributors"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "confirmation_reference",
]
source_suffix = {".md": "markdown"}
root_doc = "index"
# _generated holds fragments that pages include (the benchmark results table), never pages of their own.
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["colon_fence", "deflist"]
# "concepts.md#states" style links and {ref} targets for every heading down to level 3.
myst_heading_anchors = 3
# Quotes in the settings' one-line docs are code ("https://example.com"), not prose: keep them straight.
smartquotes = False

autodoc_member_order = "bysource"
autodoc_typehints = "description"
html_theme = "furo"
html_title = "deferred-confirmation"
html_static_path: list[str] = []
