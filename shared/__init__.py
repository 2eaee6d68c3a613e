"""The provisioning app's logic.

Pure modules (no I/O): ``ids``, ``models``, ``problems``, ``fanout``, ``outcome``, ``aggregate``, ``retry``.
Adapters (small, typed, the only places that do I/O): ``ledger`` (Table), ``work_queue`` (Queue),
``graph`` (Microsoft Graph through msgraph-beta-sdk). ``runtime`` wires them together lazily, once per
process; ``intake``, ``worker`` and ``http_api`` are the use cases that ``function_app.py`` calls.
"""
