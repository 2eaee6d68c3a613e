"""Unit tests of the local Functions host stand-in (devhost/)."""
