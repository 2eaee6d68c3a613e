"""The messages of ``provisioning-work`` (internal): a pointer to one Graph call, or a wake for a dispatcher."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from shared.core import ids

MAX_VISIBILITY_DELAY_SECONDS = 7 * 24 * 3600 - 60


@dataclass(frozen=True)
class WorkItem:
    """Which call to make: a pointer into the ledger, never the call itself."""

    request_id: str
    call_id: str

    def to_json(self) -> str:
        """The message body."""
        return json.dumps({"requestId": self.request_id, "callId": self.call_id}, separators=(",", ":"))

    @classmethod
    def from_json(cls, body: bytes | str) -> WorkItem:
        """Parse a message body; raises ValueError when it is not one of ours."""
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError("work item must be a JSON object")
        request_id, call_id = data.get("requestId"), data.get("callId")
        if not isinstance(request_id, str) or not ids.is_request_id(request_id):
            raise ValueError("work item has no valid requestId")
        if not isinstance(call_id, str) or not (call_id.startswith("call-") and call_id[5:].isdigit()):
            raise ValueError("work item has no valid callId")
        return cls(request_id, call_id)


#: A scope as the dispatcher names it: the tenant's, or one job's (``shared.core.pacing.scope_key``).
_SCOPE = re.compile(r"tenant|job-[0-9a-f]{40}")


@dataclass(frozen=True)
class Wake:
    """A nudge for a scope's dispatcher, sent delayed on the work queue to arrive when the next window's places
    are about to begin: a pump then hands them out just in time (``shared.usecases.dispatcher``)."""

    scope: str

    def to_json(self) -> str:
        """The message body."""
        return json.dumps({"wake": self.scope}, separators=(",", ":"))


def work_message(body: bytes | str) -> WorkItem | Wake:
    """Parse a ``provisioning-work`` message: a work item or a wake; raises ValueError when it is neither."""
    data = json.loads(body)
    if isinstance(data, dict) and set(data) == {"wake"}:
        scope = data["wake"]
        if not isinstance(scope, str) or not _SCOPE.fullmatch(scope):
            raise ValueError("wake names no valid scope")
        return Wake(scope)
    return WorkItem.from_json(body)
