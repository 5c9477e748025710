"""A six-digit code by text message through the (fictional) Acme Messaging API.

OPTIONS: ``API_KEY`` (required), ``URL`` (default https://api.acme.example), ``TIMEOUT`` (seconds, default 10).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import requests

from deferred_confirmation.pipeline import tokens
from deferred_confirmation.pipeline.channels import BaseChannel
from deferred_confirmation.pipeline.exceptions import (
    ChannelConfigurationError,
    PermanentChannelError,
    TransientChannelError,
)

if TYPE_CHECKING:
    from deferred_confirmation.django_integration.models import DeferredAction, Delivery

DEFAULT_URL = "https://api.acme.example"
CODE_LENGTH = 6


class AcmeChannel(BaseChannel):
    secret_kind = "code"  # typed back on the code page, attempt-limited by MAX_ATTEMPTS

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> list[str]:
        problems = []
        if not options.get("API_KEY"):
            problems.append("OPTIONS['API_KEY'] is required.")
        timeout = options.get("TIMEOUT", 10)
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
            problems.append("OPTIONS['TIMEOUT'] must be a positive number of seconds.")
        return problems

    def make_secret(self) -> str:
        return tokens.make_code(CODE_LENGTH)

    def normalize(self, raw: object) -> str | None:
        if not isinstance(raw, str) or len(raw) > 32:
            return None
        code = "".join(raw.split()).replace("-", "")
        return code if len(code) == CODE_LENGTH and code.isascii() and code.isdigit() else None

    def send(self, *, delivery: Delivery, action: DeferredAction, secret: str) -> str:
        api_key = self.options.get("API_KEY")
        if not api_key:
            raise ChannelConfigurationError(f"CHANNELS[{self.name!r}] OPTIONS['API_KEY'] is not set.")
        text = f"{secret} is your code to confirm: {action.description}"
        try:
            response = requests.post(
                self.options.get("URL", DEFAULT_URL).rstrip("/") + "/v1/messages",
                json={"to": delivery.recipient_value, "text": text},
                headers={"Authorization": f"Bearer {api_key}",
                         # the same key for every try of this secret: a retry never texts it twice
                         "Idempotency-Key": delivery.idempotency_key},
                timeout=self.options.get("TIMEOUT", 10),
            )
        except requests.RequestException as exc:
            raise TransientChannelError(f"Acme unreachable: {type(exc).__name__}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientChannelError(f"HTTP {response.status_code} from Acme", code=str(response.status_code))
        if response.status_code >= 400:
            error = response.json().get("error", "refused")  # may name the number: masked before it is stored
            raise PermanentChannelError(f"Acme refused: {error}", code=str(response.status_code))
        return response.json()["id"]
