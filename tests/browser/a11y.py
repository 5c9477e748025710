"""Accessibility checks of a page as the browser rendered it (they work with JavaScript off too: Playwright
evaluates in its own world).

- the page has a language, a title and one h1;
- every form control has a ``<label for>`` naming its id, with text;
- every ``aria-describedby`` points at elements that exist;
- every error message is announced (it is, or sits in, a ``role=alert``) and associated with its field (a
  control's ``aria-describedby`` names it, or it sits next to the control, in the same parent);
- focus: on the first field of a form, or, after errors, on the first field in error (or on an error).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

SNAPSHOT_JS = """() => {
  const text = el => (el.textContent || '').replace(/\\s+/g, ' ').trim();
  const main = document.querySelector('main') || document.body;
  const controls = [...main.querySelectorAll('input, select, textarea')].filter(el => el.type !== 'hidden');
  const errors = [...main.querySelectorAll('.error, .errorlist')].filter(el => !el.parentElement.closest('.error'));
  const idOf = el => el ? (el.id || (el.closest('[id]') || {}).id || '') : '';
  const active = document.activeElement;
  return {
    lang: document.documentElement.lang,
    title: document.title.trim(),
    h1: [...document.querySelectorAll('h1')].map(text),
    active: active && active !== document.body ? {tag: active.tagName.toLowerCase(), id: active.id,
                                                  text: text(active).slice(0, 80)} : null,
    controls: controls.map(el => ({
      id: el.id, name: el.name, tag: el.tagName.toLowerCase(), type: el.type || '',
      labels: el.id ? [...document.querySelectorAll('label')].filter(l => l.htmlFor === el.id).map(text) : [],
      describedby: (el.getAttribute('aria-describedby') || '').split(/\\s+/).filter(Boolean),
      invalid: el.getAttribute('aria-invalid') === 'true',
      autofocus: el.hasAttribute('autofocus'),
    })),
    missing_ids: [...main.querySelectorAll('[aria-describedby]')].flatMap(
      el => el.getAttribute('aria-describedby').split(/\\s+/).filter(id => id && !document.getElementById(id))),
    errors: errors.map(el => ({
      id: el.id, container: idOf(el.closest('[role=alert]')), text: text(el),
      alert: !!el.closest('[role=alert]'),
      beside: controls.filter(c => c.parentElement === el.parentElement).map(c => c.id),
    })),
  };
}"""


@dataclass
class Snapshot:
    raw: dict

    @property
    def controls(self) -> list[dict]:
        return self.raw["controls"]

    @property
    def errors(self) -> list[dict]:
        return self.raw["errors"]

    @property
    def active_id(self) -> str | None:
        active = self.raw["active"]
        return active["id"] if active else None

    def described_by(self, error: dict) -> list[str]:
        """The ids of the controls whose aria-describedby names this error (or the alert it sits in)."""
        ids = {error["id"], error["container"]} - {""}
        return [c["id"] for c in self.controls if ids & set(c["describedby"])]


def check_page(page, *, focus: bool = True, expect_errors: bool | None = None, wait: float = 3.0) -> Snapshot:
    """Run the checks of the module docstring on ``page``; AssertionError naming every problem found.

    The browser moves the focus to an autofocus element a moment after the page loads: the checks are run
    again for up to ``wait`` seconds while they fail."""
    deadline = time.monotonic() + wait
    while True:
        snap, problems = _problems(page, focus, expect_errors)
        if not problems or time.monotonic() > deadline:
            break
        page.wait_for_timeout(100)
    assert not problems, f"accessibility problems on {page.url}:\n- " + "\n- ".join(problems)
    return snap


def _problems(page, focus: bool, expect_errors: bool | None) -> tuple[Snapshot, list[str]]:
    snap = Snapshot(page.evaluate(SNAPSHOT_JS))
    raw = snap.raw
    problems = []
    if not raw["lang"]:
        problems.append("<html> has no lang")
    if not raw["title"]:
        problems.append("no <title>")
    if len(raw["h1"]) != 1:
        problems.append(f"{len(raw['h1'])} h1 elements, not 1")
    for control in snap.controls:
        if not control["id"]:
            problems.append(f"the control {control['name']!r} has no id for a label to name")
        elif not any(label.strip() for label in control["labels"]):
            problems.append(f"the control #{control['id']} has no <label for> with text")
    if raw["missing_ids"]:
        problems.append(f"aria-describedby names elements that do not exist: {raw['missing_ids']}")
    for error in snap.errors:
        if not error["alert"]:
            problems.append(f"the error {error['text']!r} is not announced (no role=alert)")
        if not snap.described_by(error) and not error["beside"]:
            problems.append(f"the error {error['text']!r} is neither named by a field's aria-describedby nor "
                            f"next to a field")
    if expect_errors is not None and bool(snap.errors) != expect_errors:
        problems.append(f"expected {'errors' if expect_errors else 'no errors'}, found {snap.errors}")
    if focus and snap.controls:
        if snap.errors:
            in_error = [c["id"] for c in snap.controls if c["invalid"]] or [
                c for error in snap.errors for c in snap.described_by(error) + error["beside"]]
            allowed = {in_error[0]} if in_error else set()
            allowed |= {e["id"] for e in snap.errors} | {e["container"] for e in snap.errors}
            allowed -= {""}
        else:
            allowed = {snap.controls[0]["id"]}
        if snap.active_id not in allowed:
            problems.append(f"focus is on {raw['active']}, not on {sorted(allowed)}")
    return snap, problems
