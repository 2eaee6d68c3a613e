"""The names the contract and the host bindings share: table, row, queue names (pure)."""

from __future__ import annotations

#: The ledger table (one partition per request).
TABLE_NAME = "ProvisioningRequests"
#: The RowKey of a request's own row in its partition.
REQUEST_ROW = "request"
#: One message per Graph call.
WORK_QUEUE = "provisioning-work"
#: Requests sent as queue messages.
REQUESTS_QUEUE = "provisioning-requests"
#: Where the host moves request messages it gave up on.
REQUESTS_POISON_QUEUE = f"{REQUESTS_QUEUE}-poison"
#: Where the host moves work items it gave up on.
WORK_POISON_QUEUE = f"{WORK_QUEUE}-poison"
