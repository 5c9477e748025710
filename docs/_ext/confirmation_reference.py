"""Reference tables generated from the library's own declarations, so the manual cannot drift from the code.

Directives (MyST: ```` ```{settings-reference} ````):

- ``settings-reference``: every key of ``DEFERRED_CONFIRMATION`` (``deferred_confirmation.pipeline.conf.SETTINGS``);
- ``channel-settings-reference``: every key of one channel in ``CHANNELS`` (``...conf.CHANNEL_SETTINGS``);
- ``checks-reference``: every system check id (``deferred_confirmation.django_integration.check_ids.CHECKS``).

Roles: ``{setting}`SITE_URL``` links to a setting's row (a channel key works too: ``{setting}`EXPIRES```),
``{check}`E004``` (or ``confirmation.E004``) to a check's row. A name that is not declared is a build warning,
and ``make docs`` turns warnings into errors: a renamed setting breaks the manual's build, not its reader.

Each declaration needs ``.name``, ``.default`` and ``.doc`` (settings; ``.kind``, the type, is shown if present)
or ``.id``, ``.level`` and ``.meaning`` (checks); ``.doc`` and ``.meaning`` are parsed as Markdown (inline).
"""

from __future__ import annotations

import datetime
import importlib
from collections.abc import Iterable
from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective, SphinxRole

logger = logging.getLogger(__name__)

CONF_MODULE = "deferred_confirmation.pipeline.conf"
CHECKS_MODULE = "deferred_confirmation.django_integration.check_ids"


def _declared(module: str, attribute: str) -> list[Any]:
    return list(getattr(importlib.import_module(module), attribute))


def _note_declarations(env: Any) -> None:
    """Rebuild a page that shows or links the declarations whenever their modules change (Sphinx re-reads
    only changed pages otherwise, and a table or link would go stale in an incremental build)."""
    for module in (CONF_MODULE, CHECKS_MODULE):
        env.note_dependency(importlib.import_module(module).__file__)


def settings() -> list[Any]:
    return _declared(CONF_MODULE, "SETTINGS")


def channel_settings() -> list[Any]:
    return _declared(CONF_MODULE, "CHANNEL_SETTINGS")


def checks() -> list[Any]:
    return _declared(CHECKS_MODULE, "CHECKS")


def _duration(value: datetime.timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds and seconds % size == 0:
            return f"timedelta({unit}={seconds // size})"
    return f"timedelta(seconds={seconds})"


def format_default(value: Any) -> str:
    """The default as a person would write it in settings.py."""
    if isinstance(value, datetime.timedelta):
        return _duration(value)
    if isinstance(value, str) and value.startswith(("per channel", "the built-in", "required")):
        return value  # a default described in words (it depends on the channel)
    return repr(value)


def setting_anchor(name: str) -> str:
    return "setting-" + name.lower().replace("_", "-")


def check_anchor(check_id: str) -> str:
    return "check-" + check_id.rsplit(".", 1)[-1].lower()


class _TableDirective(SphinxDirective):
    has_content = False
    header: tuple[str, ...] = ()
    widths: tuple[int, ...] = ()

    def rows(self) -> Iterable[tuple[str, list[nodes.Node]]]:
        raise NotImplementedError

    def _inline(self, text: str) -> list[nodes.Node]:
        """Parse ``text`` (Markdown in a .md page) as one paragraph, so backticks and links render."""
        container = nodes.Element()
        self.state.nested_parse(self._lines([text]), self.content_offset, container)
        return list(container.children)

    @staticmethod
    def _lines(lines: list[str]):
        from docutils.statemachine import StringList

        return StringList(lines, source="confirmation_reference")

    def run(self) -> list[nodes.Node]:
        self.env.note_dependency(__file__)
        _note_declarations(self.env)
        table = nodes.table(classes=["confirmation-reference"])
        group = nodes.tgroup(cols=len(self.header))
        table += group
        for width in self.widths:
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        group += head
        row = nodes.row()
        for title in self.header:
            row += nodes.entry("", nodes.paragraph(text=title))
        head += row
        body = nodes.tbody()
        group += body
        std = self.env.get_domain("std")
        for anchor, cells in self.rows():
            row = nodes.row(ids=[anchor])
            # A label per row, so the roles below (and {ref}) resolve to it from any page.
            std.note_hyperlink_target(anchor, self.env.docname, anchor, anchor)
            for cell in cells:
                entry = nodes.entry()
                entry.extend(cell if isinstance(cell, list) else [cell])
                row += entry
            body += row
        return [table]


def _code(text: str) -> nodes.Node:
    return nodes.paragraph("", "", nodes.literal(text=text))


class SettingsReference(_TableDirective):
    header = ("key", "type", "default", "meaning")
    widths = (20, 12, 20, 48)

    def declarations(self) -> list[Any]:
        return settings()

    def cells(self, item: Any) -> list:
        kind = getattr(item, "kind", "")  # optional in a declaration: what kind of value the key takes
        meaning = self._inline(item.doc)
        check = getattr(item, "check", None)  # optional: the check id a wrong value is reported as
        if getattr(check, "id", None):
            ref = addnodes.pending_xref("", nodes.literal(text=check.id), refdomain="std", reftype="ref",
                                        reftarget=check_anchor(check.id), refexplicit=True, refwarn=True,
                                        refdoc=self.env.docname)
            meaning.append(nodes.paragraph("", "A wrong value: ", ref, nodes.Text(".")))
        return [_code(item.name), nodes.paragraph(text=kind), _code(format_default(item.default)), meaning]

    def rows(self):
        for item in self.declarations():
            yield setting_anchor(item.name), self.cells(item)


class ChannelSettingsReference(SettingsReference):
    def declarations(self) -> list[Any]:
        return channel_settings()

    def rows(self):
        for item in self.declarations():
            yield setting_anchor("channel-" + item.name), self.cells(item)


class ChecksReference(_TableDirective):
    header = ("id", "level", "meaning")
    widths = (22, 10, 68)

    def rows(self):
        for item in checks():
            yield check_anchor(item.id), [_code(item.id), nodes.paragraph(text=item.level), self._inline(item.meaning)]


class _ReferenceRole(SphinxRole):

    def target(self) -> str | None:
        """The label of the row this role points at, or None if the name is not declared."""
        raise NotImplementedError

    def run(self):
        _note_declarations(self.env)
        found = self.target()
        literal = nodes.literal(text=self.text)
        if found is None:
            logger.warning("%s %r is not declared in the library", self.name, self.text, location=self.get_location())
            return [literal], []
        ref = addnodes.pending_xref("", literal, refdomain="std", reftype="ref", reftarget=found,
                                    refexplicit=True, refwarn=True, refdoc=self.env.docname)
        return [ref], []


class SettingRole(_ReferenceRole):
    def target(self):
        name = self.text.strip()
        if name in {item.name for item in settings()}:
            return setting_anchor(name)
        if name in {item.name for item in channel_settings()}:
            return setting_anchor("channel-" + name)
        return None


class CheckRole(_ReferenceRole):
    def target(self):
        wanted = self.text.strip()
        for item in checks():
            if wanted in (item.id, item.id.rsplit(".", 1)[-1]):
                return check_anchor(item.id)
        return None


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("settings-reference", SettingsReference)
    app.add_directive("channel-settings-reference", ChannelSettingsReference)
    app.add_directive("checks-reference", ChecksReference)
    app.add_role("setting", SettingRole())
    app.add_role("check", CheckRole())
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
