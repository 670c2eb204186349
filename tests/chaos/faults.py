"""Which faults a chaos run injects and when (seeded), and the thread that injects them one at a
time, logging each with its time since the run began."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.chaos.brokers import Broker
from tests.chaos.fleet import Fleet
from tests.chaos.settings import ChaosConfig
from workers.testing import RedisServer

logger = logging.getLogger(__name__)

WORKER_KILL, CHILD_KILL = "worker_sigkill", "pool_child_sigkill"
REDIS_TERM, REDIS_KILL = "redis_sigterm_restart", "redis_sigkill_restart"
REDIS_PAUSE = "redis_pause"
BROKER_RESTART = "broker_restart"


@dataclass(frozen=True, slots=True)
class Fault:
    at: float  # seconds after the run began
    kind: str


@dataclass(frozen=True, slots=True)
class Injected:
    """One fault as it happened: when it began, what it hit, how long it took."""

    at: float
    kind: str
    detail: str
    seconds: float
    hits: int = 1  # processes hit (pool children killed), for the duplicate bound


def schedule(config: ChaosConfig, rng: random.Random, start: float = 5.0) -> list[Fault]:
    """Random times within the producing period for every fault the config asks for."""
    kinds = [WORKER_KILL] * config.kills + [CHILD_KILL] * config.child_kills
    kinds += [BROKER_RESTART] * config.broker_restarts
    if config.redis_restarts:
        kinds += [REDIS_TERM, REDIS_KILL]
    if config.redis_pause:
        kinds.append(REDIS_PAUSE)
    end = max(start + 1.0, config.produce_seconds)
    faults = [Fault(round(rng.uniform(start, end), 2), kind) for kind in kinds]
    return sorted(faults, key=lambda f: f.at)


class Injector(threading.Thread):
    """Injects ``faults`` in order, never two at once and at least ``gap`` seconds apart."""

    def __init__(
        self, faults: list[Fault], *, fleet: Fleet, redis: RedisServer, broker: Broker,
        config: ChaosConfig, rng: random.Random, t0: float, gap: float = 1.0,
    ) -> None:  # fmt: skip
        super().__init__(name="chaos-faults", daemon=True)
        self.faults, self.fleet, self.redis, self.broker = faults, fleet, redis, broker
        self.config, self.rng, self.t0, self.gap = config, rng, t0, gap
        self.done: list[Injected] = []
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(120)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def run(self) -> None:
        try:
            for fault in self.faults:
                if self._halt.wait(max(0.0, fault.at - self.now())):
                    return
                began = self.now()
                detail, hits = self._actions()[fault.kind]()
                took = self.now() - began
                self.done.append(
                    Injected(round(began, 2), fault.kind, detail, round(took, 2), hits)
                )
                logger.info("t=%.1fs %s: %s (%.1f s)", began, fault.kind, detail, took)
                self._halt.wait(self.gap)
        except BaseException as exc:  # noqa: BLE001 - reported by the run
            self.error = exc
            logger.exception("fault injection failed")
        finally:
            self.redis.resume()  # never leave Redis stopped

    def _actions(self) -> dict[str, Callable[[], tuple[str, int]]]:
        """Each returns what it did and how many processes it hit."""
        return {
            WORKER_KILL: lambda: (self.fleet.kill_worker(self.rng), 1),
            CHILD_KILL: self._kill_children,
            REDIS_TERM: lambda: (self._restart_redis(self.redis.terminate, "SIGTERM"), 1),
            REDIS_KILL: lambda: (self._restart_redis(self.redis.kill, "SIGKILL"), 1),
            REDIS_PAUSE: lambda: (self._pause_redis(), 1),
            BROKER_RESTART: lambda: (self._restart_broker(), 1),
        }

    def _kill_children(self) -> tuple[str, int]:
        victims = self.fleet.kill_children(self.rng, self.rng.randint(1, 3))
        return ", ".join(victims) or "no pool process", len(victims)

    def _restart_redis(self, stop: Callable[[], None], how: str) -> str:
        stop()
        self.redis.start()
        return f"{how}, started again on :{self.redis.port}"

    def _pause_redis(self) -> str:
        seconds = self.config.lease_ttl_seconds + 3.0
        self.redis.pause()
        try:
            self._halt.wait(seconds)
        finally:
            self.redis.resume()
        return f"SIGSTOP for {seconds:.0f} s (lease TTL {self.config.lease_ttl_seconds:g} s)"

    def _restart_broker(self) -> str:
        if not self.broker.restart():
            return f"skipped: {self.broker.description} cannot be restarted"
        return f"restarted ({self.broker.description})"
