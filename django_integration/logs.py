"""Keep link tokens out of Django's own request logs.

Django logs the path of every 4xx/5xx response (``django.request``) and of every CSRF refusal
(``django.security.csrf``).  On the link view the path *is* the secret: a person whose browser blocks
cookies fails the CSRF check with a live token, and logs are kept far longer than a token lives.  This
filter cuts the token out of those records (docs/concepts.md#secrets: the raw secret never appears in logs).
"""

from __future__ import annotations

import logging

REDACTED = "<token>"
LOGGERS = ("django.request", "django.security.csrf")


class RedactLinkTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        match = getattr(request, "resolver_match", None)
        is_link = match is not None and match.url_name == "link" and "confirmation" in match.app_names
        token = match.kwargs.get("token") if is_link else None
        if not token or not isinstance(token, str):
            return True
        escaped = token.encode("unicode_escape").decode("ascii")  # how django.utils.log.log_response passes it
        if isinstance(record.args, tuple):
            record.args = tuple(_redact(arg, token, escaped) for arg in record.args)
        record.msg = _redact(record.msg, token, escaped)
        record.request = None  # its path, META and repr all carry the token
        return True


def _redact(value: object, token: str, escaped: str) -> object:
    return value.replace(token, REDACTED).replace(escaped, REDACTED) if isinstance(value, str) else value


def install() -> None:
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactLinkTokens) for f in logger.filters):
            logger.addFilter(RedactLinkTokens())
