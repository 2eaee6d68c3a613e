"""The latest moment a paced Graph call may still go out: set by the worker, enforced by the Graph adapter (pure).

A call's rate-limit slot is only good if the request leaves within the allowed lateness after it (see
:func:`shared.core.pacing.lateness_for`). The worker checks that before it calls the adapter, but between that
check and the bytes going out lie the token, the SDK's request building and middleware, and, on a busy
instance, every other task of the event loop. A request that leaves later than its slot allows lands closer
to its neighbours than the limiter spaced them, and Graph answers 429 (measured: dozens of self-caused 429s
in a 20,000-call drain at a compressed limit). So the worker sets :data:`SEND_BY` around the call, and the
adapter's transport refuses to send past it, raising :class:`SlotMissed`: the call is put back for a fresh
slot, its attempt not spent, and Graph never saw it.
"""

from __future__ import annotations

from contextvars import ContextVar

#: Epoch seconds after which the current task's Graph request must not be sent (None: no deadline).
SEND_BY: ContextVar[float | None] = ContextVar("send_by", default=None)
#: The ``GraphFailure.code`` of a request refused at the send deadline (nothing was sent).
SLOT_MISSED = "SlotMissed"


class SlotMissed(Exception):
    """The request would have left after its slot's allowed lateness; it was not sent."""
