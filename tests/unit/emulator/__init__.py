"""Unit tests of the Graph and managed-identity emulator (emulator/)."""
