"""The ``workers`` command for operators: check, topics, offsets, lag, produce, dlq, demo,
exporter.

Each subcommand lives in a module of this package and registers itself on ``main``; the
work itself is in ``workers.ops`` (and ``workers.demo``), so it can be tested without click.
"""

from workers.cli import demo, exporter, inspect, offsets, records, reset  # noqa: F401 - register them
from workers.cli.base import main

__all__ = ["main"]
