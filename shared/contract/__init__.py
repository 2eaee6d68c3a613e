"""What callers send and read (pure): parsing and validation, problems, CloudEvents, API models, OpenAPI, views."""
