"""Operator actions: list requests, retry, cancel, targets' health, poison messages (over ports only)."""
