"""Helpers and fixtures the tests under tests/ share (imported by name; not tests themselves)."""
