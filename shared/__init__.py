"""The provisioning app's logic, one folder per layer (imports only point down; see docs/architecture.md).

``triggers/`` (HTTP, queue, timer bindings) > ``runtime.py`` (the composition root) > ``usecases/`` (intake,
worker, sweeper, retention, rule discovery: over the ports) | ``adapters/`` (Table, Queue, Blob, Graph: the
only I/O) > ``settings.py``, ``telemetry.py`` > ``contract/`` (what callers send and read) > ``core/`` (pure
domain logic and ``ports.py``, the Protocols the adapters implement). Enforced by import-linter.
"""
