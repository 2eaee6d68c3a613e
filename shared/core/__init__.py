"""Pure domain logic: models, ids, fan-out, outcomes, status aggregation, retry, pacing, rules; no I/O."""
