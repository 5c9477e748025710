"""One JSON object per log line, with the ``extra`` fields of the lifecycle's records as keys.

The lifecycle (logger ``deferred_confirmation.lifecycle``) logs one line per step with ``extra`` fields:
``event``, ``outcome``, ``action_id``, ``channel``, ``from_state``, ``to_state``, ``duration_ms`` and a few
step-specific ones (``status``, ``reason``, ``delivery_id``, ``generation``, ``count``).  This formatter
renders them, with the time, level, logger and message, as one JSON object::

    {"time": "2025-01-01T12:00:00.123+00:00", "level": "INFO", "logger": "deferred_confirmation.lifecycle",
     "message": "confirm accepted (confirmed) action=… channel=email notified->confirmed", "event": "confirm",
     "outcome": "accepted", "status": "confirmed", "action_id": "…", "channel": "email",
     "from_state": "notified", "to_state": "confirmed", "duration_ms": 7}

In settings::

    LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "deferred_confirmation.pipeline.logformat.JsonFormatter"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
        "loggers": {"deferred_confirmation": {"handlers": ["console"], "level": "INFO"}},
    }

Every other logger's records come out as the same JSON object, with their message but without their extra
fields: those are other libraries' (Celery puts a task's arguments in ``data``; Django a ``request`` whose
path can be a link token), so they are rendered only when named: ``{"()":
"deferred_confirmation.pipeline.logformat.JsonFormatter", "fields": ["status_code"]}``.  The library's own loggers
(``deferred_confirmation.*``, whose extras never hold a secret or a full recipient) have all theirs rendered;
``trusted=[...]`` names other such logger prefixes. Values that are not plain data (str, numbers, bools, None, lists and
dicts of those) are never rendered.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

#: Attributes every LogRecord has: not extra fields.
STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
PLAIN = (str, int, float, bool, type(None))


class JsonFormatter(logging.Formatter):
    def __init__(self, *args: Any, fields: Iterable[str] = (), trusted: Iterable[str] = ("deferred_confirmation",),
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields = frozenset(fields)
        self.trusted = tuple(trusted)

    def _trusted(self, name: str) -> bool:
        return any(name == prefix or name.startswith(prefix + ".") for prefix in self.trusted)

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        trusted = self._trusted(record.name)
        for key, value in vars(record).items():
            if key in STANDARD_ATTRIBUTES or key.startswith("_") or key in data:
                continue
            if not trusted and key not in self.fields:
                continue
            plain = _plain(value)
            if plain is not _SKIP:
                data[key] = plain
        if record.exc_info:
            data["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exc_info"] = record.exc_text
        if record.stack_info:
            data["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


_SKIP = object()


def _plain(value: Any) -> Any:
    """``value`` if JSON can hold it as is (str subclasses such as enums become str), else _SKIP."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, PLAIN):
        return value
    if isinstance(value, list | tuple):
        items = [_plain(item) for item in value]
        return _SKIP if any(item is _SKIP for item in items) else items
    if isinstance(value, dict):
        items = {str(key): _plain(item) for key, item in value.items()}
        return _SKIP if any(item is _SKIP for item in items.values()) else items
    return _SKIP
