"""Reporters: what the user (and the record) hears about a run's events."""
