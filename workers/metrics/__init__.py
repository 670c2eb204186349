"""Prometheus metrics: what the worker processes count (``workers.metrics.catalog`` names every
series the package exports), the worker's HTTP endpoint, and the lag exporter."""
