"""Metadata stores: where jobs, their logs and operations live (SQLite or PostgreSQL)."""
