"""Fixtures of the browser tests: the example site (real worker and web server, embedded defaults), a headless
Chromium driven by Playwright, a page per test with JavaScript on or off, and screenshots as test artifacts.

Chromium is Debian's (``/usr/bin/chromium``; ``.ci/run`` installs it), never a browser downloaded by
``playwright install``.  Without it these tests are skipped (see ``BROWSER``)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.site import ARTIFACTS, ExampleSite

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = ARTIFACTS / "screenshots"
VIEWPORT = {"width": 1000, "height": 760}
# One user per flow and JavaScript setting, created with the site (each test logs in as its own).
USERS = [f"{flow}_{js}" for flow in ("email", "phone", "bank") for js in ("js", "nojs")]


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return (f"needs Chromium at {CHROMIUM} (Debian/Ubuntu: apt-get install chromium; .ci/run installs it); "
                "the tests never download a browser")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "needs the playwright package (pip install -e '.[dev]')"
    return None


MISSING = _missing()
#: Every browser test module: ``pytestmark = BROWSER``.
BROWSER = [pytest.mark.subprocess, pytest.mark.skipif(MISSING is not None, reason=MISSING or "")]


@pytest.fixture(scope="session")
def example_site() -> Iterator[ExampleSite]:
    site = ExampleSite(USERS)
    try:
        site.start()
        yield site
    finally:
        site.stop()


@pytest.fixture(scope="session")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(params=[True, False], ids=["js", "nojs"])
def js(request) -> bool:
    """Each flow runs twice: with JavaScript, and in a browser context with JavaScript turned off."""
    return request.param


@pytest.fixture
def page(chromium, example_site, js):
    context = chromium.new_context(base_url=example_site.base, java_script_enabled=js, viewport=VIEWPORT,
                                   locale="en-US")
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


class Screenshots:
    """Numbered full-page screenshots ``<prefix>-<nn>-<what>.png`` in test-artifacts/screenshots/."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.count = 0
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for old in SCREENSHOTS.glob(f"{prefix}-*.png"):  # of an earlier run, maybe with other steps
            old.unlink(missing_ok=True)

    def __call__(self, page, what: str) -> Path:
        self.count += 1
        path = SCREENSHOTS / f"{self.prefix}-{self.count:02d}-{what}.png"
        page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def shot(request, js) -> Screenshots:
    """``shot(page, "what")``; the prefix is the test's name without ``test_``, and js or nojs."""
    name = re.sub(r"^test_", "", request.node.originalname)
    return Screenshots(f"{name}-{'js' if js else 'nojs'}")
