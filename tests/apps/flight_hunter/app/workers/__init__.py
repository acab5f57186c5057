"""Scheduled jobs, each run as ``python -m app.workers.<name>``."""
