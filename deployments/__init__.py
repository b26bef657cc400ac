"""Server-side set-up for prefect-backfill deployments (see prefect.yaml)."""
