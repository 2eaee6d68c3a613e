"""Use cases: intake, worker, sweeper, retention, rule discovery (orchestration over adapters passed in)."""
