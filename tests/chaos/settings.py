"""What one chaos run does: mode, volume, rate, batch size, faults, seed; and the shapes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Named shapes: batch sizes and fault counts that stress different parts of the protocol.
SHAPES: dict[str, dict[str, Any]] = {
    # Batches of 200-500 records, a few kills: the ordinary case.
    "default": {"batch_size": 300, "kills": 10},
    # Many small batches and frequent kills: many Celery messages in flight when a worker dies,
    # so the Redis transport's window between taking a message and recording it unacked
    # (celery/kombu#305) is hit. One output partition: on S3 storage a fetch costs more the
    # more produce batches its partition holds, and every ``publish`` writes one.
    "small": {
        "batch_size": 10,
        "kills": 24,
        "records": 8000,
        "rate": 150.0,
        "output_partitions": 1,
    },
}


@dataclass(frozen=True, slots=True)
class ChaosConfig:
    """One run. ``kills`` is the number of whole-worker SIGKILLs; ``storage`` picks the
    broker's storage (``auto`` tries postgres, then s3 on moto); ``timeout`` bounds the drain."""

    mode: str = "beat"
    execution: str = "chain"
    records: int = 15_000
    rate: float = 250.0
    batch_size: int = 300
    kills: int = 10
    child_kills: int = 3
    redis_restarts: bool = True
    redis_pause: bool = True
    broker_restarts: int = 2
    seed: int = 1
    shape: str = "default"
    partitions: int = 4
    output_partitions: int = 3
    workers: int = 2
    concurrency: int = 2
    lease_ttl_seconds: float = 5.0
    visibility_timeout: float = 30.0
    unacked_mutex_expire: float = 30.0  # kombu's default is 300 (see celeryconfig_chaos)
    redrive_seconds: float = 15.0
    # Seconds of records produced at once: the S3-backed test broker's fetches get slower with
    # every produce batch a partition holds (measured: 100 ms at 400 batches, 465 ms at 2,400),
    # so long runs produce in larger ticks.
    tick: float = 0.5
    drain_timeout: float = 300.0
    settle_seconds: float = 8.0
    storage: str = "auto"
    report: Path | None = None
    keep_logs: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def produce_seconds(self) -> float:
        return self.records / self.rate

    def pipeline(self, topic: str) -> dict[str, Any]:
        """The pipeline's settings (as ``workers_pipelines`` takes them)."""
        conf: dict[str, Any] = {
            "cluster": "test",
            "topic": topic,
            "tasks": [
                "chaos.observe",
                "workers.alarms.parse",
                "workers.alarms.build",
                "workers.alarms.publish",
            ],
            "batch_size": self.batch_size,
            "execution": self.execution,
            "mode": self.mode,
            "interval": 0.5,
            "start": "earliest",
            "max_seconds": 1.0,
            "lease_ttl_seconds": self.lease_ttl_seconds,
            "max_runtime_seconds": 20.0,
            # A batch lost with a killed worker is handed off again this long after its hand-off
            # (or its first stage's start): short, so that a run drains within minutes.
            "redrive_seconds": self.redrive_seconds,
        }
        if self.mode == "long_lived":
            conf["concurrency"] = 2
        return conf


def shaped(shape: str, **overrides: Any) -> ChaosConfig:
    """A config from a named shape; explicit overrides (not None) win over the shape."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; one of {', '.join(SHAPES)}")
    values: dict[str, Any] = {**SHAPES[shape], "shape": shape}
    values.update({k: v for k, v in overrides.items() if v is not None})
    names = {f.name for f in dataclasses.fields(ChaosConfig)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
    return ChaosConfig(**values)
