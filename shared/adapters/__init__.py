"""Adapters: Table ledger, queues, limiter, pending and event indexes, blob log store, Graph (the only I/O)."""
