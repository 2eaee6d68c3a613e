"""Which caller events are the same request (pure): the event key and the request's fingerprint."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from shared.core.models import ProvisioningRequest


def event_key(event_id: str) -> str:
    """The PartitionKey of an event: a hash, since event ids may hold characters keys cannot (``/``, ``#``, ``?``)."""
    return hashlib.sha256(event_id.encode("utf-8")).hexdigest()


def fingerprint(request: ProvisioningRequest, target_key: str) -> str:
    """What makes two bodies "the same request": the validated, normalised content and the resolved target."""
    content: dict[str, Any] = request.model_dump(mode="json", by_alias=True, exclude={"event_id"})
    content["resolvedTarget"] = target_key
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
