"""Names for what the public API takes: an action, a secret, a user.

A leaf module: it imports no model at run time, so any module (and a project's type hints) can use it before
Django's app registry is ready.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

if TYPE_CHECKING:
    from deferred_confirmation.django_integration.models import DeferredAction

__all__ = ["ActionRef", "Amounts", "Secret", "SecretInput", "User"]

ActionRef: TypeAlias = "DeferredAction | uuid.UUID | str"
"""An action, as callers hold one: the row, its id, or the id's text (from a URL or a task message)."""

Secret: TypeAlias = str
"""A secret as it travels: a link token or a typed code.  Only its keyed digest is ever stored."""

Amounts: TypeAlias = "tuple[int, int] | Sequence[int | str]"
"""Two micro-deposit amounts, in cents (``(32, 45)``) or as typed (``("0.32", "0.45")``), in any order."""

SecretInput: TypeAlias = "Secret | Amounts"
"""What a person gives back to confirm: a secret, or micro-deposit amounts (also as text: ``"0.32, 0.45"``)."""


class User(Protocol):
    """A user as the lifecycle needs one: ``settings.AUTH_USER_MODEL``'s instance, or an anonymous user
    (whose ``pk`` is None)."""

    @property
    def pk(self) -> Any: ...
