"""The admin HTTP API: health, Prometheus metrics (and, later, shadow links)."""
