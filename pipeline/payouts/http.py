"""A payout backend for a JSON payouts API in the style of Stripe or Dwolla.

Configuration (the micro-deposit channel's OPTIONS)::

    "microdeposit": {"OPTIONS": {
        "PAYOUT_BACKEND": "deferred_confirmation.pipeline.payouts.http.HTTPPayoutBackend",
        "URL": "https://payouts.example.com/v1",   # base URL, required
        "API_KEY": "sk_live_...",                   # sent as "Authorization: Bearer <API_KEY>"
        "TIMEOUT": 10,                              # seconds, per request (default 10)
        "CURRENCY": "USD",
    }}

The protocol:

- ``POST {URL}/payouts`` with JSON ``{"account": {...}, "amounts": [32, 45], "currency": "USD"}`` (amounts in
  cents) and an ``Idempotency-Key`` header (one per delivery generation, so a retry is answered with the payout
  made the first time, never a second one); answers 200/201 with ``{"id": "...", "status": "..."}``.
- ``GET {URL}/payouts/{id}`` answers ``{"id": ..., "status": ...}``.
- Errors: 4xx other than 429 are refusals (:class:`PermanentChannelError` carrying the API's message, read from
  ``{"error": {"message": ...}}``, ``{"error": "..."}``, ``{"message": ...}`` or ``{"detail": ...}``); 429, 5xx,
  timeouts and connection errors are :class:`TransientChannelError` and the task retries with backoff.

Plugging in another provider
----------------------------
Subclass :class:`deferred_confirmation.pipeline.payouts.base.PayoutBackend` (or this class, if the provider speaks
roughly this protocol: override :meth:`HTTPPayoutBackend.payout_request` to shape the request and
:meth:`HTTPPayoutBackend.payout_id` to read the answer) and name it in ``OPTIONS["PAYOUT_BACKEND"]``;
every other key of OPTIONS is yours to read from ``self.options``.  The rules:

1. ``initiate`` must be idempotent on ``idempotency_key``: pass it to the provider as its idempotency key
   (Stripe: ``Idempotency-Key``, Dwolla: ``Idempotency-Key``, Adyen: ``Idempotency-Key``), or record it
   before calling a provider that has none.  The same key always comes with the same amounts.
2. Raise only :class:`TransientChannelError` (may work later) or :class:`PermanentChannelError` (will not);
   their message is stored on the delivery and shown to operators, so put the provider's reason in it, and
   never the amounts, the account number or the API key.
3. Return the provider's reference of the payout (stored on ``Delivery.provider_ref``, at most 255 characters).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from deferred_confirmation.pipeline.channels.base import (
    ChannelConfigurationError,
    PermanentChannelError,
    TransientChannelError,
)
from deferred_confirmation.pipeline.payouts.base import PayoutBackend, checked_account, checked_amounts

if TYPE_CHECKING:
    import requests

    from deferred_confirmation.django_integration.models import Delivery

DEFAULT_TIMEOUT = 10.0
MAX_REASON = 500


class HTTPPayoutBackend(PayoutBackend):
    """OPTIONS: ``URL`` (required), ``API_KEY``, ``TIMEOUT`` (seconds, default 10), ``CURRENCY``."""

    def __init__(self, options: dict[str, Any] | None = None):
        super().__init__(options)
        url = self.options.get("URL")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ChannelConfigurationError("HTTPPayoutBackend needs OPTIONS['URL'], an http(s) URL")
        self.url = url.rstrip("/")
        self.api_key = self.options.get("API_KEY") or ""
        try:
            self.timeout = float(self.options.get("TIMEOUT", DEFAULT_TIMEOUT))
        except (TypeError, ValueError):
            raise ChannelConfigurationError("HTTPPayoutBackend OPTIONS['TIMEOUT'] must be a number of seconds"
                                            ) from None

    # --- the interface -------------------------------------------------------------------------------
    def initiate(self, account: dict[str, Any], amounts: tuple[int, int], idempotency_key: str, *,
                 delivery: Delivery | None = None) -> str:
        body = self.payout_request(checked_account(account), checked_amounts(amounts))
        data = self.call("POST", "/payouts", json=body, headers={"Idempotency-Key": idempotency_key})
        return self.payout_id(data)

    def status(self, provider_ref: str) -> str:
        data = self.call("GET", f"/payouts/{quote(str(provider_ref), safe='')}")
        status = data.get("status")
        return str(status) if status is not None else "unknown"

    # --- hooks for providers that differ a little -----------------------------------------------------
    def payout_request(self, account: dict[str, Any], amounts: tuple[int, int]) -> dict[str, Any]:
        return {"account": account, "amounts": list(amounts), "currency": self.currency}

    def payout_id(self, data: dict[str, Any]) -> str:
        payout_id = data.get("id")
        if not isinstance(payout_id, str | int) or isinstance(payout_id, bool) or not str(payout_id):
            # Sent again with the same idempotency key, the answer would be the same: not worth retrying.
            raise PermanentChannelError("payout API accepted the payout but answered without an id", code="no-id")
        return str(payout_id)[:255]

    # --- the HTTP call ---------------------------------------------------------------------------------
    def call(self, method: str, path: str, *, json: Any = None, headers: dict[str, str] | None = None
             ) -> dict[str, Any]:
        """One request; the JSON object answered, or a channel error."""
        import requests

        all_headers = {"Accept": "application/json", **(headers or {})}
        if self.api_key:
            all_headers["Authorization"] = f"Bearer {self.api_key}"
        try:
            response = requests.request(method, self.url + path, json=json, headers=all_headers,
                                        timeout=self.timeout, allow_redirects=False)
        except requests.Timeout as exc:
            raise TransientChannelError(f"payout API did not answer within {self.timeout:g} s",
                                        code="timeout") from exc
        except requests.ConnectionError as exc:
            raise TransientChannelError(f"payout API unreachable: {type(exc).__name__}", code="connection") from exc
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema) as exc:
            raise ChannelConfigurationError(f"payout API URL is not usable: {exc}") from exc
        except requests.RequestException as exc:  # a broken answer (chunked encoding, decoding): try again
            raise TransientChannelError(f"payout API request failed: {type(exc).__name__}") from exc
        status = response.status_code
        if status == 429 or status >= 500:
            raise TransientChannelError(f"payout API unavailable: {error_message(response)}", code=str(status))
        if status >= 300:  # 4xx: refused (bad account, bad credentials); 3xx: not an API we can talk to
            raise PermanentChannelError(f"payout refused by the API: {error_message(response)}",
                                        code=str(status))
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise TransientChannelError(f"payout API answered {status} without a JSON object", code=str(status))
        return data


def error_message(response: requests.Response) -> str:
    """The API's own explanation of an error, cleaned up for storage (NUL-free, bounded)."""
    message: Any = None
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            message = error.get("message") or error.get("code")
        elif isinstance(error, str):
            message = error
        message = message or data.get("message") or data.get("detail")
    if not message:
        message = (response.text or "").strip() or response.reason or "no reason given"
    return " ".join(str(message).replace("\x00", " ").split())[:MAX_REASON]
