"""Executors: turn replica plans into running processes (locally, later on Ray)."""
