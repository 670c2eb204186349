"""``workers demo``."""

from __future__ import annotations

import click

from workers.cli.base import main
from workers.cli.params import Number


@main.command()
@click.option("--duration", type=Number(float, 1, 1_000_000), default=60.0, show_default=True,
              help="Seconds to produce events for.")  # fmt: skip
@click.option("--rate", type=Number(float, 1, 20_000), default=200.0, show_default=True,
              help="Events per second.")  # fmt: skip
@click.option("--keep", is_flag=True, help="Leave the services up and print how to reach them.")
@click.option("--seed", type=Number(int, -(2**63), 2**63 - 1), default=None,
              help="Seed of the event stream (repeatable runs).")  # fmt: skip
def demo(duration: float, rate: float, keep: bool, seed: int | None) -> None:
    """Run the alarm pipeline on a local Redis and an embedded Kafka-protocol broker: start
    them, a Celery worker and beat, produce realistic alarm events, show live progress and
    end with a reconciled summary. Needs redis-server and the [demo] extra.

    Exit code 0 when the summary reconciles, 1 when it does not, 3 when a service it needs is
    missing or did not start (redis-server, the broker, a Celery worker), 130 on Ctrl-C."""
    from workers.demo.run import run_demo

    raise SystemExit(run_demo(duration=duration, rate=rate, keep=keep, seed=seed))
