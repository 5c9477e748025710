"""The four signals of the public API (docs/api.md#signals).

``sender`` is the model class the change is for; ``instance`` is the DeferredAction.
"""

from django.dispatch import Signal

# In the worker, once per delivery: instance.token holds the raw secret (memory only); kwargs: user, channel.
confirmation_required = Signal()
# After the change was applied and committed.
change_confirmed = Signal()
# After the action ended as failed (re-validation failed, target gone, every delivery failed); kwargs: reason.
confirmation_failed = Signal()
# After an open action passed its valid_until and was marked expired.
action_expired = Signal()
