"""The ``workers`` group: which Celery app to read settings from, and one-line errors.

Every failure ends in one line on stderr: exit code 2 for a bad argument, 1 for anything
else (a setting, a service); secrets the configuration holds never appear in it, nor in the
log lines ``-v`` shows. The exit codes are below (``EXIT_*``) and in the README.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click
import redis
from click.exceptions import NoArgsIsHelpError
from kafka.errors import KafkaError
from redis.exceptions import RedisClusterException

from workers import __version__
from workers.cli.params import AppPath, ModuleName, Number
from workers.config.masking import clip, mask_text, secrets_in, shown
from workers.exceptions import WorkersError
from workers.ops.context import Ops
from workers.ops.fmt import to_json

# The longest error line the command prints; each value in it is capped on its own already.
MAX_LINE = 1000

# Exit codes of every command (README: "Exit codes").
EXIT_OK = 0  # done; everything checked was fine
EXIT_FAILED = 1  # a problem found or a failure: settings, a service, a refused record, "no"
EXIT_USAGE = 2  # a bad argument (click's usage error)
EXIT_UNAVAILABLE = 3  # workers demo: a local service it needs is missing or did not start
EXIT_INTERRUPTED = 130  # workers demo: stopped by Ctrl-C or SIGTERM


@dataclass
class State:
    """What the group's options chose; the app and the clients are made on first use."""

    app_path: str
    config: str | None
    timeout: float
    _app: Any = None
    _ops: Ops | None = field(default=None, repr=False)
    # Every secret of the configuration and the environment: masked in errors and log lines.
    secrets: set[str] = field(default_factory=set, repr=False)

    def app(self) -> Any:
        if self._app is None:
            self._app = load_app(self.app_path, self.config)
            self.secrets |= secrets_in(self._app.conf, os.environ)
        return self._app

    def ops(self) -> Ops:
        if self._ops is None:
            self._ops = Ops.for_app(self.app(), self.timeout)
            click.get_current_context().call_on_close(self._ops.close)
        return self._ops


pass_state = click.make_pass_decorator(State)


def load_app(app_path: str, config: str | None) -> Any:
    """The Celery app ``module:attribute``, its configuration read now (Celery reads it
    lazily, so a broken config module would otherwise fail deep inside the first command).
    Any failure, even a module that raises SystemExit, is one ``ClickException``."""
    if config:  # as Celery's own --config does; also wins over a CELERY_CONFIG_MODULE set before
        os.environ["WORKERS_CELERY_CONFIG"] = os.environ["CELERY_CONFIG_MODULE"] = config
    if os.getcwd() not in sys.path:  # as `celery -A` does: the config lives here
        sys.path.insert(0, os.getcwd())
    module, _, attr = app_path.partition(":")
    where = f"the Celery app {app_path!r} (--app / WORKERS_APP, form module:attribute)"
    try:
        app = getattr(importlib.import_module(module), attr or "app")
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - whatever the module raises
        raise click.ClickException(f"cannot load {where}: {describe(exc)}") from exc
    if not hasattr(app, "conf") or not hasattr(app, "connection_for_write"):
        raise click.ClickException(
            f"cannot load {where}: {type(app).__name__!r} is not a Celery app"
        )
    source = getattr(app, "_config_source", None)
    name = source if isinstance(source, str) else config or app_path
    try:
        app.conf.get("broker_url")
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - whatever the module raises
        raise click.ClickException(
            f"cannot load the config module {clip(name)!r} (--config / CELERY_CONFIG_MODULE / "
            "WORKERS_CELERY_CONFIG): "
            f"{describe(exc)}"
        ) from exc
    return app


def describe(exc: BaseException) -> str:
    """``Type: message`` on one line (a SystemExit says which code it asked for)."""
    if isinstance(exc, SystemExit):
        return f"it called exit({shown(exc.code)}) on import"
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, WorkersError) else f"{type(exc).__name__}: {text}"


def _secrets(ctx: click.Context | None) -> set[str]:
    state = ctx.find_root().obj if ctx is not None else None
    return state.secrets if isinstance(state, State) else set()


def _clean(text: str, ctx: click.Context | None) -> str:
    """One line, secrets masked, at most ``MAX_LINE`` characters."""
    return clip(mask_text(" ".join(text.split()), _secrets(ctx)), MAX_LINE)


def error_text(exc: BaseException) -> str:
    """An error a command prints among its results (a pipeline it could not read): one line,
    secrets masked, capped."""
    return _clean(str(exc) or type(exc).__name__, click.get_current_context(silent=True))


class UsageLine(click.ClickException):
    """A bad argument, shown in one line (without click's usage banner); exit code 2."""

    exit_code = EXIT_USAGE


class Group(click.Group):
    """A group whose commands' known failures end in one line on stderr: exit code 1, or 2
    for a bad argument."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as exc:
            raise _usage_line(exc) from exc

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (WorkersError, KafkaError, redis.RedisError, RedisClusterException) as exc:
            raise click.ClickException(_clean(one_line(exc), ctx)) from exc
        except click.UsageError as exc:
            raise _usage_line(exc) from exc
        except UsageLine:
            raise
        except click.ClickException as exc:
            clean = _clean(exc.message, ctx)
            if clean == exc.message:
                raise
            raise (UsageLine if exc.exit_code == EXIT_USAGE else click.ClickException)(
                clean
            ) from exc


def _usage_line(exc: click.UsageError) -> click.ClickException:
    if isinstance(exc, NoArgsIsHelpError):  # `workers offsets`: the help is the answer
        return exc
    hint = f"; see '{exc.ctx.command_path} --help'" if exc.ctx is not None else ""
    return UsageLine(_clean(exc.format_message(), exc.ctx).rstrip(".") + hint)


class _Scrub(logging.Filter):
    """Masks URLs' passwords and the secrets of the running command in every log line."""

    secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - logging reports its own formatting errors
            return True
        record.msg, record.args = mask_text(message, self.secrets), ()
        if record.exc_info and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = mask_text(text, self.secrets)
        return True


# One filter for the process: a command run again in the same process (tests) replaces its
# secrets instead of stacking filters on the root handlers.
_SCRUB = _Scrub()


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]},
             invoke_without_command=True)  # fmt: skip
@click.version_option(__version__, prog_name="workers")
@click.option(
    "-A", "--app", "app_path", envvar="WORKERS_APP", show_envvar=True, default="workers.app:app",
    show_default=True, type=AppPath(),
    help="The Celery app whose configuration to use (module:attribute).",
)  # fmt: skip
@click.option(
    "--config", envvar=["CELERY_CONFIG_MODULE", "WORKERS_CELERY_CONFIG"], show_envvar=True,
    default=None, type=ModuleName(),
    help="Config module for the default app (default: celeryconfig), as Celery's --config.",
)  # fmt: skip
@click.option(
    "--timeout", type=Number(float, 0.5, 300), default=10.0, show_default=True,
    help="Seconds to wait for an unreachable or silent service before giving up.",
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
    the same settings the workers do. Commands that print data take --json.

    Exit codes: 0 done, 1 a problem or a failure (one line on stderr), 2 a bad argument,
    3 a service the demo needs is missing, 130 the demo was interrupted.
    """
    state = State(app_path, config, timeout, secrets=secrets_in({}, os.environ))
    # The command reports failures itself, in one line; client libraries' logs are noise
    # unless asked for.
    level = {0: logging.CRITICAL, 1: logging.WARNING}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    _SCRUB.secrets = state.secrets  # the same set: secrets found later are masked too
    for handler in logging.getLogger().handlers:
        if _SCRUB not in handler.filters:
            handler.addFilter(_SCRUB)
    # kafka-python logs its whole configuration, passwords included, at DEBUG: never below INFO.
    logging.getLogger("kafka").setLevel(max(level, logging.INFO))
    ctx.obj = state
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


def command_group(name: str, help_text: str) -> click.Group:
    """A sub-group of ``main`` with the same error handling."""

    @main.group(name, cls=Group, help=help_text)
    def group() -> None:
        pass

    return group


def json_option(what: str, more: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--json``: stdout holds one JSON document (``as_json``) and nothing else."""
    return click.option(
        "--json", "as_json", is_flag=True,
        help=f"Print {what} as one JSON document on stdout{more}; other output goes to stderr "
             "(keys: README, JSON output).",
    )  # fmt: skip


def echo_json(document: dict[str, Any], compact: bool = False) -> None:
    """One JSON document on stdout: indented, or on one line (``compact``, JSON Lines)."""
    click.echo(to_json(document, compact))
