"""Triggers: HTTP, queue and timer bindings (parse, call one use case, render)."""
