"""Identifier formats: the only gate between a caller's text and a Graph URL path or a Table key.

Nothing a caller sends reaches a URL path unless it passed one of these checks. They are deliberately
strict: a service principal id is a GUID; job and rule ids are opaque (``AD2AADProvisioning.fc96…``,
``33f7…#V2``) but of a known safe charset; subject ids may be GUIDs, distinguished names or worker ids,
so they only exclude control characters and bound the length.
"""

from __future__ import annotations

import re

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,255}")
_RULE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._#-]{0,255}")
_TARGET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_REQUEST_ID = re.compile(r"[0-9a-f]{32}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

MAX_OBJECT_ID_LENGTH = 1024


def is_guid(text: str) -> bool:
    """A GUID in its usual 8-4-4-4-12 form."""
    return _GUID.fullmatch(text) is not None


def is_job_id(text: str) -> bool:
    """A synchronization job id: opaque, not a GUID, but letters, digits, '.', '_' and '-' only."""
    return _JOB_ID.fullmatch(text) is not None


def is_rule_id(text: str) -> bool:
    """A synchronization rule id; ``#`` is allowed because Graph's own examples end in ``#V2``."""
    return _RULE_ID.fullmatch(text) is not None


def is_target_name(text: str) -> bool:
    """The name of a configured target in ``PROVISIONING_TARGETS``."""
    return _TARGET_NAME.fullmatch(text) is not None


def is_object_id(text: str) -> bool:
    """A subject id (GUID, DN or worker id): non-blank, bounded, no control characters."""
    return 0 < len(text) <= MAX_OBJECT_ID_LENGTH and text.strip() == text and not _CONTROL.search(text)


def is_request_id(text: str) -> bool:
    """A request id as this app issues them (32 lowercase hex digits: the UUIDv7 layout without dashes)."""
    return _REQUEST_ID.fullmatch(text) is not None
