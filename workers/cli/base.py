"""The ``workers`` group: which Celery app to read settings from, and one-line errors."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import click
import redis
from kafka.errors import KafkaError

from workers import __version__
from workers.exceptions import WorkersError
from workers.ops.context import Ops


@dataclass
class State:
    """What the group's options chose; the app and the clients are made on first use."""

    app_path: str
    config: str | None
    timeout: float
    _app: Any = None
    _ops: Ops | None = field(default=None, repr=False)

    def app(self) -> Any:
        if self._app is None:
            if self.config:
                os.environ["WORKERS_CELERY_CONFIG"] = self.config
            if os.getcwd() not in sys.path:  # as `celery -A` does: the config lives here
                sys.path.insert(0, os.getcwd())
            module, _, attr = self.app_path.partition(":")
            try:
                self._app = getattr(importlib.import_module(module), attr or "app")
            except (ImportError, AttributeError) as exc:
                raise click.ClickException(
                    f"cannot load the Celery app {self.app_path!r} "
                    f"(--app / WORKERS_APP, form module:attribute): {exc}"
                ) from exc
        return self._app

    def ops(self) -> Ops:
        if self._ops is None:
            self._ops = Ops.for_app(self.app(), self.timeout)
            click.get_current_context().call_on_close(self._ops.close)
        return self._ops


pass_state = click.make_pass_decorator(State)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, WorkersError) else f"{type(exc).__name__}: {text}"


class Group(click.Group):
    """A group whose commands' known failures end in one line on stderr and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (WorkersError, KafkaError, redis.RedisError) as exc:
            raise click.ClickException(one_line(exc)) from exc


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]},
             invoke_without_command=True)  # fmt: skip
@click.version_option(__version__, prog_name="workers")
@click.option(
    "-A", "--app", "app_path", envvar="WORKERS_APP", default="workers.app:app", show_default=True,
    help="The Celery app whose configuration to use (module:attribute).",
)  # fmt: skip
@click.option(
    "--config", envvar="WORKERS_CELERY_CONFIG", default=None,
    help="Config module for the default app (default: celeryconfig). Env: WORKERS_CELERY_CONFIG.",
)  # fmt: skip
@click.option(
    "--timeout", type=click.FloatRange(0.5, 300), default=10.0, show_default=True,
    help="Seconds to wait for an unreachable Kafka cluster before giving up.",
)  # fmt: skip
@click.option(
    "-v", "--verbose", count=True,
    help="Log warnings (-v) or debug output (-vv; kafka-python's stays at INFO).",
)  # fmt: skip
@click.pass_context
def main(
    ctx: click.Context, app_path: str, config: str | None, timeout: float, verbose: int
) -> None:
    """Move Kafka records into Celery alarm pipelines, and operate them.

    Settings come from the Celery app's configuration (see the README); every command reads
    the same settings the workers do.
    """
    # The command reports failures itself, in one line; client libraries' logs are noise
    # unless asked for.
    level = {0: logging.CRITICAL, 1: logging.WARNING}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # kafka-python logs its whole configuration, passwords included, at DEBUG: never below INFO.
    logging.getLogger("kafka").setLevel(max(level, logging.INFO))
    ctx.obj = State(app_path, config, timeout)
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


def command_group(name: str, help_text: str) -> click.Group:
    """A sub-group of ``main`` with the same error handling."""

    @main.group(name, cls=Group, help=help_text)
    def group() -> None:
        pass

    return group
