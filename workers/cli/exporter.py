"""``workers exporter``: every pipeline's lag over HTTP for Prometheus, with no worker running,
until SIGTERM or Ctrl-C. The metrics and how they are read are ``workers.metrics.lag``."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import click
from prometheus_client import CollectorRegistry, start_http_server

from workers.cli.base import State, main, pass_state
from workers.cli.params import Number, _Type
from workers.config.masking import shown
from workers.metrics.lag import LagCollector

logger = logging.getLogger(__name__)

DEFAULT_PORT = 9108


class Host(_Type):
    """A host name or IP address to listen on: no spaces, no URL, at most 253 characters."""

    name = "host"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = str(value)
        bad = not text or len(text) > 253 or not text.isprintable() or any(
            c.isspace() or c in "/@?#" for c in text
        )  # fmt: skip
        if bad:
            self.fail(f"{shown(value)} is not a host name or IP address (such as 0.0.0.0, "
                      "127.0.0.1, :: or a name)", param, ctx)  # fmt: skip
        return text


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/metrics" if ":" in host else f"http://{host}:{port}/metrics"


@main.command()
@click.option("--port", type=Number(int, 0, 65535), default=DEFAULT_PORT, show_default=True,
              help="TCP port to serve /metrics on (0: a free port, named in the log).")  # fmt: skip
@click.option("--host", type=Host(), default="0.0.0.0", show_default=True,
              help="Address to listen on: 0.0.0.0 every IPv4 interface, :: every IPv6 one, "
                   "127.0.0.1 this host only.")  # fmt: skip
@click.option("--pipeline", "pipelines", multiple=True, metavar="NAME",
              help="A pipeline to export; repeat for more (default: every pipeline).")  # fmt: skip
@click.option("--min-interval", type=Number(float, 0, 3600), default=5.0, show_default=True,
              help="Seconds a reading is reused: scrapes closer together than this do not "
                   "query Redis and the brokers again.")  # fmt: skip
@click.option("--scrape-timeout", type=Number(float, 0.1, 300), default=5.0, show_default=True,
              help="Seconds a scrape waits for Redis and the brokers; a pipeline not read by "
                   "then has workers_pipeline_up 0. Keep it below Prometheus's "
                   "scrape_timeout.")  # fmt: skip
@pass_state
def exporter(state: State, port: int, host: str, pipelines: tuple[str, ...],
             min_interval: float, scrape_timeout: float) -> None:  # fmt: skip
    """Serve the lag of every pipeline for Prometheus at http://HOST:PORT/metrics until
    SIGTERM or Ctrl-C (exit code 0), without any worker running: per partition the committed
    offset, the log end and the lag in records and in seconds; the first stage's queue
    backlog; and workers_pipeline_up, 0 while a pipeline cannot be read (Redis or its
    cluster down or silent). Logs the URL, and each pipeline going down or up once.
    Exit code 1 when a pipeline is unknown or the port cannot be listened on."""
    ops = state.ops()
    names = list(dict.fromkeys(pipelines)) or sorted(ops.settings.pipelines)
    if not names:
        raise click.ClickException("no pipelines configured (workers_pipelines): nothing to export")
    for name in names:
        ops.pipeline(name)  # an unknown one: one line naming it and the known ones
    collector = LagCollector.for_ops(
        ops, names, min_interval=min_interval, scrape_timeout=scrape_timeout
    )
    registry = CollectorRegistry()
    registry.register(collector)
    _log_progress()
    stop = threading.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in signals}
    try:
        try:
            server, thread = start_http_server(port, host, registry)
        except OSError as exc:  # in use, not an address of this host, a name that won't resolve
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise click.ClickException(f"cannot listen on {_url(host, port)}: {reason}") from exc
        url = _url(host, server.server_port)
        logger.info("serving the lag of %s on %s", ", ".join(names), url)
        stop.wait()
        logger.info("stopping: no longer serving %s", url)
        server.shutdown()
        server.server_close()
        thread.join(5)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _log_progress() -> None:
    """The command's own lines (where it serves, pipelines down and up) at INFO, whatever
    ``-v`` chose for the client libraries."""
    for name in (__name__, "workers.metrics"):
        log = logging.getLogger(name)
        log.setLevel(min(log.getEffectiveLevel(), logging.INFO))
