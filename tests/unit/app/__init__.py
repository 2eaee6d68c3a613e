"""Unit tests of the app (shared/, function_app.py): no I/O."""
