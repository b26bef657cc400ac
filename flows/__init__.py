"""Prefect flows of prefect-backfill. They wire the pieces and hold no business logic."""
