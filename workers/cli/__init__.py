"""The ``workers`` command for operators: check, topics, offsets, lag, produce, dlq, demo.

Each subcommand lives in a module of this package and registers itself on ``main``; the
work itself is in ``workers.ops`` (and ``workers.demo``), so it can be tested without click.
"""

from workers.cli import demo, inspect, offsets, records  # noqa: F401 - register the commands
from workers.cli.base import main

__all__ = ["main"]
